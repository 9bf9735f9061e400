"""The CIFAR, FACES and CURVES loaders on small files that the tests write in the real formats
(CIFAR python-pickle batches, MATLAB .mat), through the real loading code: shapes, dtypes,
value ranges and values; and the one clear error when a file is missing. (The gzip IDX
loaders: tests/data/test_sources.py.)"""

from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from omegaconf import OmegaConf
from torchvision import datasets

from data import matlab_sources
from data.cifar import load_cifar10, load_cifar100
from data.errors import DataUnavailableError
from data.matlab_sources import faces_split_sizes, load_curves, load_faces
from data.schema import DatasetConfig
from data.sources import load_splits
from data.tensors import Splits
from tests.conftest import CONF_DIR

RNG = np.random.default_rng(0)


def dataset_config(name: str, **overrides: object) -> DatasetConfig:
    """conf/dataset/<name>.yaml on the typed schema, as the runner sees it."""
    cfg = OmegaConf.merge(
        OmegaConf.structured(DatasetConfig), OmegaConf.load(CONF_DIR / "dataset" / f"{name}.yaml")
    )
    return OmegaConf.merge(cfg, overrides)


# ----------------------------------------------------------------------------- CIFAR pickles
def write_cifar(root: Path, dataset_class: type[datasets.CIFAR10], per_file: int) -> dict:
    """The python version of the archive: pickled dicts with 'data' (N x 3072 uint8, the red,
    green and blue planes in row-major order) and labels; the meta file with the class names.
    Returns what was written."""
    folder = root / dataset_class.base_folder
    folder.mkdir(parents=True)
    cifar100 = dataset_class is datasets.CIFAR100
    classes = 100 if cifar100 else 10
    written: dict[str, tuple[np.ndarray, list[int]]] = {}
    for name, _ in dataset_class.train_list + dataset_class.test_list:
        data = RNG.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        labels = RNG.integers(0, classes, per_file).tolist()
        entry = {"data": data, "fine_labels" if cifar100 else "labels": labels}
        if cifar100:
            entry["coarse_labels"] = [label // 5 for label in labels]
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        written[name] = (data, labels)
    meta = {dataset_class.meta["key"]: [f"class{i}" for i in range(classes)]}
    (folder / dataset_class.meta["filename"]).write_bytes(pickle.dumps(meta, protocol=2))
    return written


def accept_written_checksums(monkeypatch: pytest.MonkeyPatch, root: Path, cls: type) -> None:
    """torchvision checks each file's MD5 against the real archive's; the test's small files
    have their own, so the expected sums become theirs (nothing else about the class)."""

    def md5(name: str) -> str:
        return hashlib.md5((root / cls.base_folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(cls, "train_list", [[name, md5(name)] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, md5(name)] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})


@pytest.mark.parametrize(
    ("dataset_class", "loader"),
    [(datasets.CIFAR10, load_cifar10), (datasets.CIFAR100, load_cifar100)],
)
def test_cifar_loader(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dataset_class: type[datasets.CIFAR10],
    loader: Callable[[Path, bool], Splits],
) -> None:
    written = write_cifar(tmp_path, dataset_class, per_file=6)
    accept_written_checksums(monkeypatch, tmp_path, dataset_class)
    splits = loader(tmp_path, download=False)
    train_count = 6 * len(dataset_class.train_list)
    assert splits.train.inputs.shape == (train_count, 3, 32, 32)
    assert splits.test.inputs.shape == (6, 3, 32, 32)
    assert splits.train.inputs.dtype == torch.float32 and splits.train.labels.dtype == torch.int64
    assert splits.train.inputs.min() >= 0.0 and splits.train.inputs.max() <= 1.0
    data, labels = written[dataset_class.test_list[0][0]]
    # pixel (c, h, w) of an image is data[c * 1024 + h * 32 + w] / 255
    expected = torch.from_numpy(data.reshape(6, 3, 32, 32)).float() / 255
    torch.testing.assert_close(splits.test.inputs, expected)
    assert splits.test.labels.tolist() == labels  # CIFAR-100: the fine labels


def test_cifar_data_set_config_normalises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar(tmp_path, datasets.CIFAR10, per_file=4)
    accept_written_checksums(monkeypatch, tmp_path, datasets.CIFAR10)
    cfg = dataset_config("cifar10", download=False, train_size=10)
    raw = load_cifar10(tmp_path, download=False)
    splits = load_splits(cfg, tmp_path)
    assert splits.train.inputs.shape == (10, 3, 32, 32)
    mean = torch.tensor(cfg.normalization.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.normalization.std).view(1, 3, 1, 1)
    torch.testing.assert_close(splits.test.inputs, (raw.test.inputs - mean) / std)


@pytest.mark.parametrize("dataset_class", [datasets.CIFAR10, datasets.CIFAR100])
def test_cifar_missing_offline(tmp_path: Path, dataset_class: type[datasets.CIFAR10]) -> None:
    loader = load_cifar10 if dataset_class is datasets.CIFAR10 else load_cifar100
    with pytest.raises(DataUnavailableError) as error:
        loader(tmp_path, download=False)
    message = str(error.value)
    assert f"{dataset_class.__name__} is not in {tmp_path / dataset_class.base_folder}" in message
    assert f"Fetch {dataset_class.filename} from {dataset_class.url}" in message
    assert f"put it in {tmp_path}/" in message


# ----------------------------------------------------------------------------- MATLAB files
def write_faces(path: Path, count: int) -> np.ndarray:
    """newfaces_rot_single.mat: 'newfaces_single', 625 x count single precision, a face per
    column (the real file: 625 x 165,600)."""
    faces = RNG.normal(size=(625, count)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"newfaces_single": faces})
    return faces


def test_faces_split_is_martens() -> None:
    assert faces_split_sizes(165_600) == (103_500, 41_400)


def test_faces_loader(tmp_path: Path) -> None:
    faces = write_faces(tmp_path / "faces" / "newfaces_rot_single.mat", count=80)
    splits = load_faces(tmp_path, download=False, local_path=None)
    assert splits.train.inputs.shape == (50, 1, 25, 25)  # first 25/40
    assert splits.test.inputs.shape == (20, 1, 25, 25)  # last 10/40
    assert splits.train.inputs.dtype == torch.float32
    assert splits.train.labels is None and splits.test.labels is None
    torch.testing.assert_close(splits.train.inputs.flatten(1), torch.from_numpy(faces.T[:50]))
    torch.testing.assert_close(splits.test.inputs.flatten(1), torch.from_numpy(faces.T[-20:]))
    assert splits.train.inputs.min() < 0  # real-valued, not clipped to [0, 1]


def test_faces_local_path(tmp_path: Path) -> None:
    faces = write_faces(tmp_path / "elsewhere" / "my_faces.mat", count=40)
    cfg = dataset_config(
        "faces", download=False, local_path=str(tmp_path / "elsewhere/my_faces.mat")
    )
    splits = load_splits(cfg, tmp_path / "empty")
    assert (len(splits.train), len(splits.test)) == (25, 10)
    torch.testing.assert_close(splits.test.inputs.flatten(1), torch.from_numpy(faces.T[-10:]))


def test_curves_loader(tmp_path: Path) -> None:
    train = RNG.random((20, 784))
    test = RNG.random((10, 784))
    path = tmp_path / "curves" / "digs3pts_1.mat"
    path.parent.mkdir()
    scipy.io.savemat(path, {"bdata": train, "bdatatest": test})
    splits = load_splits(dataset_config("curves", download=False), tmp_path)
    assert splits.train.inputs.shape == (20, 1, 28, 28) and splits.test.inputs.shape == (
        10,
        1,
        28,
        28,
    )
    assert splits.train.inputs.dtype == torch.float32 and splits.train.labels is None
    assert splits.train.inputs.min() >= 0.0 and splits.train.inputs.max() <= 1.0
    torch.testing.assert_close(splits.train.inputs.flatten(1), torch.from_numpy(train).float())


def test_mat_file_with_wrong_keys(tmp_path: Path) -> None:
    path = tmp_path / "curves" / "digs3pts_1.mat"
    path.parent.mkdir()
    scipy.io.savemat(path, {"bdata": RNG.random((4, 784))})
    with pytest.raises(ValueError, match="has no variable bdatatest"):
        load_curves(tmp_path, download=False, local_path=None)


@pytest.mark.parametrize(
    ("loader", "file"),
    [(load_faces, matlab_sources.FACES), (load_curves, matlab_sources.CURVES)],
)
def test_mat_file_missing_offline(
    tmp_path: Path, loader: Callable[..., Splits], file: matlab_sources.MatlabFile
) -> None:
    with pytest.raises(DataUnavailableError) as error:
        loader(tmp_path, download=False, local_path=None)
    message = str(error.value)
    assert f"{file.name} is not in {tmp_path / file.folder}" in message
    assert (
        f"Fetch {file.filename} from http://www.cs.toronto.edu/~jmartens/{file.filename}" in message
    )
    assert "dataset.local_path" in message


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server for the files in tmp_path/server: (folder, base URL)."""
    folder = tmp_path / "server"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_mat_file_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_server: tuple[Path, str]
) -> None:
    """The real download path (torchvision's download_url) from a local HTTP server."""
    folder, url = http_server
    faces = write_faces(folder / "newfaces_rot_single.mat", count=40)
    monkeypatch.setattr(matlab_sources, "MARTENS_URL", url)
    splits = load_faces(tmp_path / "data", download=True, local_path=None)
    assert (tmp_path / "data" / "faces" / "newfaces_rot_single.mat").is_file()
    torch.testing.assert_close(splits.train.inputs.flatten(1), torch.from_numpy(faces.T[:25]))
    # the server lacks the CURVES file (HTTP 404): the clear error, no partial file left
    with pytest.raises(DataUnavailableError, match="could not be downloaded"):
        load_curves(tmp_path / "data", download=True, local_path=None)
    assert not (tmp_path / "data" / "curves" / "digs3pts_1.mat").exists()


def test_local_path_only_for_single_file_sources(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"dataset\.local_path is only read by the sources"):
        load_splits(dataset_config("cifar10", local_path="x.mat"), tmp_path)

"""The FACES and CURVES autoencoder data sets of Hinton & Salakhutdinov (2006), as MATLAB
files from James Martens' Toronto page (the files the K-BFGS and TNT reference code read).

- FACES: newfaces_rot_single.mat, key `newfaces_single`, a 625 x 165,600 single-precision
  matrix, one 25x25 real-valued face per column. Martens' split: the first 25/40 of the
  examples train (103,500), the last 10/40 test (41,400); the 1/8 between is not used.
- CURVES: digs3pts_1.mat, keys `bdata` (20,000 x 784, training) and `bdatatest`
  (10,000 x 784, test), one 28x28 image in [0, 1] per row.

Inputs are float32, FACES (N, 1, 25, 25) and CURVES (N, 1, 28, 28); no labels. An image's 625
(784) values keep the file's order; the models flatten them, so the order does not matter to
training (as images they may appear transposed: MATLAB stores columns first).

Where the file comes from, in order: dataset.local_path when set; <data_dir>/<folder>/<file>;
a download from Martens' page into that folder. Offline and without the file, one
DataUnavailableError names the file, its URL and the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch
from torchvision.datasets.utils import download_url

from data.errors import DataUnavailableError
from data.tensors import Split, Splits

MARTENS_URL = "http://www.cs.toronto.edu/~jmartens/"


@dataclass(frozen=True)
class MatlabFile:
    name: str
    folder: str  # under paths.data_dir
    filename: str

    @property
    def url(self) -> str:
        return MARTENS_URL + self.filename


FACES = MatlabFile("FACES", "faces", "newfaces_rot_single.mat")
CURVES = MatlabFile("CURVES", "curves", "digs3pts_1.mat")


def locate(file: MatlabFile, data_dir: Path, download: bool, local_path: str | None) -> Path:
    """The path of the file, downloading it when allowed; DataUnavailableError otherwise."""
    if local_path is not None:
        path = Path(local_path).expanduser()
        if path.is_file():
            return path
        raise DataUnavailableError(
            f"dataset.local_path={local_path} is not a file. Fetch {file.filename} "
            f"from {file.url} and point dataset.local_path at it."
        )
    folder = Path(data_dir) / file.folder
    path = folder / file.filename
    if not path.is_file() and download:
        try:
            download_url(file.url, str(folder), file.filename)
        except (OSError, RuntimeError):  # URLError is an OSError; handled by the message below
            path.unlink(missing_ok=True)  # never leave a partial file behind
    if path.is_file():
        return path
    raise DataUnavailableError(
        f"{file.name} is not in {folder.resolve()} and could not be downloaded (is this "
        f"machine offline?). Fetch {file.filename} from {file.url} and put it in "
        f"{folder.resolve()}/, or set dataset.local_path to where the file is, or point "
        "paths.data_dir (or the environment variable SOBENCH_DATA_DIR) at a folder that has "
        f"{file.folder}/{file.filename}."
    )


def _read(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    try:
        contents = scipy.io.loadmat(str(path), variable_names=keys)
    except NotImplementedError as error:  # MATLAB v7.3 (HDF5) files
        raise ValueError(f"{path} is a MATLAB v7.3 file; save it as v7 or older") from error
    missing = [key for key in keys if key not in contents]
    if missing:
        raise ValueError(f"{path} has no variable {', '.join(missing)}")
    return contents


def _images(matrix: np.ndarray, side: int) -> torch.Tensor:
    """Rows of side*side values -> float32 (N, 1, side, side)."""
    if matrix.ndim != 2 or matrix.shape[1] != side * side:
        raise ValueError(f"expected rows of {side * side} values, got shape {matrix.shape}")
    rows = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))
    return rows.reshape(-1, 1, side, side)


def faces_split_sizes(total: int) -> tuple[int, int]:
    """Martens' FACES split: first 25/40 of the examples train, last 10/40 test."""
    return total * 25 // 40, total * 10 // 40


def load_faces(data_dir: Path, download: bool, local_path: str | None) -> Splits:
    path = locate(FACES, data_dir, download, local_path)
    matrix = _read(path, ["newfaces_single"])["newfaces_single"]
    images = _images(matrix.T, 25)  # the file holds one face per column
    train_size, test_size = faces_split_sizes(images.shape[0])
    if test_size == 0:
        raise ValueError(f"{path} holds {images.shape[0]} faces, too few to split")
    return Splits(Split(images[:train_size], None), Split(images[-test_size:], None))


def load_curves(data_dir: Path, download: bool, local_path: str | None) -> Splits:
    path = locate(CURVES, data_dir, download, local_path)
    contents = _read(path, ["bdata", "bdatatest"])
    train, test = _images(contents["bdata"], 28), _images(contents["bdatatest"], 28)
    return Splits(Split(train, None), Split(test, None))

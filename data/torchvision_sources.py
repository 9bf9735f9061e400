"""MNIST and Fashion-MNIST through torchvision's dataset classes (the original gzip IDX files).

Where the files come from, in order: `paths.data_dir` (torchvision's layout,
<data_dir>/<Name>/raw/), then for Fashion-MNIST the files of Debian's package
`dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist), then torchvision's download.
Offline and without the files, one DataUnavailableError names the files and the folder.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets
from torchvision.datasets.utils import extract_archive

from data.errors import DataUnavailableError
from data.tensors import Split, Splits

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _resource_names(dataset_class: type[datasets.MNIST]) -> list[str]:
    return [name for name, _ in dataset_class.resources]


def _raw_folder(dataset_class: type[datasets.MNIST], root: Path) -> Path:
    return root / dataset_class.__name__ / "raw"  # torchvision's layout


def _has_raw_files(dataset_class: type[datasets.MNIST], root: Path) -> bool:
    raw_folder = _raw_folder(dataset_class, root)
    return all((raw_folder / Path(name).stem).is_file() for name in _resource_names(dataset_class))


def _import_files(source_dir: Path, dataset_class: type[datasets.MNIST], root: Path) -> bool:
    """Unpack the original gzip files from source_dir into torchvision's raw folder."""
    names = _resource_names(dataset_class)
    if not all((source_dir / name).is_file() for name in names):
        return False
    raw_folder = _raw_folder(dataset_class, root)
    raw_folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        extract_archive(str(source_dir / name), str(raw_folder))
    return True


def _missing_message(dataset_class: type[datasets.MNIST], root: Path, extra: str = "") -> str:
    raw_folder = _raw_folder(dataset_class, root).resolve()
    files = ", ".join(_resource_names(dataset_class))
    return (
        f"{dataset_class.__name__} is not in {raw_folder} and could not be downloaded "
        f"(is this machine offline?). Fetch {files} from {dataset_class.mirrors[0]} and put "
        f"them in {raw_folder}/ (gzipped is fine), or point paths.data_dir (or the environment "
        f"variable SOBENCH_DATA_DIR) at a folder that has {dataset_class.__name__}/raw/.{extra}"
    )


def _split(dataset: datasets.MNIST) -> Split:
    inputs = dataset.data.unsqueeze(1).to(torch.float32).div_(255.0)
    return Split(inputs, dataset.targets.to(torch.int64))


def load_idx_dataset(
    dataset_class: type[datasets.MNIST],
    root: Path,
    download: bool,
    local_sources: tuple[Path, ...] = (),
    extra_hint: str = "",
) -> Splits:
    """Both splits of an MNIST-format data set as float tensors in [0, 1] and int64 labels."""
    root = Path(root)
    if not _has_raw_files(dataset_class, root):
        for source_dir in local_sources:
            if _import_files(source_dir, dataset_class, root):
                break
    try:
        train = dataset_class(str(root), train=True, download=download)
        test = dataset_class(str(root), train=False, download=download)
    except RuntimeError as error:  # torchvision's "Dataset not found" / "Error downloading"
        raise DataUnavailableError(_missing_message(dataset_class, root, extra_hint)) from error
    return Splits(_split(train), _split(test))


def load_fashion_mnist(data_dir: Path, download: bool) -> Splits:
    return load_idx_dataset(
        datasets.FashionMNIST,
        data_dir,
        download,
        local_sources=(DEBIAN_FASHION_MNIST,),
        extra_hint=" On Debian: apt-get install dataset-fashion-mnist.",
    )


def load_mnist(data_dir: Path, download: bool) -> Splits:
    return load_idx_dataset(datasets.MNIST, data_dir, download)

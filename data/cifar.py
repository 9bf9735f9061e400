"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) through torchvision's dataset classes, which read
the python-pickle batches of the original archives and check their MD5 sums.

The files live in paths.data_dir in torchvision's layout (<data_dir>/cifar-10-batches-py/,
<data_dir>/cifar-100-python/); when missing, torchvision downloads and unpacks the archive
(an archive already put in <data_dir> is unpacked without downloading). Offline and without
the files, one DataUnavailableError names the archive, its URL and the folder.

Inputs are float32 (N, 3, 32, 32) in [0, 1] (pixels / 255), labels int64 (CIFAR-100: the 100
fine labels). Normalisation and augmentation are the data set config's (data.augment).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets
from torchvision.transforms.v2 import functional as TF

from data.errors import DataUnavailableError
from data.tensors import Split, Splits


def _missing_message(dataset_class: type[datasets.CIFAR10], root: Path) -> str:
    root = root.resolve()
    return (
        f"{dataset_class.__name__} is not in {root / dataset_class.base_folder} (or a file "
        "there fails its checksum) and could not be downloaded (is this machine offline?). "
        f"Fetch {dataset_class.filename} from {dataset_class.url} and put it in {root}/ (it is "
        "unpacked on first use), or point paths.data_dir (or the environment variable "
        f"SOBENCH_DATA_DIR) at a folder that has {dataset_class.base_folder}/."
    )


def _split(dataset: datasets.CIFAR10) -> Split:
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    inputs = TF.to_dtype(images, torch.float32, scale=True).contiguous()  # uint8 / 255
    return Split(inputs, torch.tensor(dataset.targets, dtype=torch.int64))


def load_cifar(dataset_class: type[datasets.CIFAR10], data_dir: Path, download: bool) -> Splits:
    """Both splits of CIFAR-10 or CIFAR-100 (dataset_class) from data_dir."""
    root = Path(data_dir)
    try:
        train = dataset_class(str(root), train=True, download=download)
        test = dataset_class(str(root), train=False, download=False)
    except (RuntimeError, OSError) as error:  # "Dataset not found or corrupted", URLError
        raise DataUnavailableError(_missing_message(dataset_class, root)) from error
    return Splits(_split(train), _split(test))


def load_cifar10(data_dir: Path, download: bool) -> Splits:
    return load_cifar(datasets.CIFAR10, data_dir, download)


def load_cifar100(data_dir: Path, download: bool) -> Splits:
    return load_cifar(datasets.CIFAR100, data_dir, download)

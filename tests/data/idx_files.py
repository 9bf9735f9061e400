"""Write small data sets in the original IDX format (LeCun's MNIST format), gzip-compressed
like the files torchvision downloads and Debian ships."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Magic number (0, 0, type 0x08 = unsigned byte, number of dimensions), big-endian
    dimension sizes, then the data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_data_set(
    folder: Path, sizes: dict[str, int], seed: int = 0, gzipped: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random 28x28 images and labels for each split, written to folder; returns them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, size in sizes.items():
        images = rng.integers(0, 256, size=(size, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=(size,), dtype=np.uint8)
        for kind, array in (("images", images), ("labels", labels)):
            name = FILES[(split, kind)]
            data = idx_bytes(array)
            if gzipped:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        written[split] = (images, labels)
    return written

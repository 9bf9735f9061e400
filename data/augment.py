"""Per-data-set input transforms: normalisation of both splits at load time, and random
augmentation of training batches on the training device.

Normalisation (x - mean) / std per channel is applied once to the stored splits
(`normalize_splits`), so the test set and the full-training-set evaluation see normalised,
never augmented, inputs.

Augmentation is a data.tensors.BatchAugmentation: `draw(count, generator)` draws the random
parameters of `count` examples on the CPU, from the generator that also draws the epoch's order
(seeded by (seed, epoch) in data.tensors.ShuffledBatches); `apply(inputs, draws)` transforms
a mini-batch on its device with the draws of its rows. Drawing per epoch from a seeded CPU
generator makes the augmented batches a function of (seed, epoch, step) alone: identical on
CPU and GPU, independent of torch's global random state (which the sampled Fisher uses), and
exactly the same after a resume at an epoch boundary.

`RandomCropFlip` is the CIFAR augmentation of the TNT reference code (torchvision's
RandomCrop(32, padding=4) then RandomHorizontalFlip(0.5), on the [0, 1] image, then
Normalize). Cropping and flipping commute with the per-channel affine normalisation, and
padding the raw image with 0 (black) is padding the normalised image with -mean / std, so it
runs on the stored normalised tensors with that fill value: the result equals torchvision's
pipeline exactly (tests/data/test_augment.py checks it against torchvision per example).
torchvision's transforms draw one crop per call; a batch needs one per example, hence the
gather below.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from data.schema import Augmentation, DatasetConfig
from data.tensors import BatchAugmentation, Split, Splits


def normalize_splits(splits: Splits, mean: Sequence[float], std: Sequence[float]) -> Splits:
    """Every split with every channel c mapped to (x - mean[c]) / std[c]."""

    def normalized(split: Split) -> Split:
        channels = split.inputs.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(
                f"normalization has {len(mean)} means and {len(std)} stds for inputs with "
                f"{channels} channels"
            )
        if any(value <= 0 for value in std):
            raise ValueError(f"normalization std must be positive, got {list(std)}")
        # torchvision is imported here, not at start-up: it takes ~2 s (data.sources)
        from torchvision.transforms.v2 import functional as TF

        return Split(TF.normalize(split.inputs, list(mean), list(std)), split.labels)

    validation = None if splits.validation is None else normalized(splits.validation)
    return Splits(normalized(splits.train), normalized(splits.test), validation)


class RandomCropFlip:
    """RandomCrop(H x W, padding) + RandomHorizontalFlip(0.5), per example.

    Draws per example: (top, left) offsets uniform in {0, ..., 2 * padding} (torchvision's
    RandomCrop on the padded image) and a flip bit with probability 1/2. `fill` is the value
    of padded pixels per channel: 0 on raw images, -mean / std on normalised ones.
    """

    def __init__(self, padding: int, fill: Sequence[float]) -> None:
        if padding < 0:
            raise ValueError(f"crop padding must be non-negative, got {padding}")
        self.padding = padding
        self.fill = torch.tensor(list(fill), dtype=torch.float32)
        # the fill on each device, copied once: a host-to-device copy per step would
        # synchronise the GPU inside the timed training step
        self._fill_on: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def draw(self, count: int, generator: torch.Generator) -> Tensor:
        offsets = torch.randint(0, 2 * self.padding + 1, (count, 2), generator=generator)
        flips = (torch.rand(count, generator=generator) < 0.5).to(torch.int64)
        return torch.cat([offsets, flips[:, None]], dim=1)  # columns: top, left, flip

    def apply(self, inputs: Tensor, draws: Tensor) -> Tensor:
        batch, channels, height, width = inputs.shape
        pad = self.padding
        key = (inputs.device, inputs.dtype)
        if key not in self._fill_on:
            self._fill_on[key] = self.fill.to(device=inputs.device, dtype=inputs.dtype)
        fill = self._fill_on[key].view(1, channels, 1, 1)
        padded = fill.expand(batch, channels, height + 2 * pad, width + 2 * pad).clone()
        padded[:, :, pad : pad + height, pad : pad + width] = inputs
        top, left, flip = draws[:, 0], draws[:, 1], draws[:, 2].bool()
        rows = top[:, None] + torch.arange(height, device=inputs.device)  # (batch, H)
        columns = torch.arange(width, device=inputs.device).expand(batch, width)
        columns = torch.where(flip[:, None], columns.flip(1), columns)  # flip = read backwards
        columns = left[:, None] + columns  # (batch, W)
        index = torch.arange(batch, device=inputs.device)[:, None, None]
        # (batch, H, W, C) gathered from the channels-last view, back to (batch, C, H, W)
        crops = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], columns[:, None, :]]
        return crops.permute(0, 3, 1, 2).contiguous()


def make_augmentation(cfg: DatasetConfig) -> BatchAugmentation | None:
    """The data set config's augmentation of training batches, or None."""
    if cfg.augmentation is None:
        return None
    channels = int(cfg.input_shape[0])
    fill = [0.0] * channels  # padding is black (0) in the [0, 1] image
    if cfg.normalization is not None:  # ... which normalisation maps to -mean / std
        fill = [-m / s for m, s in zip(cfg.normalization.mean, cfg.normalization.std, strict=True)]
    if cfg.augmentation == Augmentation.crop_flip:
        return RandomCropFlip(cfg.crop_padding, fill)
    raise ValueError(f"unknown augmentation {cfg.augmentation}")

"""CIFAR augmentation on the training device against torchvision's own transforms, applied
independently per example, and the normalisation of both splits."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.transforms.v2 import functional as TF

from data.augment import RandomCropFlip, make_augmentation, normalize_splits
from data.schema import DatasetConfig
from data.tensors import Split, Splits

MEAN = [0.4914, 0.4822, 0.4465]
STD = [0.2023, 0.1994, 0.2010]


def dataset_config(**values: object) -> DatasetConfig:
    return OmegaConf.merge(OmegaConf.structured(DatasetConfig), {"source": "x", **values})


def raw_images(count: int, seed: int = 0) -> torch.Tensor:
    """Images in [0, 1] with distinct pixels, so a wrong crop or flip cannot go unnoticed."""
    return torch.rand(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_normalisation_is_per_channel() -> None:
    train, test = raw_images(4), raw_images(3, seed=1)
    normalized = normalize_splits(Splits(Split(train, None), Split(test, None)), MEAN, STD)
    for raw, out in ((train, normalized.train.inputs), (test, normalized.test.inputs)):
        for channel in range(3):
            expected = (raw[:, channel] - MEAN[channel]) / STD[channel]
            torch.testing.assert_close(out[:, channel], expected)


def test_normalisation_checks_the_channels() -> None:
    splits = Splits(Split(torch.rand(2, 1, 4, 4), None), Split(torch.rand(2, 1, 4, 4), None))
    with pytest.raises(ValueError, match="3 means and 3 stds for inputs with 1 channels"):
        normalize_splits(splits, MEAN, STD)


def test_crop_flip_equals_torchvision_per_example() -> None:
    """On normalised images, the batched crop + flip equals torchvision's RandomCrop(32,
    padding=4) (zero padding of the [0, 1] image), horizontal flip and Normalize, example by
    example, with the offsets and flips the augmentation drew."""
    raw = raw_images(64)
    stored = TF.normalize(raw, MEAN, STD)
    augmentation = make_augmentation(
        dataset_config(
            input_shape=[3, 32, 32],
            normalization={"mean": MEAN, "std": STD},
            augmentation="crop_flip",
            crop_padding=4,
        )
    )
    assert isinstance(augmentation, RandomCropFlip)
    draws = augmentation.draw(64, torch.Generator().manual_seed(3))
    out = augmentation.apply(stored, draws)
    assert out.shape == stored.shape
    assert draws[:, 2].sum() not in (0, 64)  # both flipped and unflipped examples
    for image, (top, left, flip), result in zip(raw, draws.tolist(), out, strict=True):
        expected = TF.crop(TF.pad(image, [4], fill=0.0), top, left, 32, 32)
        if flip:
            expected = TF.horizontal_flip(expected)
        torch.testing.assert_close(result, TF.normalize(expected, MEAN, STD))


def test_offsets_and_flips_cover_torchvision_ranges() -> None:
    draws = RandomCropFlip(4, [0.0]).draw(20_000, torch.Generator().manual_seed(0))
    for column in (0, 1):  # RandomCrop on a 40x40 padded image: offsets 0..8, uniform
        counts = torch.bincount(draws[:, column], minlength=9)
        assert len(counts) == 9 and counts.min() > 20_000 / 9 * 0.9
    assert 0.48 < draws[:, 2].float().mean().item() < 0.52


def test_centre_crop_without_flip_is_the_identity() -> None:
    images = raw_images(5)
    centre = torch.tensor([[4, 4, 0]] * 5)
    torch.testing.assert_close(RandomCropFlip(4, [0.0] * 3).apply(images, centre), images)
    flipped = RandomCropFlip(4, [0.0] * 3).apply(images, centre + torch.tensor([0, 0, 1]))
    torch.testing.assert_close(flipped, images.flip(-1))
    torch.testing.assert_close(RandomCropFlip(0, [0.0] * 3).apply(images, 0 * centre), images)


def test_no_augmentation_configured() -> None:
    assert make_augmentation(dataset_config()) is None

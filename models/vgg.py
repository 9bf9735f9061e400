"""VGG with batch normalisation for 32x32 inputs: the TNT paper's CIFAR-100 VGG16-BN.

    features: for each entry of `layers`, an int c is conv3x3(-> c, padding 1, with bias) -> BN
              -> ReLU, and "M" is a 2x2 max-pool with stride 2
              VGG16: 64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M, 512 x3, M
    classifier: flatten -> [Linear -> ReLU] per `classifier_sizes` -> Linear(-> num_classes)
              VGG16-BN of the TNT paper: 512 -> 4096 -> 4096 -> 100, no dropout, no adaptive
              average pool (the reference code's "vgg16-NoAdaptiveAvgPoolNoDropout-BN")

Initialisation (docs/problems.md, "Initialisation": the reference code's "normal", from
chengyangfu's pytorch-vgg-cifar10): conv weights ~ N(0, sqrt(2 / (k * k * out_channels))), conv
biases 0; Linear layers keep PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BN weight 1,
bias 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import Tensor, nn

from models.task import Task

POOL = "M"


class VGG(nn.Module):
    TASK = Task.classification

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        layers: Sequence[int | str],
        classifier_sizes: Sequence[int] = (4096, 4096),
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        channels, height, width = (int(size) for size in input_shape)
        features: list[nn.Module] = []
        for entry in layers:
            if entry == POOL:
                features.append(nn.MaxPool2d(kernel_size=2, stride=2))
                height, width = height // 2, width // 2
                continue
            if isinstance(entry, str):
                raise ValueError(f"layers entries are channel counts or {POOL!r}, got {entry!r}")
            conv = nn.Conv2d(channels, int(entry), kernel_size=3, padding=1)
            features += [conv, nn.BatchNorm2d(int(entry))] if batch_norm else [conv]
            features.append(nn.ReLU())
            channels = int(entry)
        if height < 1 or width < 1:
            raise ValueError(
                f"input {list(input_shape)} is too small for {sum(e == POOL for e in layers)} "
                "max-pools (each halves the resolution)"
            )
        self.features = nn.Sequential(*features)
        sizes = [channels * height * width, *classifier_sizes]
        classifier: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in itertools.pairwise(sizes):
            classifier += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        classifier.append(nn.Linear(sizes[-1], num_classes))
        self.classifier = nn.Sequential(*classifier)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))

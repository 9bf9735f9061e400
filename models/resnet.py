"""The CIFAR ResNets of He et al. (2016, Sec. 4.2); ResNet-32 is the TNT paper's CIFAR-10 model.

    conv3x3(C_in -> 16, no bias) -> BN -> ReLU
    3 stages x n basic blocks, 16 / 32 / 64 channels, stride 2 at the start of stages 2 and 3
    global average pool -> Linear(64 -> num_classes)
    depth = 6n + 2: n = 5 gives ResNet-32 (0.46 M parameters with 10 classes)

A basic block is conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU. Convs
carry no bias (BN follows each). Where a block halves the resolution and doubles the channels,
the shortcut is He et al.'s option A: subsample by 2 and zero-pad the new channels, so the
shortcut has no parameters (the reference code's "PaddingShortcutDownsampleOnly"); elsewhere
it is the identity.

Initialisation (docs/problems.md, "Initialisation": as in the reference code): kaiming_normal_
(fan_in, ReLU gain) on every conv weight; BN weight 1, bias 0 (PyTorch's default).
Note: the TNT reference code's "kaiming_normal" initialisation also draws the final Linear
weight with kaiming_normal_ (its bias keeps PyTorch's default), as akamaster's
pytorch_resnet_cifar10 does; we do the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from models.task import Task

STAGE_WIDTHS = (16, 32, 64)


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: keep every `stride`-th pixel, zero-pad the extra channels equally on
    both sides (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("a zero-padding shortcut cannot reduce the channels")
        self.stride = stride
        self.pad_before = (out_channels - in_channels) // 2
        self.pad_after = out_channels - in_channels - self.pad_before

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        reshapes = stride != 1 or in_channels != out_channels
        self.shortcut: nn.Module = (
            ZeroPadShortcut(in_channels, out_channels, stride) if reshapes else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images; `blocks_per_stage` is n (5 for ResNet-32)."""

    TASK = Task.classification

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, blocks_per_stage: int = 5
    ) -> None:
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be at least 1, got {blocks_per_stage}")
        in_channels = int(input_shape[0])
        self.conv1 = nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        self.relu = nn.ReLU()
        stages: list[nn.Module] = []
        width = STAGE_WIDTHS[0]
        for index, stage_width in enumerate(STAGE_WIDTHS):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(width, stage_width, stride))
                width = stage_width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)  # global average pooling
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
        nn.init.kaiming_normal_(self.fc.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.stages(x)
        return self.fc(self.flatten(self.pool(x)))

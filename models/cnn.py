"""A small CNN for 28x28 images in the style of DeepOBS' fmnist_2c2d (Schneider et al. 2019),
for quick classifier comparisons (and the TENGraD Fashion-MNIST experiment of this project).

    conv5x5(-> 32, 'same') -> ReLU -> max-pool 2x2 / 2
    conv5x5(-> 64, 'same') -> ReLU -> max-pool 2x2 / 2
    flatten -> Linear(-> 1024) -> ReLU -> Linear(-> num_classes)

On 28x28 inputs: 28 -> 14 -> 7, so the first dense layer sees 7*7*64 = 3136 features and the
network has 3,274,634 parameters with 10 classes. TensorFlow's 'same' pooling rounds up on odd
sizes, hence ceil_mode=True.

Initialisation as DeepOBS: every weight from a normal with std 0.05 truncated at two standard
deviations (TensorFlow's truncated_normal), every bias 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from models.task import Task

INIT_STD = 0.05
INIT_BIAS = 0.05


class TwoConvTwoDense(nn.Module):
    TASK = Task.classification

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        conv_channels: Sequence[int] = (32, 64),
        hidden_size: int = 1024,
    ) -> None:
        super().__init__()
        channels, height, width = (int(size) for size in input_shape)
        layers: list[nn.Module] = []
        for out_channels in conv_channels:
            layers += [
                nn.Conv2d(channels, out_channels, kernel_size=5, padding=2),  # 'same'
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True),
            ]
            channels, height, width = out_channels, math.ceil(height / 2), math.ceil(width / 2)
        layers += [
            nn.Flatten(),
            nn.Linear(channels * height * width, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, num_classes),
        ]
        self.layers = nn.Sequential(*layers)
        for module in self.layers:
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, 0.0, INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)
                nn.init.constant_(module.bias, INIT_BIAS)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

"""A small multilayer perceptron classifier: flatten, [Linear, ReLU] per hidden size, Linear
to the class logits. PyTorch's default initialisation."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import Tensor, nn

from models.task import Task


class MLP(nn.Module):
    TASK = Task.classification

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, hidden_sizes: Sequence[int]
    ) -> None:
        super().__init__()
        sizes = [math.prod(input_shape), *hidden_sizes]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in itertools.pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

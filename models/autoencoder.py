"""Deep autoencoders of Hinton & Salakhutdinov (2006), the TNT and K-BFGS papers' problems.

The encoder maps the flattened input through `encoder_sizes`; the decoder mirrors it back to
the input size. ReLU follows every hidden layer; the code layer (the last encoder size) and
the output layer are linear, and the output is read as logits or means by the likelihood.
MNIST: 784-1000-500-250-30-250-500-1000-784. Initialisation: PyTorch's default, as in the
reference code.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import Tensor, nn

from models.task import Task


class DeepAutoencoder(nn.Module):
    TASK = Task.reconstruction

    def __init__(self, input_shape: Sequence[int], encoder_sizes: Sequence[int]) -> None:
        super().__init__()
        if not encoder_sizes:
            raise ValueError("encoder_sizes must name at least the code size")
        input_size = math.prod(input_shape)
        sizes = [input_size, *encoder_sizes, *reversed(encoder_sizes[:-1]), input_size]
        code_index = len(encoder_sizes)  # sizes[code_index] is the code
        layers: list[nn.Module] = [nn.Flatten()]
        for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
            layers.append(nn.Linear(fan_in, fan_out))
            if index not in (code_index, len(sizes) - 1):
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

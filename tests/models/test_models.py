"""The models of the foundation: their architectures and parameter counts."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from models.autoencoder import DeepAutoencoder
from models.mlp import MLP
from models.task import Task


def dense_parameter_count(sizes: list[int]) -> int:
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(sizes))


def test_mnist_autoencoder_architecture() -> None:
    model = DeepAutoencoder([1, 28, 28], [1000, 500, 250, 30])
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.ReLU))]
    sizes = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == list(itertools.pairwise(sizes))
    # ReLU after every hidden layer; the code layer (30) and the output layer are linear
    kinds = ["L" if isinstance(m, nn.Linear) else "R" for m in layers]
    assert "".join(kinds) == "LRLRLRLLRLRLRL"
    count = sum(p.numel() for p in model.parameters())
    print(f"mnist_ae parameters: {count:,}")
    assert count == dense_parameter_count(sizes) == 2_837_314
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 784)
    assert model.TASK is Task.reconstruction


def test_mlp_classifier() -> None:
    model = MLP([1, 28, 28], 10, [256, 128])
    count = sum(p.numel() for p in model.parameters())
    print(f"mlp parameters: {count:,}")
    assert count == dense_parameter_count([784, 256, 128, 10])
    assert model(torch.rand(4, 1, 28, 28)).shape == (4, 10)
    assert model.TASK is Task.classification

"""Evaluation: eval mode, except at step 0 of a network with BatchNorm, where each batch is
normalised with its own statistics (the running ones are still mean 0, variance 1), and the
running statistics are left exactly as they were."""

from __future__ import annotations

import copy

import pytest
import torch

from models.likelihoods import make_likelihood
from models.mlp import MLP
from models.resnet import CifarResNet
from runners.build import EvalSet
from runners.evaluate import evaluate, has_batch_norm

BATCH = 32


@pytest.fixture
def network_and_data() -> tuple[CifarResNet, EvalSet]:
    torch.manual_seed(0)
    model = CifarResNet(input_shape=[3, 32, 32], num_classes=10, blocks_per_stage=1).eval()
    inputs = torch.randn(2 * BATCH, 3, 32, 32) * 3.0 + 2.0  # far from mean 0, variance 1
    return model, EvalSet(inputs, torch.randint(0, 10, (2 * BATCH,)))


def test_step_zero_uses_each_batchs_statistics(network_and_data) -> None:
    model, data = network_and_data
    likelihood = make_likelihood("cross_entropy")
    untrained = evaluate(model, likelihood, data, BATCH)["loss"]
    batch_statistics = evaluate(model, likelihood, data, BATCH, batch_statistics=True)["loss"]
    # by hand: each batch through a copy in training mode (what the first training step sees)
    trained_mode = copy.deepcopy(model).train()
    with torch.no_grad():
        by_hand = [
            likelihood.loss(trained_mode(data.inputs[i : i + BATCH]), data.targets[i : i + BATCH])
            for i in (0, BATCH)
        ]
    assert batch_statistics == pytest.approx(torch.stack(by_hand).mean().item(), rel=1e-5)
    assert untrained > 3 * batch_statistics  # the meaningless eval-mode point


def test_batch_statistics_leave_the_running_statistics_unchanged(network_and_data) -> None:
    model, data = network_and_data
    before = {name: value.clone() for name, value in model.named_buffers()}
    evaluate(model, make_likelihood("cross_entropy"), data, BATCH, batch_statistics=True)
    after = dict(model.named_buffers())
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not any(module.training for module in model.modules())  # still in eval mode


def test_which_networks_have_batch_norm() -> None:
    assert has_batch_norm(CifarResNet(input_shape=[3, 32, 32], num_classes=10))
    assert not has_batch_norm(MLP(input_shape=[1, 28, 28], num_classes=10, hidden_sizes=[8]))


def test_the_weight_norm_is_every_parameters_squares() -> None:
    from runners.trainer import weight_sq_norm

    model = MLP(input_shape=[1, 2, 2], num_classes=3, hidden_sizes=[2])
    expected = sum(float((p.double() ** 2).sum()) for p in model.parameters())
    assert weight_sq_norm(model) == pytest.approx(expected, rel=1e-12)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert weight_sq_norm(model) != pytest.approx(expected)  # weights and biases count

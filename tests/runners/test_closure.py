"""The step closure is a torch.optim closure that also carries what curvature methods need."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.likelihoods import CrossEntropy
from runners.closure import StepClosure


def make_closure() -> StepClosure:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    inputs, targets = torch.randn(8, 4), torch.randint(0, 3, (8,))
    return StepClosure(model, CrossEntropy(), inputs, targets)


def test_call_zeroes_forwards_backpropagates_and_returns_the_loss() -> None:
    closure = make_closure()
    parameters = list(closure.model.parameters())
    expected_loss = nn.functional.cross_entropy(closure.model(closure.inputs), closure.targets)
    expected_grads = torch.autograd.grad(expected_loss, parameters)
    for parameter in parameters:  # stale gradients must not leak into the step
        parameter.grad = torch.full_like(parameter, 7.0)
    loss = closure()
    assert loss.item() == pytest.approx(expected_loss.item())
    assert not loss.requires_grad
    for parameter, expected in zip(parameters, expected_grads, strict=True):
        assert torch.allclose(parameter.grad, expected)
    closure()  # a second call evaluates the same batch again, not accumulating
    for parameter, expected in zip(parameters, expected_grads, strict=True):
        assert torch.allclose(parameter.grad, expected)
    assert closure.calls == 2
    assert torch.equal(closure.outputs, closure.model(closure.inputs))


def test_works_with_torch_optimizers() -> None:
    closure = make_closure()
    optimizer = torch.optim.LBFGS(closure.model.parameters(), max_iter=5)
    first = closure().item()
    optimizer.step(closure)
    assert closure().item() < first


def test_the_sampled_output_gradient_backpropagates_through_the_retained_graph() -> None:
    closure = make_closure()
    closure.retain_graph = True
    closure()
    torch.manual_seed(3)
    gradient = closure.output_gradient(sampled=True)
    torch.manual_seed(3)  # the same draw: the sampled loss's own gradient, by autograd
    labels = closure.likelihood.sample(closure.outputs)
    last = list(closure.model.parameters())[-1]
    expected = torch.autograd.grad(
        closure.likelihood.loss(closure.outputs, labels), [last], retain_graph=True
    )[0]
    (got,) = torch.autograd.grad(closure.outputs, [last], grad_outputs=gradient)
    torch.testing.assert_close(got, expected)


def test_forward_outputs_evaluates_the_model_without_the_loss() -> None:
    closure = make_closure()
    outputs = closure.forward_outputs()
    assert outputs.requires_grad and closure.loss is None and closure.calls == 1
    assert all(p.grad is None for p in closure.model.parameters())
    expected = torch.autograd.grad(
        closure.likelihood.loss(outputs, closure.targets), [outputs], retain_graph=True
    )[0]
    torch.testing.assert_close(closure.output_gradient(), expected)


def test_the_output_gradient_needs_a_forward_pass() -> None:
    with pytest.raises(RuntimeError, match="call the closure first"):
        make_closure().output_gradient(sampled=True)

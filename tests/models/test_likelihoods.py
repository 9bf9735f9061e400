"""The likelihoods against their formulas written out, and their samplers against the
predictive distributions they claim to sample."""

from __future__ import annotations

import math

import pytest
import torch

from models.likelihoods import (
    BernoulliLikelihood,
    CrossEntropy,
    GaussianLikelihood,
    Likelihood,
    make_likelihood,
)


def test_bernoulli_is_binary_cross_entropy_summed_over_outputs_mean_over_batch() -> None:
    logits = torch.randn(5, 7, dtype=torch.float64)
    targets = torch.rand(5, 7, dtype=torch.float64)
    p = 1 / (1 + torch.exp(-logits))
    per_example = -(targets * torch.log(p) + (1 - targets) * torch.log(1 - p)).sum(dim=1)
    assert BernoulliLikelihood().loss(logits, targets).item() == pytest.approx(
        per_example.mean().item(), rel=1e-12
    )


def test_gaussian_is_half_squared_error_summed_mean_over_batch() -> None:
    outputs, targets = torch.randn(4, 6), torch.randn(4, 6)
    expected = sum(0.5 * float(((outputs[n] - targets[n]) ** 2).sum()) for n in range(4)) / 4
    assert GaussianLikelihood().loss(outputs, targets).item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_and_accuracy() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    labels = torch.tensor([0, 2])
    expected = (
        -(
            math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1)))
            + math.log(1 / (2 + math.exp(3)))
        )
        / 2
    )
    likelihood = CrossEntropy()
    assert likelihood.loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert likelihood.correct(logits, labels).item() == 1


@pytest.mark.parametrize("name", ["cross_entropy", "bernoulli", "gaussian"])
def test_samples_follow_the_predictive_distribution(name: str) -> None:
    torch.manual_seed(0)
    likelihood = make_likelihood(name)
    draws = 20_000
    outputs = torch.tensor([[1.5, -0.5, 0.0]]).repeat(draws, 1)
    samples = likelihood.sample(outputs)
    if name == "cross_entropy":
        assert samples.shape == (draws,) and samples.dtype == torch.int64
        frequencies = torch.bincount(samples, minlength=3).double() / draws
        expected = torch.softmax(outputs[0].double(), dim=0)
    elif name == "bernoulli":
        assert set(samples.unique().tolist()) <= {0.0, 1.0} and samples.dtype == outputs.dtype
        frequencies, expected = samples.double().mean(dim=0), torch.sigmoid(outputs[0].double())
    else:
        assert samples.std(dim=0).double().sub(1.0).abs().max() < 0.03  # unit variance
        frequencies, expected = samples.double().mean(dim=0), outputs[0].double()
    assert torch.allclose(frequencies, expected, atol=0.02)
    assert not samples.requires_grad


def test_unknown_likelihood() -> None:
    with pytest.raises(ValueError, match="Unknown likelihood 'poisson'"):
        make_likelihood("poisson")


class _AutogradOnly(BernoulliLikelihood):
    """A likelihood without a closed form: the base class's autograd of its loss."""

    output_gradient = Likelihood.output_gradient  # type: ignore[assignment]


@pytest.mark.parametrize(
    "likelihood", [CrossEntropy(), BernoulliLikelihood(), GaussianLikelihood(), _AutogradOnly()]
)
def test_the_closed_form_output_gradient_is_the_loss_gradient(likelihood) -> None:
    """(softmax(z) - onehot(y)) / N, (sigmoid(z) - y) / N, (z - y) / N against autograd of
    the loss, in float64, at targets drawn from the model and at arbitrary ones."""
    torch.manual_seed(0)
    outputs = 3 * torch.randn(6, 5, dtype=torch.float64)
    unchanged = outputs.clone()
    classes = isinstance(likelihood, CrossEntropy)
    arbitrary = torch.randint(0, 5, (6,)) if classes else torch.rand_like(outputs)
    for targets in (likelihood.sample(outputs), arbitrary):
        leaf = outputs.clone().requires_grad_()
        (expected,) = torch.autograd.grad(likelihood.loss(leaf, targets), leaf)
        got = likelihood.output_gradient(outputs, targets)
        assert not got.requires_grad
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)
    assert torch.equal(outputs, unchanged)  # the closed forms work on copies


@pytest.mark.parametrize("case", ["positions", "probabilities"])
def test_cross_entropy_s_other_shapes_take_the_autograd_gradient(case: str) -> None:
    torch.manual_seed(0)
    if case == "positions":  # (N, classes, positions) logits, (N, positions) classes
        outputs, targets = torch.randn(4, 3, 5, dtype=torch.float64), torch.randint(0, 3, (4, 5))
    else:  # class probabilities as targets
        outputs = torch.randn(4, 3, dtype=torch.float64)
        targets = torch.softmax(torch.randn(4, 3, dtype=torch.float64), dim=1)
    leaf = outputs.clone().requires_grad_()
    (expected,) = torch.autograd.grad(CrossEntropy().loss(leaf, targets), leaf)
    torch.testing.assert_close(CrossEntropy().output_gradient(outputs, targets), expected)

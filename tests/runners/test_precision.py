"""trainer.precision=bfloat16: the forward pass and loss run under bfloat16 autocast, for every
optimizer, while the weights, gradients, curvature statistics, inverses and updates stay
float32 (runners.closure, optimizers.curvature.layers); float32, the default, is the exact
arithmetic and keeps earlier runs' identities."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.errors import ConfigCompositionException
from torch import Tensor, nn

from models.likelihoods import BernoulliLikelihood, CrossEntropy, GaussianLikelihood, Likelihood
from runners.build import EvalSet
from runners.closure import StepClosure
from runners.evaluate import evaluate
from runners.run_identity import identity_dict, run_id
from tests.conftest import compose_config, read_metrics, read_summary, run_dirs
from tests.optimizers.conformance import OPTIMIZERS, OptimizerInfo
from tests.optimizers.problems import full_loss, tiny_batches, tiny_convnet, tiny_mlp

BF16 = torch.bfloat16
F32 = torch.float32


def by_name(value: Any) -> str:
    return getattr(value, "name", None) or getattr(value, "__name__", "")


def floating_tensors(value: Any) -> Iterator[Tensor]:
    """Every floating-point tensor in a nest of dicts, lists and tuples (an optimizer's state)."""
    if isinstance(value, Tensor):
        if value.is_floating_point():
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from floating_tensors(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from floating_tensors(item)


def bfloat16_steps(
    optimizer: torch.optim.Optimizer, model: nn.Module, batches: list[tuple[Tensor, Tensor]]
) -> list[float]:
    """One step per batch with the runner's closure under bfloat16 autocast; the losses."""
    losses = []
    for index, (inputs, targets) in enumerate(batches):
        torch.manual_seed(index)  # the sampled Fisher's labels, as tests.optimizers.problems
        closure = StepClosure(model, CrossEntropy(), inputs, targets, autocast=BF16)
        losses.append(float(optimizer.step(closure)))
    return losses


def output_dtypes(module: nn.Module) -> list[torch.dtype]:
    """The dtypes of `module`'s outputs from now on, filled by a forward hook."""
    seen: list[torch.dtype] = []

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        seen.append(output.dtype)

    module.register_forward_hook(hook)
    return seen


@pytest.mark.parametrize("make_model", [tiny_convnet, tiny_mlp], ids=by_name)
@pytest.mark.parametrize("info", OPTIMIZERS, ids=by_name)
def test_every_optimizer_learns_under_autocast_and_keeps_float32_state(
    info: OptimizerInfo, make_model: Callable[..., nn.Module]
) -> None:
    model = make_model(dtype=F32)
    optimizer = info.build(model)
    batches = tiny_batches(8, dtype=F32)
    before = full_loss(model, batches)
    seen = output_dtypes([m for m in model.modules() if isinstance(m, nn.Linear)][-1])
    losses = bfloat16_steps(optimizer, model, batches * 4)
    # the steps' forward passes ran in bfloat16 (else this test would check nothing)
    assert seen and set(seen) == {BF16}, seen
    after = full_loss(model, batches)  # exact float32 arithmetic: the model really learned
    assert all(math.isfinite(loss) for loss in losses)
    assert after < 0.8 * before, (before, after)
    for parameter in model.parameters():
        assert parameter.dtype == F32
        assert parameter.grad is not None and parameter.grad.dtype == F32
    state = list(floating_tensors(optimizer.state))
    assert state, f"{info.name} has no tensors in its state to check"
    wrong = {str(t.dtype) for t in state if t.dtype != F32}
    assert not wrong, f"{info.name} keeps {wrong} tensors in its state"


def test_the_closure_runs_forward_and_loss_under_autocast_and_backward_in_float32() -> None:
    model = tiny_mlp(dtype=F32)
    inputs, targets = tiny_batches(1, dtype=F32)[0]
    closure = StepClosure(model, CrossEntropy(), inputs, targets, autocast=BF16)
    closure.retain_graph = True
    loss = closure()
    assert closure.outputs is not None and closure.outputs.dtype == BF16
    assert loss.dtype == F32  # cross-entropy is on autocast's float32 list
    assert all(p.grad is not None and p.grad.dtype == F32 for p in model.parameters())
    # the sampled-Fisher pass (TNT's torch.autograd.grad) gives float32 gradients too
    sampled = closure.output_gradient(sampled=True)
    assert sampled.dtype == BF16  # dLoss/doutputs in the outputs' dtype, as autograd's
    gradients = torch.autograd.grad(closure.outputs, list(model.parameters()), sampled)
    assert all(g.dtype == F32 for g in gradients)
    # the default closure is unchanged: no autocast
    exact = StepClosure(model, CrossEntropy(), inputs, targets)
    exact()
    assert exact.outputs is not None and exact.outputs.dtype == F32


@pytest.mark.parametrize(
    "likelihood", [CrossEntropy(), BernoulliLikelihood(), GaussianLikelihood()], ids=by_name
)
def test_every_likelihood_gives_a_float32_loss_under_autocast(likelihood: Likelihood) -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 4)
    inputs = torch.randn(8, 6)
    targets = (
        torch.randint(0, 4, (8,)) if isinstance(likelihood, CrossEntropy) else torch.rand(8, 4)
    )
    closure = StepClosure(model, likelihood, inputs, targets, autocast=BF16)
    closure.retain_graph = True
    loss = closure()
    assert loss.dtype == F32
    # the closed-form output gradient is the autocast loss's own, through autocast's cast
    assert closure.outputs is not None and closure.loss is not None
    (expected,) = torch.autograd.grad(closure.loss, [closure.outputs])
    assert closure.output_gradient().dtype == BF16
    torch.testing.assert_close(closure.output_gradient(), expected, rtol=0.0, atol=0.0)


def test_evaluation_uses_the_same_autocast() -> None:
    model = tiny_mlp(dtype=F32)
    seen = output_dtypes(model[-1])
    batches = tiny_batches(4, dtype=F32)
    inputs = torch.cat([x for x, _ in batches])
    targets = torch.cat([y for _, y in batches])
    split = EvalSet(inputs, targets)
    exact = evaluate(model, CrossEntropy(), split, batch_size=16)
    assert set(seen) == {F32}
    seen.clear()
    rounded = evaluate(model, CrossEntropy(), split, batch_size=16, autocast=BF16)
    assert set(seen) == {BF16}
    assert isinstance(rounded["loss"], float) and isinstance(rounded["accuracy"], float)
    assert rounded["loss"] != exact["loss"]  # another arithmetic ...
    assert rounded["loss"] == pytest.approx(exact["loss"], rel=2e-2)  # ... of the same model


def test_float32_keeps_the_identity_of_earlier_runs_and_bfloat16_changes_it() -> None:
    base = compose_config()
    float32 = compose_config("trainer.precision=float32")
    bfloat16 = compose_config("trainer.precision=bfloat16")
    assert "precision" not in identity_dict(float32)["trainer"]
    assert run_id(float32, "default") == run_id(base, "default")
    assert run_id(bfloat16, "default") != run_id(base, "default")


def test_an_unknown_precision_fails_at_composition_with_the_choices() -> None:
    with pytest.raises(ConfigCompositionException) as failure:
        compose_config("trainer.precision=fp16")
    assert "expected one of [float32, bfloat16]" in str(failure.value.__cause__)


def test_a_real_bfloat16_run_completes_with_finite_losses(train_quick, tmp_path: Path) -> None:
    result = train_quick("optimizer=kfac", "trainer.max_epochs=1", "trainer.precision=bfloat16")
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert read_summary(run_dir)["status"] == "completed"
    assert "precision: bfloat16" in (run_dir / "config.yaml").read_text()
    metrics = read_metrics(run_dir)
    losses = [m[key] for m in metrics for key in ("train/loss", "test/loss") if key in m]
    assert any("train/loss" in m for m in metrics) and any("test/loss" in m for m in metrics)
    assert all(math.isfinite(loss) for loss in losses)

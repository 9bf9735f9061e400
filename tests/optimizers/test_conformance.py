"""Generic tests over every row of the conformance table (tests/optimizers/conformance.py)."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
from hydra.utils import get_object
from omegaconf import OmegaConf

from runners.build import build_optimizer
from tests.conftest import CONF_DIR, QUICK, compose_config, read_summary, run_dirs, run_train
from tests.optimizers.conformance import OPTIMIZERS, Invalid, OptimizerInfo
from tests.optimizers.problems import (
    closure_for,
    full_loss,
    take_steps,
    tiny_batches,
    tiny_convnet,
)

ROWS = {info.name: info for info in OPTIMIZERS}
INVALID = [(info, invalid) for info in OPTIMIZERS for invalid in info.invalid]


def by_name(info: OptimizerInfo) -> str:
    return info.name


def test_every_optimizer_config_has_a_conformance_row() -> None:
    classes = {info.cls for info in OPTIMIZERS}
    for path in sorted((CONF_DIR / "optimizer").glob("*.yaml")):
        target = OmegaConf.load(path)["_target_"]
        assert get_object(target) in classes, f"{path.name}: add a row to conformance.py"
    for info in OPTIMIZERS:
        assert (CONF_DIR / "optimizer" / f"{info.name}.yaml").is_file(), info.name


@pytest.mark.parametrize("info", OPTIMIZERS, ids=by_name)
def test_the_config_builds_through_hydra_and_the_runner(info: OptimizerInfo) -> None:
    cfg = compose_config(f"optimizer={info.name}")
    model = tiny_convnet(dtype=torch.float32)
    optimizer = build_optimizer(cfg, model)
    assert type(optimizer) is info.cls
    defaults = OmegaConf.to_container(cfg.optimizer)
    assert optimizer.param_groups[0]["lr"] == defaults["lr"]


@pytest.mark.parametrize("info", OPTIMIZERS, ids=by_name)
def test_loss_falls_on_a_tiny_problem(info: OptimizerInfo) -> None:
    model = tiny_convnet(dtype=torch.float32)
    optimizer = info.build(model)
    batches = tiny_batches(8, dtype=torch.float32)
    before = full_loss(model, batches)
    take_steps(optimizer, model, batches * 4)
    after = full_loss(model, batches)
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize(("info", "invalid"), INVALID, ids=lambda x: getattr(x, "name", ""))
def test_invalid_arguments_raise_the_expected_message(
    info: OptimizerInfo, invalid: Invalid
) -> None:
    with pytest.raises(ValueError) as error:
        info.build(tiny_convnet(), **invalid.settings)
    assert invalid.message in str(error.value)


def test_an_invalid_argument_stops_a_real_run_at_start_up(tmp_path: Path) -> None:
    result = run_train(*QUICK, "optimizer=kfac", "optimizer.damping=-1.0", runs_dir=tmp_path)
    assert result.returncode == 2
    assert "optimizer optimizers.kfac.KFAC: Invalid damping value: -1.0" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_diverging_run_ends_as_diverged_not_as_a_crash(tmp_path: Path) -> None:
    result = run_train(*QUICK, "optimizer=kfac", "optimizer.lr=1e6", runs_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert read_summary(run_dir)["status"] == "diverged"


@pytest.mark.parametrize("info", OPTIMIZERS, ids=by_name)
def test_step_returns_the_loss_of_the_closures_first_call(info: OptimizerInfo) -> None:
    model = tiny_convnet()
    optimizer = info.build(model)
    batch = tiny_batches(1)[0]
    expected = closure_for(copy.deepcopy(model), batch)()
    closure = closure_for(model, batch)
    assert torch.equal(optimizer.step(closure), expected)
    assert closure.calls == info.closure_calls  # K-BFGS: a second pass at the new weights


def saved(state: dict) -> dict:
    """`state` through torch.save and torch.load, as a checkpoint carries it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("info", OPTIMIZERS, ids=by_name)
def test_state_dict_round_trip_gives_bit_identical_next_steps(info: OptimizerInfo) -> None:
    batches = tiny_batches(7)
    model = tiny_convnet()
    optimizer = info.build(model)
    take_steps(optimizer, model, batches[:3])

    resumed_model = tiny_convnet(seed=1)  # different weights until the state is loaded
    resumed = info.build(resumed_model)
    resumed_model.load_state_dict(saved(model.state_dict()))
    resumed.load_state_dict(saved(optimizer.state_dict()))
    for index in range(3, 7):  # lockstep, across an inverse refresh
        take_steps(optimizer, model, batches[index : index + 1], seed=index)
        take_steps(resumed, resumed_model, batches[index : index + 1], seed=index)
        for p, q in zip(model.parameters(), resumed_model.parameters(), strict=True):
            assert torch.equal(p, q), f"step {index}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("info", OPTIMIZERS, ids=by_name)
def test_gpu_steps_match_cpu_steps(info: OptimizerInfo) -> None:
    batches = tiny_batches(5)
    results = {}
    for device in ("cpu", "cuda"):
        model = tiny_convnet().to(device)
        optimizer = info.build(model, **info.deterministic)
        on_device = [(x.to(device), y.to(device)) for x, y in batches]
        take_steps(optimizer, model, on_device)
        results[device] = [p.detach().cpu() for p in model.parameters()]
    for p_cpu, p_gpu in zip(results["cpu"], results["cuda"], strict=True):
        torch.testing.assert_close(p_gpu, p_cpu, rtol=1e-6, atol=1e-8)

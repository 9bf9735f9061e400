"""matmul_precision (optimizers.precision): bfloat16 operands for the big products change the
arithmetic, within bfloat16's rounding of the full-precision result, and nothing else (the
running statistics stay in the parameters' precision); the mode product keeps its math."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from optimizers.kbfgs import KBFGS
from optimizers.kfac import KFAC
from optimizers.precision import MatmulPrecision, gram, matmul
from optimizers.shampoo import Shampoo
from optimizers.statistics import accumulate_gram
from optimizers.tensor_modes import mode_product
from optimizers.tnt import TNT
from tests.optimizers.problems import take_steps, tiny_batches, tiny_mlp

BF16 = MatmulPrecision.bfloat16
F32 = torch.float32


def relative_error(approximate: Tensor, exact: Tensor) -> float:
    return float((approximate - exact).norm() / exact.norm())


def test_bfloat16_products_round_the_full_product_and_keep_its_dtype() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(64, 48, generator=generator)
    b = torch.randn(48, 32, generator=generator)
    product = matmul(a, b, BF16)
    assert product.dtype == F32
    assert 0.0 < relative_error(product, a @ b) < 1e-2
    rows = torch.rand(200, 30, generator=generator)
    assert 0.0 < relative_error(gram(rows, BF16), rows.T @ rows) < 1e-2
    assert torch.equal(matmul(a, b, MatmulPrecision.full), a @ b)


def test_bfloat16_running_gram_average_ignores_old_values_when_told() -> None:
    rows = torch.rand(50, 8)
    poisoned = torch.full((8, 8), float("nan"))
    fresh = accumulate_gram(poisoned, rows, keep=0.0, add=0.5, precision=BF16)
    assert fresh.dtype == F32 and bool(torch.isfinite(fresh).all())
    torch.testing.assert_close(fresh, 0.5 * rows.T @ rows, rtol=1e-2, atol=1e-2)
    averaged = accumulate_gram(fresh.clone(), rows, keep=0.9, add=0.1, precision=BF16)
    torch.testing.assert_close(averaged, 0.55 * rows.T @ rows, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_mode_product_of_a_3_way_tensor(mode: int) -> None:
    generator = torch.Generator().manual_seed(mode)
    tensor = torch.randn(4, 5, 6, generator=generator, dtype=torch.float64)
    matrix = torch.randn(3, tensor.shape[mode], generator=generator, dtype=torch.float64)
    expected = torch.tensordot(matrix, tensor, dims=([1], [mode])).movedim(0, mode)
    torch.testing.assert_close(mode_product(tensor, matrix, mode), expected)
    low = mode_product(tensor.float(), matrix.float(), mode, BF16)
    assert low.dtype == F32 and relative_error(low.double(), expected) < 2e-2


def build(name: str, model: nn.Module, precision: str) -> torch.optim.Optimizer:
    common = {"warm_start": False, "inverse_every": 2, "matmul_precision": precision}
    if name == "kfac":
        return KFAC(model.parameters(), model=model, lr=0.05, damping=0.1, **common)
    if name == "tnt":
        return TNT(model.parameters(), lr=0.002, eps=0.1, **common)
    if name == "shampoo":
        return Shampoo(model.parameters(), lr=0.02, eps=1e-3, **common)
    return KBFGS(model.parameters(), model=model, lr=0.3, damping=0.3, **common)


@pytest.mark.parametrize("name", ["kfac", "tnt", "shampoo", "kbfgs"])
def test_bfloat16_steps_stay_within_rounding_of_the_full_precision_steps(name: str) -> None:
    start = tiny_mlp(dtype=F32)
    batches = tiny_batches(4, batch_size=32, dtype=F32)
    moved = {}
    for precision in ("full", "bfloat16"):
        model = copy.deepcopy(start)
        optimizer = build(name, model, precision)
        take_steps(optimizer, model, batches)
        moved[precision] = [
            p.detach() - q.detach()
            for p, q in zip(model.parameters(), start.parameters(), strict=True)
        ]
        factors = [
            value
            for state in optimizer.state.values()
            for value in state.values()
            if isinstance(value, Tensor) and value.dim() == 2
        ]
        assert factors and all(factor.dtype == F32 for factor in factors)
    full = torch.cat([step.flatten() for step in moved["full"]])
    low = torch.cat([step.flatten() for step in moved["bfloat16"]])
    assert not torch.equal(low, full)  # the option takes effect
    assert relative_error(low, full) < 5e-2

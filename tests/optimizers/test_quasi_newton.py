"""The quasi-Newton updates (optimizers.quasi_newton) against dense computations written here:
the secant equation after BFGS, positive definiteness under the double damping even when
s^T y <= 0, and L-BFGS against the dense BFGS matrix of the same pairs."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from optimizers.quasi_newton import (
    _dense_is_cheaper,
    bfgs_update,
    double_damping,
    lbfgs_apply,
    levenberg_marquardt_damping,
    powell_damping,
)

F64 = torch.float64


def random_spd(size: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    root = torch.randn(size, size, generator=generator, dtype=F64)
    spd = root @ root.T / size + 0.1 * torch.eye(size, dtype=F64)
    return (spd + spd.T) / 2  # exactly symmetric


def random_vectors(size: int, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, generator=generator, dtype=F64), torch.randn(
        size, generator=generator, dtype=F64
    )


def dense_bfgs(inverse: Tensor, s: Tensor, y: Tensor) -> Tensor:
    """(I - rho s y^T) H (I - rho y s^T) + rho s s^T, as the product it is written as."""
    rho = 1.0 / torch.dot(s, y)
    left = torch.eye(len(s), dtype=F64) - rho * torch.outer(s, y)
    return left @ inverse @ left.T + rho * torch.outer(s, s)


def test_bfgs_update_meets_the_secant_equation_and_keeps_h_spd() -> None:
    inverse = random_spd(6, seed=0)
    s, _ = random_vectors(6, seed=1)
    y = random_spd(6, seed=2) @ s  # s^T y > 0
    updated, skipped = bfgs_update(inverse, s, y)
    assert not skipped
    torch.testing.assert_close(updated @ y, s)
    torch.testing.assert_close(updated, dense_bfgs(inverse, s, y))
    assert torch.equal(updated, updated.T)  # exactly symmetric
    assert torch.linalg.eigvalsh(updated).min() > 0


def test_bfgs_update_in_place_is_the_same_update_into_the_same_matrix() -> None:
    inverse = random_spd(6, seed=0)
    s, _ = random_vectors(6, seed=1)
    y = random_spd(6, seed=2) @ s
    expected, _ = bfgs_update(inverse, s, y)
    target = inverse.clone()
    updated, skipped = bfgs_update(target, s, y, in_place=True)
    assert updated is target and not skipped
    assert torch.equal(updated, expected)
    kept, skipped = bfgs_update(target, s, -y, in_place=True)  # refused: H kept exactly
    assert skipped and torch.equal(kept, expected)


@pytest.mark.parametrize("s_y_sign", [0.0, -1.0])
def test_bfgs_update_is_refused_without_positive_curvature(s_y_sign: float) -> None:
    s = torch.tensor([1.0, 0.0], dtype=F64)
    y = torch.tensor([s_y_sign, 1.0], dtype=F64)  # s^T y = 0 or -1
    kept, skipped = bfgs_update(torch.eye(2, dtype=F64), s, y)
    assert skipped and skipped.dtype == torch.bool and skipped.dim() == 0
    assert torch.equal(kept, torch.eye(2, dtype=F64))


def test_bfgs_update_is_refused_below_the_curvature_threshold() -> None:
    s = torch.tensor([1.0, 0.0], dtype=F64)
    y = torch.tensor([0.5, 1.0], dtype=F64)  # s^T y = 0.5
    assert bfgs_update(torch.eye(2, dtype=F64), s, y, torch.tensor(0.5, dtype=F64))[1]
    assert not bfgs_update(torch.eye(2, dtype=F64), s, y, torch.tensor(0.49, dtype=F64))[1]


def test_bfgs_update_is_refused_when_the_result_is_not_finite() -> None:
    s = torch.tensor([1e200, 0.0], dtype=F64)
    y = torch.tensor([1e-200, 1e300], dtype=F64)
    kept, skipped = bfgs_update(torch.eye(2, dtype=F64), s, y)
    assert skipped
    assert torch.equal(kept, torch.eye(2, dtype=F64))


@pytest.mark.parametrize("seed", range(5))
def test_double_damping_keeps_h_spd_even_for_negative_curvature_pairs(seed: int) -> None:
    inverse = random_spd(5, seed=seed)
    s, y = random_vectors(5, seed=100 + seed)
    if torch.dot(s, y) > 0:
        y = -y  # a pair of negative curvature, as a non-convex loss gives
    mu1, mu2 = 0.2, 0.5
    damped_s, damped_y = double_damping(s, y, lambda v: inverse @ v, mu1, mu2)
    # Powell on H: s^T y >= mu1 y^T H y with the original y; then LM: s^T y >= mu2 s^T s
    assert torch.dot(damped_s, y) >= mu1 * torch.dot(y, inverse @ y) * (1 - 1e-12)
    assert torch.dot(damped_s, damped_y) >= mu2 * torch.dot(damped_s, damped_s) * (1 - 1e-12)
    updated, skipped = bfgs_update(inverse, damped_s, damped_y)
    assert not skipped
    torch.testing.assert_close(updated @ damped_y, damped_s)
    assert torch.linalg.eigvalsh(updated).min() > 0


def test_powell_damping_formula() -> None:
    inverse = random_spd(4, seed=3)
    s, y = random_vectors(4, seed=4)
    y = -y if torch.dot(s, y) > 0 else y
    h_y = inverse @ y
    y_h_y, s_y = torch.dot(y, h_y), torch.dot(s, y)
    theta = 0.8 * y_h_y / (y_h_y - s_y)
    torch.testing.assert_close(powell_damping(s, y, h_y, 0.2), theta * s + (1 - theta) * h_y)
    # a pair with enough curvature is left alone
    assert torch.equal(powell_damping(h_y, y, h_y, 0.2), h_y)


def test_levenberg_marquardt_damping_formula() -> None:
    s, y = random_vectors(4, seed=5)
    s_s, s_y = torch.dot(s, s), torch.dot(s, y)
    mu2 = float(s_y / s_s) + 1.0  # active
    theta = (1 - mu2) * s_s / (s_s - s_y)
    torch.testing.assert_close(levenberg_marquardt_damping(s, y, mu2), theta * y + (1 - theta) * s)
    assert torch.equal(levenberg_marquardt_damping(s, 3 * s, 2.0), 3 * s)  # left alone


def pairs(count: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Pairs with y = B s for one SPD B plus noise (s^T y > 0 for each)."""
    curvature = random_spd(size, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    s = torch.randn(count, size, generator=generator, dtype=F64)
    y = s @ curvature + 0.05 * torch.randn(count, size, generator=generator, dtype=F64)
    assert ((s * y).sum(dim=1) > 0).all()
    return s, y


@pytest.mark.parametrize("columns", [4, 40])
@pytest.mark.parametrize("count", [1, 3, 8])
def test_lbfgs_equals_the_dense_bfgs_matrix_of_the_same_pairs(count: int, columns: int) -> None:
    """Both of lbfgs_apply's ways, the compact form on the columns and H formed first (chosen
    by their multiply-adds: 8 pairs of size 6 on 40 columns form H), equal the BFGS updates
    applied one by one from I."""
    s_history, y_history = pairs(count, 6, seed=count)
    dense = torch.eye(6, dtype=F64)
    for s, y in zip(s_history, y_history, strict=True):  # oldest first, from H0 = I
        dense = dense_bfgs(dense, s, y)
    generator = torch.Generator().manual_seed(9)
    vector = torch.randn(6, generator=generator, dtype=F64)
    matrix = torch.randn(6, columns, generator=generator, dtype=F64)
    torch.testing.assert_close(lbfgs_apply(vector, s_history, y_history), dense @ vector)
    torch.testing.assert_close(lbfgs_apply(matrix, s_history, y_history), dense @ matrix)


def test_lbfgs_takes_each_of_its_two_ways_in_the_test_above() -> None:
    assert _dense_is_cheaper(6, 40, 8)
    assert not _dense_is_cheaper(6, 4, 8)
    assert not _dense_is_cheaper(6, 40, 1)
    assert not _dense_is_cheaper(1000, 785, 100)  # the autoencoder's first layer


def test_lbfgs_without_pairs_is_the_identity() -> None:
    matrix = torch.randn(3, 2, dtype=F64)
    empty = torch.zeros(0, 3, dtype=F64)
    assert torch.equal(lbfgs_apply(matrix, empty, empty), matrix)


def test_lbfgs_does_not_change_its_input() -> None:
    s_history, y_history = pairs(2, 3, seed=0)
    vector = torch.ones(3, dtype=F64)
    lbfgs_apply(vector, s_history, y_history)
    assert torch.equal(vector, torch.ones(3, dtype=F64))


def test_bfgs_update_is_refused_when_the_update_would_overflow() -> None:
    """Finite vectors and scalars, but s s^T beyond float32's range: the bound on max|w|^2 +
    max|v|^2 refuses the update without a pass over the result."""
    s = torch.tensor([1e20, 0.0])
    y = torch.tensor([1e-20, 0.0])  # s^T y = 1, c ~ 1: w ~ s, |w|^2 ~ 1e40 > 3.4e38
    kept, skipped = bfgs_update(torch.eye(2), s, y)
    assert skipped and torch.equal(kept, torch.eye(2))
    fine, refused = bfgs_update(torch.eye(2), s * 1e-3, y * 1e3)  # |w|^2 ~ 1e34: updated
    assert not refused and bool(torch.isfinite(fine).all())

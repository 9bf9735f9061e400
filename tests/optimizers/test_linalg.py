"""Damped inverses and inverse roots against numpy/scipy, and the float64 / keep-previous
fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import optimizers.linalg as linalg
from optimizers.linalg import (
    InversionError,
    coupled_newton_inverse_root,
    damped_cholesky,
    damped_inverse,
    damping_only,
    inverse_root,
    keep_previous_on_failure,
)
from tests.optimizers.host_reads import counting_reads


def random_psd(size: int, rank: int, seed: int = 0, dtype: torch.dtype = torch.float64):
    generator = torch.Generator().manual_seed(seed)
    factor = torch.randn(size, rank, generator=generator, dtype=dtype)
    return factor @ factor.T


def test_damped_inverse_matches_numpy() -> None:
    matrix = random_psd(6, 3)  # singular: only the damping makes it invertible
    expected = np.linalg.inv(matrix.numpy() + 0.5 * np.eye(6))
    np.testing.assert_allclose(damped_inverse(matrix, 0.5).numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("root", [1.0, 2.0, 4.0, 6.0])
def test_inverse_root_matches_scipy(root: float) -> None:
    matrix = random_psd(7, 4, seed=1)
    expected = scipy.linalg.fractional_matrix_power(matrix.numpy() + 0.1 * np.eye(7), -1 / root)
    np.testing.assert_allclose(inverse_root(matrix, root, 0.1).numpy(), expected, rtol=1e-9)


def test_inverse_root_reads_round_off_negative_eigenvalues_as_zero() -> None:
    eigenvectors, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    matrix = eigenvectors @ torch.diag(torch.tensor([2.0, 1.0, 0.0, -1e-12]).double())
    matrix = matrix @ eigenvectors.T
    expected = eigenvectors @ torch.diag(torch.tensor([2.01, 1.01, 0.01, 0.01]).double() ** -0.5)
    expected = expected @ eigenvectors.T
    torch.testing.assert_close(inverse_root(matrix, 2.0, 0.01), expected)


def test_float32_cholesky_failure_is_retried_in_float64() -> None:
    # [[1, 1], [1, 1]] + 1e-8*I: in float32 1 + 1e-8 rounds to 1, the damped matrix stays
    # singular and Cholesky breaks down; in float64 it is positive definite.
    matrix = torch.ones(2, 2)
    damping = 1e-8
    assert int(torch.linalg.cholesky_ex(matrix + damping * torch.eye(2))[1]) != 0
    inverse = damped_inverse(matrix, damping)
    assert inverse.dtype == torch.float32
    expected = torch.linalg.inv(torch.ones(2, 2, dtype=torch.float64) + damping * torch.eye(2))
    torch.testing.assert_close(inverse.double(), expected, rtol=1e-6, atol=0)


def test_damped_cholesky_matches_numpy_with_a_float64_retry() -> None:
    matrix = random_psd(6, 3)  # singular: only the damping makes it positive definite
    expected = np.linalg.cholesky(matrix.numpy() + 0.5 * np.eye(6))
    np.testing.assert_allclose(damped_cholesky(matrix, 0.5).numpy(), expected, rtol=1e-10)
    # [[1, 1], [1, 1]] + 1e-8*I breaks down in float32 (as above), not in float64
    ones, damping = torch.ones(2, 2), 1e-8
    assert int(torch.linalg.cholesky_ex(ones + damping * torch.eye(2))[1]) != 0
    factor = damped_cholesky(ones, damping)
    assert factor.dtype == torch.float32
    expected = np.linalg.cholesky(np.ones((2, 2)) + damping * np.eye(2))
    np.testing.assert_allclose(factor.double().numpy(), expected, rtol=1e-6)
    with pytest.raises(InversionError):
        damped_cholesky(torch.full((3, 3), float("nan")), 0.1)


def test_failure_in_float64_raises_and_keep_previous_counts_it() -> None:
    broken = torch.full((3, 3), float("nan"))
    with pytest.raises(InversionError):
        damped_inverse(broken, 0.1)
    with pytest.raises(InversionError):
        inverse_root(broken, 2.0, 0.1)
    previous = torch.eye(3) * 7
    result, failed = keep_previous_on_failure(
        lambda: damped_inverse(broken, 0.1), previous, lambda: damping_only(broken, 0.1)
    )
    assert failed and result is previous
    result, failed = keep_previous_on_failure(
        lambda: damped_inverse(broken, 0.1), None, lambda: damping_only(broken, 0.1)
    )
    assert failed
    torch.testing.assert_close(result, torch.eye(3) * 10)
    result, failed = keep_previous_on_failure(
        lambda: damped_inverse(torch.eye(3), 1.0), previous, lambda: damping_only(broken, 0.1)
    )
    assert not failed
    torch.testing.assert_close(result, torch.eye(3) / 2)


def test_damping_only_is_the_root_of_the_damping() -> None:
    torch.testing.assert_close(damping_only(torch.zeros(2, 2), 16.0, root=4.0), torch.eye(2) / 2)


@pytest.mark.parametrize("root", [2, 4, 6])
def test_coupled_newton_matches_scipy(root: int) -> None:
    """The authors' coupled Newton iteration converges to the same root as scipy's, to its
    tolerance (max|M - I| <= 1e-6)."""
    matrix = random_psd(7, 4, seed=1)
    expected = scipy.linalg.fractional_matrix_power(matrix.numpy() + 0.1 * np.eye(7), -1 / root)
    result = coupled_newton_inverse_root(matrix, root, 0.1).numpy()
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)


def test_coupled_newton_is_the_authors_iteration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two iterations by hand from the authors' description (the TNT code's utils.py
    l.89-220): z = (1+p)/(2||G||_F), M_0 = zG, X_0 = z^(1/p) I, M_i = (1 - a) I + a M with
    a = -1/p, M <- M_i^p M, X <- X M_i; with the tolerance loose enough to stop there."""
    matrix, p, eps = random_psd(5, 5, seed=2), 4, 0.1
    g = matrix + eps * torch.eye(5, dtype=torch.float64)
    z = (1 + p) / (2 * torch.linalg.matrix_norm(g))
    identity = torch.eye(5, dtype=torch.float64)
    m, x = z * g, z ** (1 / p) * identity
    errors = []
    for _ in range(2):
        m_i = (1 + 1 / p) * identity - m / p
        m, x = torch.linalg.matrix_power(m_i, p) @ m, x @ m_i
        errors.append(float((m - identity).abs().max()))
    monkeypatch.setattr(linalg, "NEWTON_TOLERANCE", (errors[0] + errors[1]) / 2)
    torch.testing.assert_close(coupled_newton_inverse_root(matrix, p, eps), x)


# --------------------------------------------------------------------- batched versions
def mixed_matrices() -> list[torch.Tensor]:
    """Random float64 PSD matrices of three shapes, interleaved (some singular)."""
    sizes = [(3, 2), (5, 5), (3, 3), (4, 1), (5, 2), (3, 1), (4, 4)]
    return [random_psd(size, rank, seed=seed) for seed, (size, rank) in enumerate(sizes)]


DAMPINGS = [0.1, 0.5, 1e-3, 2.0, 0.3, 0.05, 1.0]


@pytest.mark.parametrize(
    ("batched", "single"),
    [(linalg.damped_inverses, damped_inverse), (linalg.damped_choleskys, damped_cholesky)],
)
def test_batched_cholesky_equals_per_matrix(batched, single) -> None:
    matrices = mixed_matrices()
    for matrix, damping, outcome in zip(
        matrices, DAMPINGS, batched(matrices, DAMPINGS), strict=True
    ):
        torch.testing.assert_close(outcome, single(matrix, damping), rtol=1e-12, atol=1e-12)


def test_batched_inverse_takes_damping_tensors() -> None:
    matrices = mixed_matrices()
    dampings = [torch.tensor(damping, dtype=torch.float64) for damping in DAMPINGS]
    for matrix, damping, outcome in zip(
        matrices, DAMPINGS, linalg.damped_inverses(matrices, dampings), strict=True
    ):
        torch.testing.assert_close(outcome, damped_inverse(matrix, damping), rtol=1e-12, atol=0)


def test_batched_inverse_roots_equal_per_matrix() -> None:
    matrices = mixed_matrices()
    roots = [2.0, 4.0, 2.0, 4.0, 4.0, 2.0, 6.0]  # the root splits a shape's group too
    outcomes = linalg.inverse_roots(matrices, roots, DAMPINGS)
    for matrix, root, damping, outcome in zip(matrices, roots, DAMPINGS, outcomes, strict=True):
        expected = inverse_root(matrix, root, damping)
        torch.testing.assert_close(outcome, expected, rtol=1e-10, atol=1e-12)


def newton_iterations(matrix: torch.Tensor, root: int, damping: float) -> int:
    """How many reads of the error the unbatched iteration makes: its iterations + 1."""
    reads = [0]
    original = torch.Tensor.__float__

    def counted(self: torch.Tensor) -> float:
        reads[0] += 1
        return original(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.Tensor, "__float__", counted)
        linalg._coupled_newton_once(matrix, root, damping)
    return reads[0]


def test_batched_coupled_newton_equals_per_matrix_each_stopping_on_its_own() -> None:
    # a well-conditioned matrix (near I: few iterations) with badly conditioned ones of the
    # same shape: each must stop at its own iteration, as the unbatched one does
    easy = torch.eye(4, dtype=torch.float64) + 1e-3 * random_psd(4, 4, seed=3)
    hard = random_psd(4, 2, seed=4)
    matrices = [easy, hard, random_psd(3, 3, seed=5), hard.clone()]
    roots, dampings = [4, 4, 2, 4], [1e-3, 1e-4, 0.1, 1e-2]
    iterations = [
        newton_iterations(m, r, d) for m, r, d in zip(matrices, roots, dampings, strict=True)
    ]
    assert iterations[0] < iterations[1], iterations  # really stop at different iterations
    outcomes = linalg.coupled_newton_inverse_roots(matrices, roots, dampings)
    for matrix, root, damping, outcome in zip(matrices, roots, dampings, outcomes, strict=True):
        expected = coupled_newton_inverse_root(matrix, root, damping)
        torch.testing.assert_close(outcome, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "batched",
    [
        lambda ms, ds: linalg.damped_inverses(ms, ds),
        lambda ms, ds: linalg.damped_choleskys(ms, ds),
        lambda ms, ds: linalg.inverse_roots(ms, [2.0] * len(ms), ds),
        lambda ms, ds: linalg.coupled_newton_inverse_roots(ms, [2] * len(ms), ds),
    ],
    ids=["inverse", "cholesky", "eigh_root", "coupled_newton"],
)
def test_a_non_finite_matrix_fails_alone(batched) -> None:
    matrices = mixed_matrices()
    matrices[2] = torch.full((3, 3), float("nan"), dtype=torch.float64)  # shares a group
    good = batched([m for i, m in enumerate(matrices) if i != 2], DAMPINGS[:2] + DAMPINGS[3:])
    outcomes = batched(matrices, DAMPINGS)
    assert isinstance(outcomes[2], InversionError)
    for outcome, expected in zip(outcomes[:2] + outcomes[3:], good, strict=True):
        torch.testing.assert_close(outcome, expected, rtol=1e-12, atol=1e-12)
    previous = torch.eye(3, dtype=torch.float64)
    kept, failed = keep_previous_on_failure(
        lambda: linalg.outcome_value(outcomes[2]), previous, lambda: torch.zeros(3, 3)
    )
    assert failed and kept is previous


def test_batched_float32_failure_is_retried_in_float64_alone() -> None:
    # the float32 Cholesky of [[1, 1], [1, 1]] + 1e-8*I breaks down (see above); its
    # neighbour in the batch keeps its float32 result
    matrices = [torch.ones(2, 2), torch.eye(2) * 2.0]
    inverse, neighbour = linalg.damped_inverses(matrices, [1e-8, 1.0])
    torch.testing.assert_close(inverse, damped_inverse(matrices[0], 1e-8))
    torch.testing.assert_close(neighbour, torch.eye(2) / 3.0)


def test_batched_calls_read_the_host_once(monkeypatch: pytest.MonkeyPatch) -> None:
    matrices = mixed_matrices()
    with counting_reads(monkeypatch) as reads:
        linalg.damped_inverses(matrices, DAMPINGS)
        linalg.inverse_roots(matrices, [2.0] * len(matrices), DAMPINGS)
    assert reads[0] == 2


def test_batched_coupled_newton_reads_once_per_iteration_for_all_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The groups iterate in lockstep: the most iterations any matrix needs (the unbatched
    one reads once more than it iterates), one more read that stops the loop, and one for
    the finiteness of the call; not one per group or per matrix."""
    matrices = mixed_matrices()
    roots = [2] * len(matrices)
    most = max(newton_iterations(m, 2, d) for m, d in zip(matrices, DAMPINGS, strict=True))
    with counting_reads(monkeypatch) as reads:
        linalg.coupled_newton_inverse_roots(matrices, roots, DAMPINGS)
    assert reads[0] == most + 1

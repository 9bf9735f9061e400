"""Damped inverses and inverse roots of symmetric positive semi-definite matrices.

Pure functions, shared by every curvature method. Numerical safety (docs/optimizers.md,
"Numerical safety"):

1. compute in the matrix's own precision (float32 in training);
2. if that fails (Cholesky breakdown, a non-converging eigensolver, a non-finite result),
   retry in float64 and return the result in the input's precision;
3. if float64 fails too, raise InversionError. `keep_previous_on_failure` turns that into
   "keep the previous inverse and count the event", so a bad factor never produces NaN
   weights.

Only the lower triangle of `matrix` is read (LAPACK's convention for Cholesky and eigh).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor


class InversionError(RuntimeError):
    """A damped inverse or root failed in float64 too."""


def _add_to_diagonal(matrix: Tensor, value: float) -> Tensor:
    damped = matrix.clone()
    damped.diagonal().add_(value)
    return damped


def _in_float64_if_needed(
    once: Callable[[Tensor], Tensor | None], matrix: Tensor, failure: str
) -> Tensor:
    """`once(matrix)`; if it fails (None), `once` of the float64 copy, returned in the
    matrix's precision; InversionError(`failure` ... failed in float64) when both fail."""
    result = once(matrix)
    if result is None and matrix.dtype != torch.float64:
        result = once(matrix.double())
        result = None if result is None else result.to(matrix.dtype)
    if result is None:
        raise InversionError(f"{failure} failed in float64")
    return result


def _finite_or_none(result: Tensor) -> Tensor | None:
    return result if bool(torch.isfinite(result).all()) else None


def _damped_cholesky_once(matrix: Tensor, damping: float) -> Tensor | None:
    factor, info = torch.linalg.cholesky_ex(_add_to_diagonal(matrix, damping))
    return _finite_or_none(factor) if int(info) == 0 else None


def _damped_inverse_once(matrix: Tensor, damping: float) -> Tensor | None:
    factor = _damped_cholesky_once(matrix, damping)
    return None if factor is None else _finite_or_none(torch.cholesky_inverse(factor))


def _inverse_root_once(matrix: Tensor, exponent: float, damping: float) -> Tensor | None:
    try:
        eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    except torch.linalg.LinAlgError:
        return None
    # The matrix is PSD in exact arithmetic: negative eigenvalues are round-off, so they are
    # treated as 0 before damping (otherwise lambda + damping could reach 0 or below).
    scale = (eigenvalues.clamp(min=0.0) + damping).pow(-exponent)
    return _finite_or_none((eigenvectors * scale) @ eigenvectors.mT)


def damped_cholesky(matrix: Tensor, damping: float) -> Tensor:
    """The lower Cholesky factor L of matrix + damping*I (L L^T), for a symmetric PSD `matrix`.

    Float64 retry when the factorisation breaks down or is not finite, the result in the
    input's precision; InversionError when both fail.
    """
    return _in_float64_if_needed(
        partial(_damped_cholesky_once, damping=damping),
        matrix,
        f"Cholesky of a {tuple(matrix.shape)} matrix + {damping}*I",
    )


def damped_inverse(matrix: Tensor, damping: float) -> Tensor:
    """(matrix + damping*I)^-1 for a symmetric PSD `matrix`, by Cholesky.

    Float64 retry when the Cholesky factorisation breaks down or the result is not finite;
    InversionError when both fail.
    """
    return _in_float64_if_needed(
        partial(_damped_inverse_once, damping=damping),
        matrix,
        f"Cholesky of a {tuple(matrix.shape)} matrix + {damping}*I",
    )


def inverse_root(matrix: Tensor, root: float, damping: float) -> Tensor:
    """(matrix + damping*I)^(-1/root) for a symmetric PSD `matrix`, by eigendecomposition.

    Eigenvalues below 0 (round-off) are raised to 0 first. Float64 retry when the
    eigensolver fails or the result is not finite; InversionError when both fail.
    """
    if damping <= 0:
        raise ValueError(f"inverse_root needs a positive damping, got {damping}")
    return _in_float64_if_needed(
        partial(_inverse_root_once, exponent=1.0 / root, damping=damping),
        matrix,
        f"eigendecomposition of a {tuple(matrix.shape)} matrix",
    )


# The authors' coupled Newton iteration (the TNT code's `coupled_newton`, utils.py l.89-220,
# from google-research's scalable_shampoo): at most 100 iterations, to max|M - I| <= 1e-6.
NEWTON_ITERATIONS = 100
NEWTON_TOLERANCE = 1e-6
NEWTON_ERROR_GROWTH = 1.2  # an iteration that grows the error more than this is rejected


def _coupled_newton_once(matrix: Tensor, root: int, damping: float) -> Tensor | None:
    """X ~ (matrix + damping*I)^(-1/root) by the coupled Newton iteration:
        z = (1 + p) / (2 ||G||_F),  M_0 = z G,  X_0 = z^(1/p) I,  alpha = -1/p,
        M_i = (1 - alpha) I + alpha M,  M <- M_i^p M,  X <- X M_i,
    while fewer than 100 iterations ran, max|M - I| > 1e-6 and the last iteration did not
    grow that error by more than 1.2x; a rejected last iteration returns the X before it.
    M -> I and X -> G^(-1/p) (Guo & Higham 2006); matrix products only, so it runs well on a
    GPU."""
    identity = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    damped = _add_to_diagonal(matrix, damping)
    z = (1.0 + root) / (2.0 * torch.linalg.matrix_norm(damped))
    m = damped * z
    x = identity * z.pow(1.0 / root)
    previous_x = x
    error = float((m - identity).abs().max())
    alpha = -1.0 / root
    for _ in range(NEWTON_ITERATIONS):
        if not error > NEWTON_TOLERANCE:
            break
        m_i = identity * (1.0 - alpha) + m * alpha
        new_m = torch.linalg.matrix_power(m_i, root) @ m
        new_x = x @ m_i
        new_error = float((new_m - identity).abs().max())
        previous_x, m, x = x, new_m, new_x
        if not new_error < error * NEWTON_ERROR_GROWTH:
            x = previous_x  # the authors keep the iterate before a rejected step
            break
        error = new_error
    return _finite_or_none(x)


def coupled_newton_inverse_root(matrix: Tensor, root: int, damping: float) -> Tensor:
    """(matrix + damping*I)^(-1/root) for a symmetric PSD `matrix` and an integer root, by the
    authors' coupled Newton iteration (_coupled_newton_once); float64 retry when the result is
    not finite, InversionError when both fail."""
    if damping <= 0:
        raise ValueError(f"coupled_newton_inverse_root needs a positive damping, got {damping}")
    if int(root) != root or root < 1:
        raise ValueError(f"coupled Newton needs a positive integer root, got {root}")
    return _in_float64_if_needed(
        partial(_coupled_newton_once, root=int(root), damping=damping),
        matrix,
        f"coupled Newton root of a {tuple(matrix.shape)} matrix",
    )


def damping_only(matrix: Tensor, damping: float, root: float = 1.0) -> Tensor:
    """(0 + damping*I)^(-1/root), shaped like `matrix`: the fallback when an inverse fails and
    there is no previous one (the statistic is treated as 0)."""
    identity = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    return identity * damping ** (-1.0 / root)


def keep_previous_on_failure(
    compute: Callable[[], Tensor], previous: Tensor | None, fallback: Callable[[], Tensor]
) -> tuple[Tensor, bool]:
    """`compute()`, or, if it raises InversionError, the previous result (or `fallback()`
    when there is none yet). Returns (result, failed) so that the caller counts failures."""
    try:
        return compute(), False
    except InversionError:
        return (fallback() if previous is None else previous), True

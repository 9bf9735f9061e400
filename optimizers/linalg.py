"""Damped inverses and inverse roots of symmetric positive semi-definite matrices.

Pure functions, shared by every curvature method. Numerical safety, as optimizers.md asks:

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

import torch
from torch import Tensor


class InversionError(RuntimeError):
    """A damped inverse or root failed in float64 too."""


def _add_to_diagonal(matrix: Tensor, value: float) -> Tensor:
    damped = matrix.clone()
    damped.diagonal().add_(value)
    return damped


def _damped_inverse_once(matrix: Tensor, damping: float) -> Tensor | None:
    factor, info = torch.linalg.cholesky_ex(_add_to_diagonal(matrix, damping))
    if int(info) != 0:
        return None
    inverse = torch.cholesky_inverse(factor)
    return inverse if bool(torch.isfinite(inverse).all()) else None


def damped_inverse(matrix: Tensor, damping: float) -> Tensor:
    """(matrix + damping*I)^-1 for a symmetric PSD `matrix`, by Cholesky.

    Float64 retry when the Cholesky factorisation breaks down or the result is not finite;
    InversionError when both fail.
    """
    inverse = _damped_inverse_once(matrix, damping)
    if inverse is None and matrix.dtype != torch.float64:
        inverse = _damped_inverse_once(matrix.double(), damping)
        inverse = None if inverse is None else inverse.to(matrix.dtype)
    if inverse is None:
        raise InversionError(
            f"Cholesky of a {tuple(matrix.shape)} matrix + {damping}*I failed in float64"
        )
    return inverse


def _inverse_root_once(matrix: Tensor, exponent: float, damping: float) -> Tensor | None:
    try:
        eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    except torch.linalg.LinAlgError:
        return None
    # The matrix is PSD in exact arithmetic: negative eigenvalues are round-off, so they are
    # treated as 0 before damping (otherwise lambda + damping could reach 0 or below).
    scale = (eigenvalues.clamp(min=0.0) + damping).pow(-exponent)
    root = (eigenvectors * scale) @ eigenvectors.mT
    return root if bool(torch.isfinite(root).all()) else None


def inverse_root(matrix: Tensor, root: float, damping: float) -> Tensor:
    """(matrix + damping*I)^(-1/root) for a symmetric PSD `matrix`, by eigendecomposition.

    Eigenvalues below 0 (round-off) are raised to 0 first. Float64 retry when the
    eigensolver fails or the result is not finite; InversionError when both fail.
    """
    if damping <= 0:
        raise ValueError(f"inverse_root needs a positive damping, got {damping}")
    result = _inverse_root_once(matrix, 1.0 / root, damping)
    if result is None and matrix.dtype != torch.float64:
        result = _inverse_root_once(matrix.double(), 1.0 / root, damping)
        result = None if result is None else result.to(matrix.dtype)
    if result is None:
        raise InversionError(
            f"eigendecomposition of a {tuple(matrix.shape)} matrix failed in float64"
        )
    return result


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

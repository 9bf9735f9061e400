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

The batched versions (`damped_inverses`, `damped_choleskys`, `inverse_roots`,
`coupled_newton_inverse_roots`) take every matrix of an optimizer's refresh at once: one
batched kernel per (shape, dtype, device[, root]) group instead of a few per layer, and one
host read (a GPU synchronisation) for the finiteness of the whole call instead of one or two
per matrix. Steps 2 and 3 run, one matrix at a time, only for the matrices that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

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


# ------------------------------------------------------------------------------- batched
# A network has many layers whose factors share a shape (and a dtype and device). Computing
# their inverses or roots one matrix at a time launches a few small kernels per layer and,
# through the finiteness checks above, reads a value on the host (a GPU synchronisation) per
# layer. The functions below stack each (shape, dtype, device[, root]) group and run ONE
# batched call per group (LAPACK/cuSOLVER batch their small matrices), and check finiteness
# (and Cholesky's info) of the whole call with ONE host read. Only when that check fails are
# the failed matrices read out and recomputed by the single-matrix functions above (float64
# retry, InversionError), so the failures keep the semantics of the unbatched path.

Outcome = Tensor | InversionError  # a result, or the error of its single-matrix fallback
Damping = float | Tensor  # a Python number, or a 0-dim tensor (computed on the device)


def outcome_value(outcome: Outcome) -> Tensor:
    """The result, or raise its InversionError: `partial(outcome_value, outcome)` is the
    `compute` of keep_previous_on_failure / CurvatureOptimizer._inverse_or_previous."""
    if isinstance(outcome, InversionError):
        raise outcome
    return outcome


def _groups(matrices: Sequence[Tensor], roots: Sequence[float] | None) -> dict[Any, list[int]]:
    """Indices of the matrices by (shape, dtype, device[, root]): the matrices one batched
    call can take."""
    groups: dict[Any, list[int]] = {}
    for index, matrix in enumerate(matrices):
        key = (tuple(matrix.shape), matrix.dtype, matrix.device)
        groups.setdefault(key + (() if roots is None else (roots[index],)), []).append(index)
    return groups


def _damping_vector(dampings: Sequence[Damping], like: Tensor) -> Tensor:
    """The dampings as a (B,) tensor in `like`'s dtype and device (a host-to-device copy,
    no read)."""
    if all(not isinstance(damping, Tensor) for damping in dampings):
        return torch.tensor(dampings, dtype=like.dtype, device=like.device)
    return torch.stack([torch.as_tensor(d, device=like.device) for d in dampings]).to(like.dtype)


def _add_to_diagonals_(stacked: Tensor, dampings: Tensor) -> Tensor:
    """stacked_i + damping_i*I in place: the stack is the call's own copy (_batched)."""
    stacked.diagonal(dim1=-2, dim2=-1).add_(dampings[:, None])
    return stacked


def _finite_per_matrix(stacked: Tensor) -> Tensor:
    """Whether each matrix is finite, (B,) bool, by the finiteness of its sum: one reading
    pass and no mask of the stack's size (a NaN or inf entry makes the sum NaN or inf). A
    finite matrix whose sum overflows is reported non-finite and so recomputed on its own
    (float64 retry, whose check is entry by entry): slower, never wrong."""
    return torch.isfinite(stacked.sum(dim=(-2, -1)))


GroupInput = tuple[Tensor, Tensor, float | None]  # (stacked, dampings, root) of a group
GroupCompute = Callable[[Tensor, Tensor, float | None], tuple[Tensor, Tensor]]
CallCompute = Callable[[list[GroupInput]], list[tuple[Tensor, Tensor]]]
SingleCompute = Callable[[Tensor, float, float | None], Tensor]


def _batched(
    matrices: Sequence[Tensor],
    dampings: Sequence[Damping],
    roots: Sequence[float] | None,
    compute: CallCompute,
    single: SingleCompute,
) -> list[Outcome]:
    """compute([(stacked, dampings, root) per group]) -> [(results (B, n, n), ok (B,) bool)
    per group]; one host read for the whole call; `single(matrix, damping, root)` for the
    failed ones."""
    groups = list(_groups(matrices, roots).items())
    stacks: list[GroupInput] = []
    for key, indices in groups:
        stacked = torch.stack([matrices[index] for index in indices])
        group_dampings = _damping_vector([dampings[index] for index in indices], stacked)
        stacks.append((stacked, group_dampings, None if roots is None else key[-1]))
    outcomes: list[Outcome | None] = [None] * len(matrices)
    order: list[int] = []
    flags: list[Tensor] = []
    for (_, indices), (results, ok) in zip(groups, compute(stacks), strict=True):
        for index, result in zip(indices, results.unbind(0), strict=True):
            outcomes[index] = result
        order += indices
        flags.append(ok)
    if order and not bool(torch.cat(flags).all()):  # the one read of the normal case
        for index, fine in zip(order, torch.cat(flags).tolist(), strict=True):
            if not fine:
                outcomes[index] = _single_outcome(
                    single, matrices[index], dampings[index], roots, index
                )
    return outcomes  # type: ignore[return-value]


def _each(compute_group: GroupCompute) -> CallCompute:
    """A per-group computation as a whole call's: the groups one after the other."""

    def compute(stacks: list[GroupInput]) -> list[tuple[Tensor, Tensor]]:
        return [compute_group(*stack) for stack in stacks]

    return compute


def _single_outcome(
    single: SingleCompute,
    matrix: Tensor,
    damping: Damping,
    roots: Sequence[float] | None,
    index: int,
) -> Outcome:
    try:
        return single(matrix, float(damping), None if roots is None else roots[index])
    except InversionError as error:
        return error


def _damped_factors(stacked: Tensor, dampings: Tensor) -> tuple[Tensor, Tensor]:
    """The Cholesky factors of stacked_i + damping_i*I and whether each did not break down."""
    factors, info = torch.linalg.cholesky_ex(_add_to_diagonals_(stacked, dampings))
    return factors, info == 0


def _cholesky_group(stacked: Tensor, dampings: Tensor, root: float | None) -> tuple[Tensor, Tensor]:
    factors, ok = _damped_factors(stacked, dampings)
    return factors, ok & _finite_per_matrix(factors)


def _inverse_group(stacked: Tensor, dampings: Tensor, root: float | None) -> tuple[Tensor, Tensor]:
    factors, ok = _damped_factors(stacked, dampings)
    # a broken-down factor gets a diagonal of ones before cholesky_inverse, which raises on
    # a zero diagonal (a host read): its matrix is recomputed on its own afterwards anyway.
    # A factor that did not break down has a positive diagonal; one that is not finite
    # makes its inverse non-finite, so checking the inverses checks both.
    diagonals = factors.diagonal(dim1=-2, dim2=-1)
    diagonals.copy_(torch.where(ok[:, None], diagonals, torch.ones_like(diagonals)))
    inverses = torch.cholesky_inverse(factors)
    return inverses, ok & _finite_per_matrix(inverses)


def _inverse_root_group(
    stacked: Tensor, dampings: Tensor, root: float | None
) -> tuple[Tensor, Tensor]:
    assert root is not None
    try:
        eigenvalues, eigenvectors = torch.linalg.eigh(stacked)
    except torch.linalg.LinAlgError:  # one matrix did not converge: each on its own
        return stacked, torch.zeros(stacked.shape[0], dtype=torch.bool, device=stacked.device)
    # negative eigenvalues are round-off (_inverse_root_once)
    scale = (eigenvalues.clamp(min=0.0) + dampings[:, None]).pow(-1.0 / root)
    roots = (eigenvectors * scale[:, None, :]) @ eigenvectors.mT
    return roots, _finite_per_matrix(roots)


@dataclass
class _NewtonBatch:
    """The coupled Newton iteration (_coupled_newton_once) on one group's (B, n, n) stack:
    every matrix runs the same steps and stops on its own (converged, rejected or out of
    iterations) through the mask `active`, keeping its own X."""

    p: int
    identity: Tensor
    m: Tensor
    x: Tensor
    error: Tensor  # max|M - I| per matrix, (B,)
    active: Tensor  # (B,) bool: still iterating

    @classmethod
    def start(cls, stacked: Tensor, dampings: Tensor, root: int) -> _NewtonBatch:
        identity = torch.eye(stacked.shape[-1], dtype=stacked.dtype, device=stacked.device)
        damped = _add_to_diagonals_(stacked, dampings)
        z = (1.0 + root) / (2.0 * torch.linalg.matrix_norm(damped))
        m = damped * z[:, None, None]
        x = identity * z.pow(1.0 / root)[:, None, None]
        error = _max_abs_deviation(m, identity)
        return cls(root, identity, m, x, error, error > NEWTON_TOLERANCE)

    def iterate(self) -> None:
        alpha = -1.0 / self.p
        m_i = self.identity * (1.0 - alpha) + self.m * alpha
        new_m = torch.linalg.matrix_power(m_i, self.p) @ self.m
        new_x = self.x @ m_i
        new_error = _max_abs_deviation(new_m, self.identity)
        # an active matrix whose error grew by 1.2x or more keeps the X before (rejected)
        accepted = self.active & (new_error < self.error * NEWTON_ERROR_GROWTH)
        self.x = torch.where(accepted[:, None, None], new_x, self.x)
        self.m = torch.where(accepted[:, None, None], new_m, self.m)
        self.error = torch.where(accepted, new_error, self.error)
        self.active = accepted & (new_error > NEWTON_TOLERANCE)


def _coupled_newton_groups(stacks: list[GroupInput]) -> list[tuple[Tensor, Tensor]]:
    """The groups' iterations in lockstep: one host read per iteration for all groups
    together (which still have an active matrix), not one per group or per matrix."""
    batches = [_NewtonBatch.start(stacked, d, int(root)) for stacked, d, root in stacks]  # type: ignore[arg-type]
    running = batches
    for _ in range(NEWTON_ITERATIONS):
        flags = torch.stack([batch.active.any() for batch in running]).tolist()
        running = [batch for batch, active in zip(running, flags, strict=True) if active]
        if not running:
            break
        for batch in running:
            batch.iterate()
    return [(batch.x, _finite_per_matrix(batch.x)) for batch in batches]


def _max_abs_deviation(stacked: Tensor, identity: Tensor) -> Tensor:
    """max|M - I| per matrix, (B,)."""
    return (stacked - identity).abs().flatten(1).amax(dim=1)


def damped_choleskys(matrices: Sequence[Tensor], dampings: Sequence[Damping]) -> list[Outcome]:
    """damped_cholesky of every matrix: L_i L_i^T = matrix_i + damping_i*I, one batched
    cholesky_ex per group and one host read for the call (section comment above)."""
    return _batched(
        matrices, dampings, None, _each(_cholesky_group), lambda m, d, _: damped_cholesky(m, d)
    )


def damped_inverses(matrices: Sequence[Tensor], dampings: Sequence[Damping]) -> list[Outcome]:
    """damped_inverse of every matrix: (matrix_i + damping_i*I)^-1 by Cholesky, one batched
    cholesky_ex and cholesky_inverse per group and one host read for the call."""
    return _batched(
        matrices, dampings, None, _each(_inverse_group), lambda m, d, _: damped_inverse(m, d)
    )


def inverse_roots(
    matrices: Sequence[Tensor], roots: Sequence[float], dampings: Sequence[float]
) -> list[Outcome]:
    """inverse_root of every matrix: (matrix_i + damping_i*I)^(-1/root_i), one batched eigh
    per (shape, dtype, device, root) group and one host read for the call."""
    _check_positive(dampings, "inverse_root")
    return _batched(
        matrices, dampings, roots, _each(_inverse_root_group), lambda m, d, r: inverse_root(m, r, d)
    )


def coupled_newton_inverse_roots(
    matrices: Sequence[Tensor], roots: Sequence[int], dampings: Sequence[float]
) -> list[Outcome]:
    """coupled_newton_inverse_root of every matrix: the iteration batched per (shape, dtype,
    device, root) group with per-matrix stopping (_NewtonBatch), the groups in lockstep
    (_coupled_newton_groups); equal per matrix to the unbatched iteration up to round-off.
    Host reads: one per iteration for all groups together (whether any matrix still
    iterates, so the most iterations any matrix needs, plus one), and one for the
    finiteness of the call."""
    _check_positive(dampings, "coupled_newton_inverse_root")
    for root in roots:
        if int(root) != root or root < 1:
            raise ValueError(f"coupled Newton needs a positive integer root, got {root}")

    def single(matrix: Tensor, damping: float, root: float | None) -> Tensor:
        return coupled_newton_inverse_root(matrix, int(root), damping)  # type: ignore[arg-type]

    return _batched(matrices, dampings, roots, _coupled_newton_groups, single)


def _check_positive(dampings: Sequence[float], name: str) -> None:
    for damping in dampings:
        if damping <= 0:
            raise ValueError(f"{name} needs a positive damping, got {damping}")

"""Quasi-Newton updates of an inverse-curvature approximation H, as pure functions (K-BFGS).

Goldfarb, Ren & Bahamou (2020), "Practical quasi-Newton methods for training deep neural
networks" (NeurIPS), sections 3 and 4; Nocedal & Wright, "Numerical Optimization" (2006),
sections 6.1 (BFGS), 7.2 (L-BFGS two-loop) and 18.3 (Powell's damping).

With a pair (s, y), y ~ B s for the curvature B that H approximates the inverse of:

    BFGS:   H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T,   rho = 1 / (s^T y)
            so that H y = s (the secant equation); H stays symmetric positive definite when
            it was and s^T y > 0.
    Powell damping on H (mu1 in (0, 1)): if s^T y < mu1 y^T H y,
            s <- theta s + (1 - theta) H y,  theta = (1 - mu1) y^T H y / (y^T H y - s^T y)
            so that s^T y = mu1 y^T H y afterwards.
    Levenberg-Marquardt damping, i.e. Powell's damping with B = I (mu2 > 0): if s^T y < mu2 s^T s,
            y <- theta y + (1 - theta) s,  theta = (1 - mu2) s^T s / (s^T s - s^T y)
            so that s^T y = mu2 s^T s > 0 afterwards.
    Double damping (the paper's Algorithm 4): Powell on H, then Levenberg-Marquardt.
    L-BFGS: H is not stored; H v over the latest pairs, from H0 = I, by the compact
            representation of the two-loop recursion (two matrix products, lbfgs_apply),
            equal to the dense BFGS matrix built from the same pairs in the same order.

Every function takes one vector per pair; lbfgs_apply also takes a matrix whose columns are
the vectors to multiply (a layer's gradient matrix, one column per input unit).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def powell_damping(s: Tensor, y: Tensor, h_y: Tensor, mu1: float) -> Tensor:
    """s after Powell's damping on H (h_y = H y): s^T y >= mu1 y^T H y afterwards.

    Branch-free (torch.where on the device): no host read for the test."""
    y_h_y = torch.dot(y, h_y)
    s_y = torch.dot(s, y)
    theta = (1.0 - mu1) * y_h_y / (y_h_y - s_y)  # not used (maybe 0/0) when undamped
    return torch.where(s_y >= mu1 * y_h_y, s, theta * s + (1.0 - theta) * h_y)


def levenberg_marquardt_damping(s: Tensor, y: Tensor, mu2: float) -> Tensor:
    """y after Powell's damping with B = I: s^T y >= mu2 s^T s afterwards.

    Branch-free (torch.where on the device): no host read for the test."""
    s_s = torch.dot(s, s)
    s_y = torch.dot(s, y)
    theta = (1.0 - mu2) * s_s / (s_s - s_y)  # not used (maybe 0/0) when undamped
    return torch.where(s_y >= mu2 * s_s, y, theta * y + (1.0 - theta) * s)


def double_damping(
    s: Tensor, y: Tensor, apply_h: Callable[[Tensor], Tensor], mu1: float, mu2: float
) -> tuple[Tensor, Tensor]:
    """(s, y) after Powell's damping on H (mu1), then Levenberg-Marquardt's (mu2)."""
    s = powell_damping(s, y, apply_h(y), mu1)
    return s, levenberg_marquardt_damping(s, y, mu2)


def curvature_threshold(s: Tensor, gradient: Tensor, ratio: float) -> Tensor | float:
    """ratio * (s^T s) * ||g||: the K-BFGS code's bound below which s^T y is too small for
    an update (kbfgs_utils.py, `get_BFGS_formula`), g the layer's current gradient-like
    vector (the mean output gradient for H_g, the mean activation for H_a).

    A 0-dim float64 tensor on the device (the float64 arithmetic of the host values it
    replaces, without their reads); 0.0 when ratio = 0."""
    if ratio == 0.0:
        return 0.0
    return ratio * torch.dot(s, s).double() * torch.linalg.vector_norm(gradient).double()


def curvature_accepted(s_y: Tensor, min_curvature: Tensor | float) -> Tensor:
    """s^T y > max(min_curvature, 0), as a 0-dim bool tensor (no host read)."""
    return (s_y > min_curvature) & (s_y > 0.0)


def bfgs_update(
    inverse: Tensor,
    s: Tensor,
    y: Tensor,
    min_curvature: Tensor | float = 0.0,
    in_place: bool = False,
) -> tuple[Tensor, Tensor]:
    """(H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T, skipped): the update, or H itself
    with skipped = True when s^T y <= 0, when s^T y <= min_curvature (curvature_threshold),
    or when the result would not be finite (the caller counts the skips). Branch-free: the
    choice is made on the device and `skipped` is a 0-dim bool tensor, so no host read.

    Expanded, for a symmetric H and u = H y, with c = rho^2 (s^T y + y^T u):
        H + c s s^T - rho (u s^T + s u^T) = H + w w^T - v v^T,
        w = sqrt(c) s - (rho / sqrt(c)) u,  v = (rho / sqrt(c)) u
    (c > 0 whenever H is positive definite and s^T y > 0; an update with c <= 0 is
    skipped), so the whole update is one product [w v] [w -v]^T added to H: two passes
    over the d x d matrix (u = H y and the sum) instead of one per outer product, and
    exactly symmetric whenever H is and the matrix product forms each entry's two terms
    alike (w_i w_j and v_i v_j commute). A skipped update adds zero vectors, so H is kept
    exactly. The result is finite when H is and max|w|^2 + max|v|^2 is below the dtype's
    largest value: that bound (in float64), not a pass over the result, is the test. The
    scalars are float64 (as the host values were). `in_place` adds the product into
    `inverse` itself (returned): the same arithmetic without a new d x d matrix, whose
    allocation and first writes cost more than the sum (K-BFGS's 16 updates of a step on the
    MNIST autoencoder: 4.9 ms out of place, 2.0 ms in place).
    """
    s_y_raw = torch.dot(s, y)
    s_y = s_y_raw.double()
    rho = 1.0 / s_y
    u = inverse @ y
    coefficient = rho * rho * (s_y + torch.dot(y, u).double())
    root = coefficient.clamp(min=0.0).sqrt()
    w = s * root.to(s.dtype) - u * (rho / root).to(s.dtype)
    v = u * (rho / root).to(s.dtype)
    size = w.abs().max().double() ** 2 + v.abs().max().double() ** 2
    accepted = (
        curvature_accepted(s_y_raw, min_curvature)
        & (coefficient > 0.0)
        & (size < torch.finfo(inverse.dtype).max / 2)  # False for NaN or inf too
    )
    w = torch.where(accepted, w, 0.0)
    v = torch.where(accepted, v, 0.0)
    left, right = torch.stack([w, v], dim=1), torch.stack([w, -v])
    updated = inverse.addmm_(left, right) if in_place else torch.addmm(inverse, left, right)
    return updated, ~accepted


def lbfgs_apply(vectors: Tensor, s_history: Tensor, y_history: Tensor) -> Tensor:
    """H v for every column v of `vectors` (d or d x k), H the L-BFGS matrix of the pairs
    (rows of s_history and y_history, oldest first) from H0 = I.

    By the compact representation (Byrd, Nocedal & Schnabel 1994, "Representations of
    quasi-Newton matrices and their use in limited memory methods", Theorem 2.2), with the p
    pairs as the columns of S and Y (d x p), R the upper triangle of S^T Y (R_ij = s_i^T y_j,
    i <= j) and D its diagonal:

        H = I + [S Y] [[R^-T (D + Y^T Y) R^-1, -R^-T], [-R^-1, 0]] [S Y]^T,
        H v = v + S t - Y q,   q = R^-1 S^T v,   t = R^-T ((D + Y^T Y) q - Y^T v).

    It is the two-loop recursion (Nocedal & Wright 2006, Algorithm 7.4) rearranged: the
    first loop's alphas are q, solved by the same back substitution R q = S^T v, and the
    same 4 p d multiply-adds per column. But the two-loop makes 4p passes over v, one per
    rank-one step, while here [S Y]^T v and [S Y] [t; -q] are two matrix products. When p is
    large against d (a narrow layer), H is formed instead (the compact form applied to I)
    and multiplied once, whichever needs fewer multiply-adds (_dense_is_cheaper)."""
    if s_history.shape[0] == 0:
        return vectors.clone()
    matrix = vectors.dim() == 2
    columns = vectors if matrix else vectors[:, None]
    size, count = s_history.shape[1], s_history.shape[0]
    if matrix and _dense_is_cheaper(size, columns.shape[1], count):
        identity = torch.eye(size, dtype=vectors.dtype, device=vectors.device)
        return _compact_apply(identity, s_history, y_history) @ vectors
    result = _compact_apply(columns, s_history, y_history)
    return result if matrix else result[:, 0]


def _compact_macs(size: int, columns: int, pairs: int) -> int:
    """The compact form on a size x columns matrix: [S Y]^T V and [S Y] [t; -q], 4 p d k."""
    return 4 * pairs * size * columns


def _formed_macs(size: int, columns: int, pairs: int) -> int:
    """H formed by the compact form on I (4 p d^2), then H V (d^2 k)."""
    return 4 * pairs * size * size + size * size * columns


def lbfgs_apply_macs(size: int, columns: int, pairs: int) -> float:
    """The multiply-adds of lbfgs_apply on a size x columns matrix with `pairs` pairs: the
    fewer of its two ways. The p x p systems (p^2 d for R and Y^T Y, p^2 k for the solves)
    are left out: small for p << d."""
    return float(min(_compact_macs(size, columns, pairs), _formed_macs(size, columns, pairs)))


def _dense_is_cheaper(size: int, columns: int, pairs: int) -> bool:
    """Whether forming H and one product takes fewer multiply-adds than the compact form."""
    return _formed_macs(size, columns, pairs) < _compact_macs(size, columns, pairs)


def _compact_apply(columns: Tensor, s_history: Tensor, y_history: Tensor) -> Tensor:
    """H V for a d x k matrix V by the compact representation (lbfgs_apply)."""
    count = s_history.shape[0]
    stacked = torch.cat([s_history, y_history])  # [S Y]^T, (2p, d)
    projections = stacked @ columns  # [S^T V; Y^T V], (2p, k)
    s_v, y_v = projections[:count], projections[count:]
    upper = torch.triu(s_history @ y_history.mT)  # R
    middle = y_history @ y_history.mT  # Y^T Y ...
    middle.diagonal().add_(upper.diagonal())  # ... + D
    q = torch.linalg.solve_triangular(upper, s_v, upper=True)
    t = torch.linalg.solve_triangular(upper.mT, middle @ q - y_v, upper=False)
    return torch.addmm(columns, stacked.mT, torch.cat([t, -q]))

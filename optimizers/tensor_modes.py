"""A parameter tensor as an order-k tensor with one preconditioner per mode (Shampoo, TNT).

Reshaping rules (docs/optimizers.md, "Shampoo"): vectors k = 1; linear weights (out, in),
k = 2; conv weights (out, in, kh, kw) as (out, in, kh*kw), k = 3, or as (out, in*kh*kw),
k = 2, with `conv_reshape: matrix`; scalars as vectors of length 1; other shapes as they are.

For a tensor G of shape (n_1, ..., n_k):
    unfolding(G, i)       the mode-i unfolding G_(i), shape (n_i, prod_{j != i} n_j)
    mode_product(G, P, i) G x_i P: (G x_i P)[.., j, ..] = sum_l P[j, l] G[.., l, ..]
    precondition(G, [P_1, ..., P_k]) = G x_1 P_1 x_2 ... x_k P_k (None: identity)
which equals the Kronecker product (P_1 (x) ... (x) P_k) applied to G flattened in row-major
(C) order.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from torch import Tensor

from optimizers.precision import MatmulPrecision, matmul


class ConvReshape(str, Enum):
    tensor = "tensor"  # (out, in, kh*kw), k = 3
    matrix = "matrix"  # (out, in*kh*kw), k = 2


def mode_shape(shape: Sequence[int], conv_reshape: ConvReshape) -> tuple[int, ...]:
    """The order-k shape a parameter of `shape` is preconditioned as."""
    if len(shape) == 0:
        return (1,)
    if len(shape) == 4:
        out, inputs, kh, kw = shape
        if conv_reshape == ConvReshape.matrix:
            return (out, inputs * kh * kw)
        return (out, inputs, kh * kw)
    return tuple(shape)


def unfolding(tensor: Tensor, mode: int) -> Tensor:
    """G_(i), shape (n_i, prod of the other dimensions); a view when that needs no copy."""
    return tensor.movedim(mode, 0).reshape(tensor.shape[mode], -1)


def mode_product(
    tensor: Tensor, matrix: Tensor, mode: int, precision: MatmulPrecision = MatmulPrecision.full
) -> Tensor:
    """tensor x_mode matrix (optimizers.precision for `precision`; vectors in full)."""
    if tensor.dim() == 1:
        return matrix @ tensor
    if tensor.dim() == 2:
        return (
            matmul(matrix, tensor, precision) if mode == 0 else matmul(tensor, matrix.mT, precision)
        )
    moved = tensor.movedim(mode, 0)
    product = matmul(matrix, moved.reshape(moved.shape[0], -1), precision)
    return product.reshape(matrix.shape[0], *moved.shape[1:]).movedim(0, mode)


def precondition(
    tensor: Tensor,
    matrices: Sequence[Tensor | None],
    precision: MatmulPrecision = MatmulPrecision.full,
) -> Tensor:
    """tensor x_1 P_1 x_2 ... x_k P_k, skipping the modes whose P is None (identity)."""
    for mode, matrix in enumerate(matrices):
        if matrix is not None:
            tensor = mode_product(tensor, matrix, mode, precision)
    return tensor

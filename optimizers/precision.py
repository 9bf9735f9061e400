"""Precision of the curvature methods' large matrix products (`matmul_precision`).

    full       every product in the parameters' own precision (float32 in training): the
               default, and what the reference tests check against dense computations
    bfloat16   the operands of the statistics' Gram matrices (KFAC's A and G, Shampoo's and
               TNT's mode statistics, K-BFGS's A) and of the preconditioning products
               (G^-1 M A^-1, m x_i P_i, H_g M H_a) are rounded to bfloat16 and the products
               run in bfloat16 with float32 accumulation (Intel AMX on recent Xeon CPUs,
               tensor cores on GPUs); each result is stored back in the parameters'
               precision. Running averages, inverses, roots, the BFGS updates and the
               update itself stay in full precision.

bfloat16 keeps float32's exponent range with an 8-bit mantissa, so each rounded operand and
product entry is off by at most 2^-8 of its size (~0.4%): the statistics stay Gram matrices
of (rounded) vectors, i.e. symmetric positive semi-definite up to the final rounding, and a
direction is off by a fraction of a percent of its terms, far below the noise of the
mini-batch gradient it preconditions. It is opt-in because it changes the arithmetic a paper
describes. TENGraD has no such option: its Woodbury direction (v - U z) / gamma is a small
difference of large terms where the Fisher is large against gamma, which bfloat16 rounding
would swamp.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor


class MatmulPrecision(str, Enum):
    full = "full"  # the parameters' precision
    bfloat16 = "bfloat16"


def matmul(a: Tensor, b: Tensor, precision: MatmulPrecision) -> Tensor:
    """a @ b, with bfloat16 operands when asked; the result in a's dtype."""
    if precision == MatmulPrecision.full:
        return a @ b
    return (a.to(torch.bfloat16) @ b.to(torch.bfloat16)).to(a.dtype)


def gram(rows: Tensor, precision: MatmulPrecision) -> Tensor:
    """rows^T rows for rows of shape (M, d), with bfloat16 operands when asked."""
    return matmul(rows.mT, rows, precision)

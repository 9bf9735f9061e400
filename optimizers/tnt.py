"""TNT: Tensor Normal Training.

Ren & Goldfarb (2021), "Tensor normal training for deep learning models" (NeurIPS).

Each parameter tensor is read as an order-k tensor of shape (d_1, ..., d_k)
(optimizers.tensor_modes: linear weights (out, in), biases k = 1, conv (out, in, kh*kw)).
With g_bar the mini-batch gradient at labels sampled from the model (one backward pass of the
sampled loss, reusing the forward pass) and D = prod_j d_j:

    H_hat_i = g_bar_(i) g_bar_(i)^T,  H_i <- rho*H_i + (1-rho)*H_hat_i       every T1 steps
    c = (tr(H_1) / D)^(1/k),  U_i = H_i / (c^(k-1) * prod_{j != i} d_j)   every T2 steps
    P_i = (U_i + eps*I)^-1                                                  (Cholesky)
    D = m x_1 P_1 x_2 ... x_k P_k,  W <- (1 - lr*wd)*W - lr*D

Every U_i then has mean eigenvalue c and tr(U_1 (x) ... (x) U_k) = tr(H_1): the Kronecker
product of the normalised factors carries the scale of the gradient's second moment once,
not k times. `fisher: empirical` uses the true-label gradient instead (TNT-EF). Schedule,
warm start, momentum and decay: optimizers.base; after a warm start, step 0 keeps the warm
start's statistics, as the authors' TNT does (the TNT code's utils_shampoo.py l.415-419).

Data parallel (optimizers.distributed): the statistic g_bar is a mean over the batch, so the
global batch's is the weighted mean of the ranks' sum_r (n_r / N) g_bar_r: the sampled-label
gradients of `torch.autograd.grad` are all-reduced so (one all-reduce of a gradient's size,
optimizers.base._statistic_gradients) before the mode Grams; with `fisher: empirical` the
statistic is `.grad`, which the closure has already reduced. Every rank then computes the
same H_i; the inverses are divided among the ranks by their cost d^3, computed on their
owners in one batched call and broadcast (sum_i d_i^2 numbers per refresh).

Note: the statistic is the gradient of the loss alone; a coupled `l2` term enters the
momentum, not the statistic (it is not part of the model's Fisher).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor

from optimizers.base import CurvatureOptimizer, Fisher, parse_choice
from optimizers.linalg import damped_inverses, damping_only
from optimizers.precision import MatmulPrecision
from optimizers.statistics import accumulate_gram_average
from optimizers.tensor_modes import ConvReshape, mode_shape, precondition, unfolding

FACTORS = "factors"  # H_1 .. H_k
PRECONDITIONERS = "preconditioners"  # P_1 .. P_k


def trace_normalised(factors: Sequence[Tensor]) -> list[Tensor]:
    """U_i = H_i / (c^(k-1) * prod_{j != i} d_j) with c = (tr(H_1) / prod_j d_j)^(1/k).

    c stays a 0-dim float64 tensor on the factors' device (the Python arithmetic it replaces
    was float64 too): no host read per parameter."""
    dims = [factor.shape[0] for factor in factors]
    order, size = len(dims), math.prod(dims)
    c = (factors[0].diagonal().sum().double() / size) ** (1.0 / order)
    normalised = []
    for factor, dim in zip(factors, dims, strict=True):
        divisor = c ** (order - 1) * (size // dim)
        # tr(H) = 0 means every H_i = 0 (they all have trace ||g||^2): U_i = H_i = 0
        positive = divisor > 0.0
        safe = torch.where(positive, divisor, torch.ones_like(divisor))
        normalised.append(torch.where(positive, factor / safe, factor))
    return normalised


class TNT(CurvatureOptimizer):
    """Tensor Normal Training (module docstring for the update rule).

    Args:
        params: the parameters to optimise, or param groups (torch.optim convention).
        lr: alpha. eps: the damping added to every normalised factor.
        momentum, momentum_dampening, weight_decay, l2: optimizers.base.
        curvature_every: T1, steps between statistics refreshes.
        inverse_every: T2, steps between inverse refreshes (every T1 while t < T2).
        statistics_decay: rho of the factors' running average (0.9 in the paper).
        conv_reshape: "tensor" (out, in, kh*kw) or "matrix" (out, in*kh*kw).
        fisher: "sampled" (TNT) or "empirical" (TNT-EF).
        warm_start: average the factors over the trainer's warm-start batches before step 0.
        matmul_precision: "full" or "bfloat16" operands for the statistics' Gram matrices and
            the preconditioning products (optimizers.precision).
    """

    # After a warm start, step 0 keeps the warm start's statistics, as the authors' TNT
    # (the TNT code's utils_shampoo.py l.415-419)
    refresh_statistics_after_warm_start = False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        eps: float = 0.1,
        momentum: float = 0.9,
        momentum_dampening: float = 0.0,
        weight_decay: float = 0.0,
        l2: float = 0.0,
        curvature_every: int = 1,
        inverse_every: int = 20,
        statistics_decay: float = 0.9,
        conv_reshape: str = "tensor",
        fisher: str = "sampled",
        warm_start: bool = True,
        matmul_precision: str = "full",
    ) -> None:
        if not eps > 0.0:
            raise ValueError(f"Invalid eps value: {eps}")
        self.matmul_precision = parse_choice(MatmulPrecision, "matmul_precision", matmul_precision)
        self.conv_reshape = parse_choice(ConvReshape, "conv_reshape", conv_reshape)
        self.fisher = parse_choice(Fisher, "fisher", fisher)
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            momentum_dampening=momentum_dampening,
            weight_decay=weight_decay,
            l2=l2,
            curvature_every=curvature_every,
            inverse_every=inverse_every,
            statistics_decay=statistics_decay,
            warm_start=warm_start,
            eps=eps,
        )

    def _statistics_step(self, closure: Callable[[], Tensor], decay: float) -> Tensor:
        loss, gradients = self._statistic_gradients(closure, self.fisher)
        for p, gradient in gradients:
            tensor = gradient.reshape(mode_shape(p.shape, self.conv_reshape))
            state = self.state[p]
            factors = state.get(FACTORS, [None] * tensor.dim())
            state[FACTORS] = [
                accumulate_gram_average(
                    factor, unfolding(tensor, mode).mT, decay, precision=self.matmul_precision
                )
                for mode, factor in enumerate(factors)
            ]
        return loss

    def _update_inverses(self) -> None:
        """All factors of all parameters in one batched call (optimizers.linalg: one kernel
        per factor shape and one host read, instead of a few kernels and reads per factor);
        data parallel, each rank's share in one call (module docstring)."""
        groups = self._group_of()
        states = self._states_with(FACTORS)
        normalised = {id(state): trace_normalised(state[FACTORS]) for _, state in states}
        matrices = [u for _, state in states for u in normalised[id(state)]]
        dampings = [groups[p]["eps"] for p, state in states for _ in state[FACTORS]]
        previous = [
            before
            for _, state in states
            for before in state.get(PRECONDITIONERS, [None] * len(state[FACTORS]))
        ]
        inverses = iter(
            self._inverses_or_previous(
                matrices,
                lambda indices: damped_inverses(
                    [matrices[i] for i in indices], [dampings[i] for i in indices]
                ),
                previous,
                [
                    partial(damping_only, matrix, damping)
                    for matrix, damping in zip(matrices, dampings, strict=True)
                ],
            )
        )
        for _, state in states:
            state[PRECONDITIONERS] = [next(inverses) for _ in state[FACTORS]]

    def _directions(
        self, momenta: dict[Tensor, Tensor], gradients: dict[Tensor, Tensor]
    ) -> dict[Tensor, Tensor]:
        directions = {}
        for p, state in self._states_with(PRECONDITIONERS):
            if p in momenta:
                tensor = momenta[p].reshape(mode_shape(p.shape, self.conv_reshape))
                preconditioned = precondition(tensor, state[PRECONDITIONERS], self.matmul_precision)
                directions[p] = preconditioned.reshape(p.shape)
        return directions

    def _states_with(self, key: str) -> list[tuple[Tensor, dict[str, Any]]]:
        return [
            (p, self.state[p])
            for group in self.param_groups
            for p in group["params"]
            if key in self.state.get(p, {})
        ]

"""Shampoo: preconditioned stochastic tensor optimization.

Gupta, Koren & Singer (2018), "Shampoo: Preconditioned stochastic tensor optimization" (ICML);
the variant of the TNT paper's comparison (Ren & Goldfarb 2021): running averages of the
statistics, momentum on the raw gradient.

Each parameter tensor is read as an order-k tensor (optimizers.tensor_modes: vectors k = 1,
linear weights k = 2, conv weights (out, in, kh*kw) k = 3 or (out, in*kh*kw) k = 2). With G the
true-label gradient (plus the coupled l2 term):

    H_i <- beta*H_i + (1-beta) * G_(i) G_(i)^T                every T1 steps
          (beta = 1: H_i <- H_i + G_(i) G_(i)^T, the original Shampoo's sum)
    P_i = (H_i + eps*I)^(-1/(2k))                             every T2 steps
    D = m x_1 P_1 x_2 ... x_k P_k,  W <- (1 - lr*wd)*W - lr*D

The roots: `root_method: eigh` (eigendecomposition, negative round-off eigenvalues raised to
0) or `coupled_newton`, the authors' iteration (optimizers.linalg: at most 100 matrix-product
iterations to a tolerance of 1e-6, eps added as a ridge; the TNT code uses it for Shampoo on
every problem, and it is the GPU-friendly one). The schedule: roots every T1 steps while
t < T2, then every T2 (`early_inverses: true`), or only when t % T2 == 0, from t = 0
(`early_inverses: false`: the TNT code's "-lessInverse" Shampoo on the autoencoders). After a
warm start, step 0 keeps the warm start's statistics (the TNT code's utils_shampoo.py
l.415-419).

A mode longer than `max_dim` is not preconditioned (P_i = I, no statistic kept); k still
counts it. Optional grafting takes the direction of D and the norm of another method's step,
per parameter tensor: D <- D * ||D_graft|| / ||D|| with D_graft = m (sgd) or
m / (sqrt(sum_t g_t^2) + grafting_eps) (adagrad, accumulated every step). Schedule, warm
start, momentum and decay: optimizers.base.

Data parallel (optimizers.distributed): the statistics are Grams of the gradient G itself,
and the closure leaves `.grad` the global batch's gradient on every rank (the weighted mean
sum_r (n_r / N) G_r, runners.closure), so every rank computes the same H_i with no
communication of its own. The roots are divided among the ranks, each factor to one owner
by its cost d^3 (optimizers.base._inverses_or_previous), computed there in one batched call
and broadcast: per root refresh, sum_i d_i^2 numbers over all preconditioned modes are
broadcast once, and the eigendecompositions (or Newton iterations) are divided by the
world size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum
from functools import partial
from typing import Any

import torch
from torch import Tensor

from optimizers.base import CurvatureOptimizer, call_closure, parse_choice
from optimizers.linalg import (
    coupled_newton_inverse_roots,
    damping_only,
    inverse_roots,
)
from optimizers.precision import MatmulPrecision
from optimizers.statistics import accumulate_gram
from optimizers.tensor_modes import ConvReshape, mode_shape, precondition, unfolding

FACTORS = "factors"  # H_1 .. H_k (None for a mode longer than max_dim)
PRECONDITIONERS = "preconditioners"  # P_1 .. P_k (None: identity)
GRAFTING_SUM = "grafting_sum_of_squares"  # Adagrad's sum_t g_t^2


class RootMethod(str, Enum):
    eigh = "eigh"  # eigendecomposition (optimizers.linalg.inverse_root)
    coupled_newton = "coupled_newton"  # the authors' iteration (coupled_newton_inverse_root)


class Grafting(str, Enum):
    none = "none"
    sgd = "sgd"  # the norm of the momentum step
    adagrad = "adagrad"  # the norm of Adagrad's step on the momentum


class Shampoo(CurvatureOptimizer):
    """Shampoo (module docstring for the update rule).

    Args:
        params: the parameters to optimise, or param groups (torch.optim convention).
        lr: alpha. eps: the damping added to every statistic before its root.
        momentum, momentum_dampening, weight_decay, l2: optimizers.base.
        curvature_every: T1, steps between statistics refreshes.
        inverse_every: T2, steps between root refreshes (every T1 while t < T2).
        statistics_decay: beta of the statistics' running average; 1 sums them instead.
        conv_reshape: "tensor" (out, in, kh*kw) or "matrix" (out, in*kh*kw).
        max_dim: modes longer than this are not preconditioned (the authors: no limit).
        root_method: "eigh" or "coupled_newton" (module docstring).
        early_inverses: roots every T1 steps while t < T2 (true), or only every T2 steps.
        grafting: "none", "sgd" or "adagrad". grafting_eps: Adagrad's epsilon.
        warm_start: average the statistics over the trainer's warm-start batches first.
        matmul_precision: "full" or "bfloat16" operands for the statistics' Gram matrices and
            the preconditioning products (optimizers.precision).
    """

    statistics_decay_may_be_one = True
    refresh_statistics_after_warm_start = False  # the authors' (module docstring)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 3e-4,
        eps: float = 3e-4,
        momentum: float = 0.9,
        momentum_dampening: float = 0.0,
        weight_decay: float = 0.0,
        l2: float = 0.0,
        curvature_every: int = 1,
        inverse_every: int = 20,
        statistics_decay: float = 0.9,
        conv_reshape: str = "tensor",
        max_dim: int = 2048,
        root_method: str = "eigh",
        early_inverses: bool = True,
        grafting: str = "none",
        grafting_eps: float = 1e-8,
        warm_start: bool = True,
        matmul_precision: str = "full",
    ) -> None:
        self.matmul_precision = parse_choice(MatmulPrecision, "matmul_precision", matmul_precision)
        if not eps > 0.0:
            raise ValueError(f"Invalid eps value: {eps}")
        if isinstance(max_dim, bool) or not isinstance(max_dim, int) or max_dim < 1:
            raise ValueError(f"Invalid max_dim value: {max_dim} (must be a positive integer)")
        if not grafting_eps > 0.0:
            raise ValueError(f"Invalid grafting_eps value: {grafting_eps}")
        self.conv_reshape = parse_choice(ConvReshape, "conv_reshape", conv_reshape)
        self.grafting = parse_choice(Grafting, "grafting", grafting)
        self.root_method = parse_choice(RootMethod, "root_method", root_method)
        self.max_dim = max_dim
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
            early_inverses=early_inverses,
            eps=eps,
            grafting_eps=grafting_eps,
        )

    def _statistics_step(self, closure: Callable[[], Tensor], decay: float) -> Tensor:
        loss = call_closure(closure)
        sums = self.statistics_decay == 1.0
        keep, add = (0.0, 1.0) if decay == 0.0 else (1.0, 1.0) if sums else (decay, 1.0 - decay)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                gradient = p.grad if group["l2"] == 0 else p.grad.add(p, alpha=group["l2"])
                tensor = gradient.reshape(mode_shape(p.shape, self.conv_reshape))
                state = self.state[p]
                factors = state.get(FACTORS, [None] * tensor.dim())
                state[FACTORS] = [
                    None
                    if tensor.shape[mode] > self.max_dim
                    else accumulate_gram(
                        factor, unfolding(tensor, mode).mT, keep, add, self.matmul_precision
                    )
                    for mode, factor in enumerate(factors)
                ]
        return loss

    def _update_inverses(self) -> None:
        """Every root of every parameter in one batched call (optimizers.linalg: one eigh,
        or one coupled Newton iteration, per (shape, root) group and one host read per call
        or per iteration, instead of per factor); data parallel, each rank's share in one
        call (module docstring)."""
        entries = []  # (state, mode, factor, root, eps) of every preconditioned mode
        states = []
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p, {})
                if FACTORS not in state:
                    continue
                states.append(state)
                factors = state[FACTORS]
                root = 2 * len(factors)
                entries += [
                    (state, mode, factor, root, group["eps"])
                    for mode, factor in enumerate(factors)
                    if factor is not None
                ]
        compute_roots = (
            coupled_newton_inverse_roots
            if self.root_method == RootMethod.coupled_newton
            else inverse_roots
        )
        factors = [factor for _, _, factor, _, _ in entries]
        roots = [root for _, _, _, root, _ in entries]
        epsilons = [eps for *_, eps in entries]
        results = self._inverses_or_previous(
            factors,
            lambda indices: compute_roots(
                [factors[i] for i in indices],
                [roots[i] for i in indices],
                [epsilons[i] for i in indices],
            ),
            [
                state.get(PRECONDITIONERS, [None] * len(state[FACTORS]))[mode]
                for state, mode, *_ in entries
            ],
            [partial(damping_only, factor, eps, root) for _, _, factor, root, eps in entries],
        )
        # None (identity) for the modes longer than max_dim
        updated = {id(state): [None] * len(state[FACTORS]) for state in states}
        for (state, mode, *_), result in zip(entries, results, strict=True):
            updated[id(state)][mode] = result
        for state in states:
            state[PRECONDITIONERS] = updated[id(state)]

    def _directions(
        self, momenta: dict[Tensor, Tensor], gradients: dict[Tensor, Tensor]
    ) -> dict[Tensor, Tensor]:
        directions = {}
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p, {})
                if p not in momenta or PRECONDITIONERS not in state:
                    continue
                momentum = momenta[p]
                tensor = momentum.reshape(mode_shape(p.shape, self.conv_reshape))
                direction = precondition(
                    tensor, state[PRECONDITIONERS], self.matmul_precision
                ).reshape(p.shape)
                if self.grafting != Grafting.none:
                    graft = self._grafted_step(state, momentum, gradients[p], group)
                    direction = _with_norm_of(direction, graft)
                directions[p] = direction
        return directions

    def _grafted_step(
        self, state: dict[str, Any], momentum: Tensor, gradient: Tensor, group: dict[str, Any]
    ) -> Tensor:
        if self.grafting == Grafting.sgd:
            return momentum
        if GRAFTING_SUM not in state:
            state[GRAFTING_SUM] = torch.zeros_like(gradient)
        state[GRAFTING_SUM].addcmul_(gradient, gradient)
        return momentum / (state[GRAFTING_SUM].sqrt() + group["grafting_eps"])


def _with_norm_of(direction: Tensor, graft: Tensor) -> Tensor:
    """direction * ||graft|| / ||direction|| (0 when the direction is 0)."""
    norm = direction.norm()
    scale = torch.where(norm > 0, graft.norm() / norm, torch.zeros_like(norm))
    return direction * scale

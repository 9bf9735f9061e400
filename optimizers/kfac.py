"""KFAC: Kronecker-factored approximate curvature.

Martens & Grosse (2015), "Optimizing neural networks with Kronecker-factored approximate
curvature"; convolutions as in KFC, Grosse & Martens (2016). The variant of the TNT paper's
comparison (Ren & Goldfarb 2021).

For a Linear or Conv2d layer with gradient matrix [dW | db] (d_out x (d_in+1)), from the
curvature capture (optimizers.curvature), with a_tilde = [a; 1] and g_n = N * dLoss/ds_n
from the sampled-label backward pass:

    A_hat = (1/N) sum_n sum_t a_tilde a_tilde^T          (T = 1 for Linear, conv positions)
    G_hat = (1/(N*T)) sum_n sum_t g g^T
    A <- rho*A + (1-rho)*A_hat,  G <- rho*G + (1-rho)*G_hat        every T1 steps
    pi = 1 (damping_split=equal) or sqrt((tr A / dim A) / (tr G / dim G)) (trace)
    A_inv = (A + pi*sqrt(lambda)*I)^-1,  G_inv = (G + sqrt(lambda)/pi*I)^-1   every T2 steps
    D = G_inv M A_inv,  M = momentum buffer as [m_W | m_b]
    optional KL clip: nu = min(1, sqrt(kl_clip / sum_layers(lr^2 * <D, g>))), D <- nu*D
    W <- (1 - lr*wd)*W - lr*D

Other parameters (BatchNorm, LayerNorm, embeddings, grouped convolutions) take the plain
momentum step D = m; their types are listed once in a warning when the optimizer is built.
Schedule, warm start, momentum and decay: optimizers.base.

Data parallel (optimizers.distributed): rank r records its slice of n_r examples, and
A_hat_r, G_hat_r are the formulas above over that slice (g_n is each example's own loss
gradient whatever the slice's size, optimizers.curvature.layers). The global batch's
estimates are the weighted means

    A_hat = sum_r (n_r / N) A_hat_r,   G_hat = sum_r (n_r / N) G_hat_r,   N = sum_r n_r,

one all-reduce of every layer's two estimates together, before the running average (so the
estimate is computed apart from the average here, where one process fuses it into the
average in place). The inverses are divided among the ranks, each factor to one owner by its
cost d^3 (the greedy assignment, optimizers.base._inverses_or_previous), computed on the
owner in one batched call and broadcast: every rank ends with the same A_inv, G_inv and
directions, computed from the same A and G. The gradient M is the global batch's (the
closure reduced it). Communication per statistics step: one all-reduce of
sum_layers (d_in+1)^2 + d_out^2 numbers; per inverse refresh: the same numbers broadcast
once from their owners.

Note: the KL clip sums over the preconditioned layers only and scales only their directions;
when the sum is not positive (possible with momentum) no clipping is applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from enum import Enum
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from optimizers.base import (
    CurvatureOptimizer,
    Fisher,
    parse_choice,
)
from optimizers.curvature import CapturedLayer, CurvatureCapture, layer_directions
from optimizers.distributed import is_distributed, weighted_mean_
from optimizers.linalg import damped_inverses, damping_only
from optimizers.precision import MatmulPrecision, matmul
from optimizers.statistics import accumulate_gram_average, update_average

ACTIVATION_FACTOR = "activation_factor"  # A
GRADIENT_FACTOR = "gradient_factor"  # G
ACTIVATION_INVERSE = "activation_factor_inverse"
GRADIENT_INVERSE = "gradient_factor_inverse"


class DampingSplit(str, Enum):
    """How lambda is split over the two factors: pi*sqrt(lambda) on A, sqrt(lambda)/pi on G."""

    equal = "equal"  # pi = 1 (the TNT paper's choice)
    trace = "trace"  # pi = sqrt((tr A / dim A) / (tr G / dim G)) (Martens & Grosse, sec. 6.3)


def damping_split(
    activation_factor: Tensor, gradient_factor: Tensor, split: DampingSplit
) -> float | Tensor:
    """pi of the damping split: 1.0, or for `trace` a 0-dim float64 tensor computed on the
    factors' device (no host read per layer), 1 when a mean is not positive."""
    if split == DampingSplit.equal:
        return 1.0
    # float64, as the Python arithmetic on the means was before
    a_mean = activation_factor.diagonal().mean().double()
    g_mean = gradient_factor.diagonal().mean().double()
    positive = (a_mean > 0.0) & (g_mean > 0.0)
    return torch.where(positive, (a_mean / g_mean).sqrt(), torch.ones_like(a_mean))


def kfac_direction(
    momentum_matrix: Tensor,
    activation_inverse: Tensor,
    gradient_inverse: Tensor,
    precision: MatmulPrecision = MatmulPrecision.full,
) -> Tensor:
    """D = G_inv M A_inv."""
    return matmul(
        matmul(gradient_inverse, momentum_matrix, precision), activation_inverse, precision
    )


def kl_clip_factor(kl_clip: float, lr_squared_inner: float | Tensor) -> float | Tensor:
    """nu = min(1, sqrt(kl_clip / sum(lr^2 * <D, g>))); 1 when the sum is not positive. For
    a tensor sum, a 0-dim tensor computed on its device (no host read)."""
    if not isinstance(lr_squared_inner, Tensor):
        if lr_squared_inner <= 0.0:
            return 1.0
        return min(1.0, math.sqrt(kl_clip / lr_squared_inner))
    positive = lr_squared_inner > 0.0
    ratio = kl_clip / torch.where(positive, lr_squared_inner, torch.ones_like(lr_squared_inner))
    return torch.where(positive, ratio.sqrt().clamp(max=1.0), torch.ones_like(ratio))


class KFAC(CurvatureOptimizer):
    """KFAC for Linear and Conv2d layers (module docstring for the update rule).

    Args:
        params: the parameters to optimise, or param groups (torch.optim convention).
        model: the network; its Linear and Conv2d layers are hooked for the statistics.
        lr: alpha. damping: lambda, split over the factors by `damping_split`.
        momentum, momentum_dampening, weight_decay, l2: optimizers.base.
        curvature_every: T1, steps between statistics refreshes.
        inverse_every: T2, steps between inverse refreshes (every T1 while t < T2).
        statistics_decay: rho of the factors' running average.
        damping_split: "equal" (pi = 1) or "trace".
        kl_clip: optional KL-clipping bound (null: off).
        fisher: "sampled" (labels from the model) or "empirical" (training labels).
        warm_start: average the factors over the trainer's warm-start batches before step 0.
        matmul_precision: "full" or "bfloat16" operands for the statistics' Gram matrices and
            the preconditioning products (optimizers.precision).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        model: nn.Module,
        lr: float = 3e-3,
        damping: float = 0.3,
        momentum: float = 0.9,
        momentum_dampening: float = 0.0,
        weight_decay: float = 0.0,
        l2: float = 0.0,
        curvature_every: int = 1,
        inverse_every: int = 20,
        statistics_decay: float = 0.9,
        damping_split: str = "equal",
        kl_clip: float | None = None,
        fisher: str = "sampled",
        warm_start: bool = True,
        matmul_precision: str = "full",
    ) -> None:
        if not damping > 0.0:
            raise ValueError(f"Invalid damping value: {damping}")
        self.matmul_precision = parse_choice(MatmulPrecision, "matmul_precision", matmul_precision)
        if kl_clip is not None and not kl_clip > 0.0:
            raise ValueError(f"Invalid kl_clip value: {kl_clip} (must be positive, or null)")
        self.damping_split = parse_choice(DampingSplit, "damping_split", damping_split)
        self.fisher = parse_choice(Fisher, "fisher", fisher)
        self.kl_clip = kl_clip
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
            damping=damping,
        )
        trained = [p for group in self.param_groups for p in group["params"]]
        self.capture = CurvatureCapture(model, trained)
        self.capture.warn_unsupported("KFAC")

    @property
    def layers(self) -> list[CapturedLayer]:
        return self.capture.layers

    def _statistics_step(self, closure: Callable[[], Tensor], decay: float) -> Tensor:
        loss = self.capture.record_step(closure, self.fisher == Fisher.sampled, "KFAC")
        if is_distributed():
            self._global_statistics(decay)
            self.capture.clear()
            return loss
        for layer in self.layers:
            state = self.state[layer.weight]
            # a without its column of ones and dLoss/ds without the factor N: the Grams add
            # the ones and take N^2 into their scale, so neither record is copied
            a = layer.activations(ones_column=False)
            gradient = layer.output_gradients(scaled=False)
            batch, positions = a.shape[:2]
            state[ACTIVATION_FACTOR] = accumulate_gram_average(
                state.get(ACTIVATION_FACTOR),
                a.reshape(-1, a.shape[-1]),
                decay,
                1.0 / batch,
                self.matmul_precision,
                ones_column=layer.has_bias,
            )
            # G_hat = (1/(N T)) sum g g^T with g = N dLoss/ds: (N / T) sum dLoss/ds dLoss/ds^T
            state[GRADIENT_FACTOR] = accumulate_gram_average(
                state.get(GRADIENT_FACTOR),
                gradient.reshape(-1, gradient.shape[-1]),
                decay,
                batch / positions,
                self.matmul_precision,
            )
        self.capture.clear()
        return loss

    def _global_statistics(self, decay: float) -> None:
        """Data parallel: every layer's A_hat_r and G_hat_r from this rank's slice, their
        weighted means over the ranks (one all-reduce), then the running averages."""
        estimates = []
        for layer in self.layers:
            a = layer.activations(ones_column=False)
            gradient = layer.output_gradients(scaled=False)
            batch, positions = a.shape[:2]
            a_hat = accumulate_gram_average(
                None,
                a.reshape(-1, a.shape[-1]),
                0.0,
                1.0 / batch,
                self.matmul_precision,
                ones_column=layer.has_bias,
            )
            g_hat = accumulate_gram_average(
                None,
                gradient.reshape(-1, gradient.shape[-1]),
                0.0,
                batch / positions,
                self.matmul_precision,
            )
            estimates.append((layer, a_hat, g_hat))
        weighted_mean_(
            [t for _, a_hat, g_hat in estimates for t in (a_hat, g_hat)],
            self.layers[0].batch_size if self.layers else 0,
        )
        for layer, a_hat, g_hat in estimates:
            state = self.state[layer.weight]
            for key, estimate in ((ACTIVATION_FACTOR, a_hat), (GRADIENT_FACTOR, g_hat)):
                average = state.get(key)
                state[key] = (
                    estimate if average is None else update_average(average, estimate, decay)
                )

    def _update_inverses(self) -> None:
        """Every layer's A and G inverses in one batched call (optimizers.linalg: one kernel
        per factor shape and one host read, instead of a few kernels and reads per layer);
        data parallel, each rank's share in one call (module docstring)."""
        groups = self._group_of()
        factors, dampings, targets = [], [], []
        for layer in self.layers:
            state = self.state[layer.weight]
            a_factor, g_factor = state[ACTIVATION_FACTOR], state[GRADIENT_FACTOR]
            root_damping = math.sqrt(groups[layer.weight]["damping"])
            pi = damping_split(a_factor, g_factor, self.damping_split)
            for factor, inverse_key, damping in (
                (a_factor, ACTIVATION_INVERSE, pi * root_damping),
                (g_factor, GRADIENT_INVERSE, root_damping / pi),
            ):
                factors.append(factor)
                dampings.append(damping)
                targets.append((state, inverse_key))
        inverses = self._inverses_or_previous(
            factors,
            lambda indices: damped_inverses(
                [factors[i] for i in indices], [dampings[i] for i in indices]
            ),
            [state.get(key) for state, key in targets],
            [
                partial(damping_only, factor, damping)
                for factor, damping in zip(factors, dampings, strict=True)
            ],
        )
        for (state, key), inverse in zip(targets, inverses, strict=True):
            state[key] = inverse

    def _directions(
        self, momenta: dict[Tensor, Tensor], gradients: dict[Tensor, Tensor]
    ) -> dict[Tensor, Tensor]:
        def direction(layer: CapturedLayer, momentum: Tensor) -> Tensor:
            state = self.state[layer.weight]
            inverses = state[ACTIVATION_INVERSE], state[GRADIENT_INVERSE]
            return kfac_direction(momentum, *inverses, self.matmul_precision)

        directions = layer_directions(self.layers, momenta, direction)
        if self.kl_clip is not None:
            self._clip(directions, gradients)
        return directions

    def _clip(self, directions: dict[Tensor, Tensor], gradients: dict[Tensor, Tensor]) -> None:
        """D <- nu*D with nu computed on the device: no host read (D*1 = D when unclipped)."""
        if not directions:
            return
        groups = self._group_of()
        inner = torch.stack(
            [
                groups[p]["lr"] ** 2 * torch.dot(d.flatten(), gradients[p].flatten()).double()
                for p, d in directions.items()
            ]
        ).sum()
        assert self.kl_clip is not None
        nu = kl_clip_factor(self.kl_clip, inner)
        for p in directions:
            directions[p] = directions[p] * nu

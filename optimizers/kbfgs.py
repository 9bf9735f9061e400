"""K-BFGS and K-BFGS(L): Kronecker-factored quasi-Newton updates.

Goldfarb, Ren & Bahamou (2020), "Practical quasi-Newton methods for training deep neural
networks" (NeurIPS). Each Linear layer s = W a + b, with homogeneous a_tilde = [a; 1] and
gradient matrix [dW | db] (d_out x (d_in+1)), has its block Hessian approximated by A (x) G,
with running inverses H_a ~ A^-1 and H_g ~ G^-1. With t the step, T1 = curvature_every and
T2 = inverse_every (optimizers.base's schedule), lambda = damping:

    g <- g + l2*W,  m <- mu*m + (1 - dampening)*g               every step (optimizers.base)
    A <- rho*A + (1-rho) * (1/N) sum_n a_tilde_n a_tilde_n^T     every T1 steps
    A_lm = A + sqrt(lambda)*I
    H_a = A_lm^-1 (Cholesky) at the first refresh; afterwards the Hessian-action BFGS
        update with s_a = H_a a_bar, y_a = A_lm s_a  (a_bar = mean_n a_tilde_n)     on refresh
    D = H_g M H_a  (M the momentum buffer as [m_W | m_b]),  W <- (1 - lr*wd)*W - lr*D
    on refresh steps, after the update, a second forward/backward pass on the SAME mini-batch
    at the new weights (the step's closure called again, true labels):
        s_g = mean_n s_n(new) - mean_n s_n(old),  y_g = mean_n g_n(new) - mean_n g_n(old)
        with s the layer's pre-activations and g_n = N * dLoss/ds_n;
        (s_g, y_g) <- running average of the pairs (pair_decay),
        double damping: Powell on H_g (mu1 = powell_mu1), then Levenberg-Marquardt
            (mu2 = sqrt(lambda))  (optimizers.quasi_newton),
        H_g <- BFGS(H_g, s_g, y_g) from H_g = I                     (inverse: bfgs, K-BFGS)
        or the pair joins the last `history` pairs, and H_g v is the L-BFGS two-loop from
        H0 = I                                                    (inverse: lbfgs, K-BFGS(L))
    An update with s^T y <= 0 or a non-finite result is skipped and counted
    (`skipped_updates`).

Refresh steps are those of the project's shared schedule: every T1 steps while t < T2, every
T2 steps afterwards (the reference code updates H_a and H_g every 20 steps,
`Kron_BFGS_A_inv_freq`). Layers other than Linear (Conv2d, BatchNorm, ...) take the plain
momentum step D = m, listed once in a warning when the optimizer is built.

Note: the running averages (A's and the pairs') start at their first estimate, not at 0 as
in the reference code's pair average; BFGS and both dampings are invariant to scaling a pair,
so only the weighting of later pairs differs slightly. The second pass runs in training mode
and leaves the model's buffers (BatchNorm running statistics) and `.grad` (the step's
gradient) as they were before it.
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
    SCHEDULE,
    CurvatureOptimizer,
    NonFiniteLoss,
    check_fraction,
    parse_choice,
)
from optimizers.curvature import CapturedLayer, CurvatureCapture, LayerKind, layer_directions
from optimizers.linalg import damped_inverse, damping_only
from optimizers.phases import phase
from optimizers.precision import MatmulPrecision, matmul
from optimizers.quasi_newton import bfgs_update, double_damping, lbfgs_apply
from optimizers.statistics import accumulate_gram_average

ACTIVATION_FACTOR = "activation_factor"  # A
ACTIVATION_INVERSE = "activation_inverse"  # H_a
GRADIENT_INVERSE = "gradient_inverse"  # H_g (inverse: bfgs)
PAIRS_S = "pairs_s"  # the last `history` damped s_g, oldest first (inverse: lbfgs)
PAIRS_Y = "pairs_y"
PAIR_S = "pair_s_average"  # running averages of the raw pairs
PAIR_Y = "pair_y_average"
MEAN_ACTIVATION = "mean_activation"  # a_bar of the latest statistics step
MEAN_PRE_ACTIVATION = "mean_pre_activation"  # mean_n s_n, before the update
MEAN_OUTPUT_GRADIENT = "mean_output_gradient"  # mean_n g_n, before the update


class GradientInverse(str, Enum):
    """How H_g ~ G^-1 is kept."""

    bfgs = "bfgs"  # a dense d_out x d_out matrix, updated by BFGS (K-BFGS)
    lbfgs = "lbfgs"  # the last `history` pairs and the two-loop recursion (K-BFGS(L))


class KBFGS(CurvatureOptimizer):
    """K-BFGS (inverse="bfgs") and K-BFGS(L) (inverse="lbfgs") for Linear layers (module
    docstring for the update rule).

    Args:
        params: the parameters to optimise, or param groups (torch.optim convention).
        model: the network; its Linear layers are hooked for the statistics and the pairs.
        lr: alpha. damping: lambda (sqrt(lambda) damps A and is the Levenberg-Marquardt mu2).
        momentum, momentum_dampening, weight_decay, l2: optimizers.base (the paper: momentum
            0.9 with dampening 0.9, i.e. m <- 0.9 m + 0.1 g, and l2 = 1e-5).
        curvature_every: T1, steps between refreshes of A.
        inverse_every: T2, steps between refreshes of H_a and H_g (every T1 while t < T2); a
            multiple of curvature_every, so that every refresh has this step's activations.
        statistics_decay: rho of A's running average.
        pair_decay: the running average of the (s_g, y_g) pairs.
        powell_mu1: mu1 of Powell's damping on H_g, in (0, 1).
        inverse: "bfgs" (K-BFGS) or "lbfgs" (K-BFGS(L)).
        history: the number of pairs K-BFGS(L) keeps (0 keeps H_g = I).
        warm_start: average A over the trainer's warm-start batches before step 0.
        matmul_precision: "full" or "bfloat16" operands for A's Gram matrix and the products
            H_g M H_a (optimizers.precision); the BFGS updates stay in full precision.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        model: nn.Module,
        lr: float = 0.3,
        damping: float = 0.3,
        momentum: float = 0.9,
        momentum_dampening: float = 0.9,
        weight_decay: float = 0.0,
        l2: float = 1e-5,
        curvature_every: int = 1,
        inverse_every: int = 20,
        statistics_decay: float = 0.9,
        pair_decay: float = 0.9,
        powell_mu1: float = 0.2,
        inverse: str = "bfgs",
        history: int = 100,
        warm_start: bool = True,
        matmul_precision: str = "full",
    ) -> None:
        if not damping > 0.0:
            raise ValueError(f"Invalid damping value: {damping}")
        self.matmul_precision = parse_choice(MatmulPrecision, "matmul_precision", matmul_precision)
        check_fraction("pair_decay", pair_decay)
        if not 0.0 < powell_mu1 < 1.0:
            raise ValueError(f"Invalid powell_mu1 value: {powell_mu1} (must be in (0, 1))")
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"Invalid history value: {history} (must be a non-negative integer)")
        self.inverse = parse_choice(GradientInverse, "inverse", inverse)
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
        if inverse_every % curvature_every != 0:
            raise ValueError(
                f"Invalid inverse_every value: {inverse_every} (must be a multiple of "
                f"curvature_every={curvature_every})"
            )
        self.pair_decay = pair_decay
        self.powell_mu1 = powell_mu1
        self.history = history
        self.model = model
        self.state[SCHEDULE]["skipped_updates"] = 0
        trained = [p for group in self.param_groups for p in group["params"]]
        self.capture = CurvatureCapture(
            model, trained, keep_outputs=True, kinds=(LayerKind.linear,)
        )
        self.capture.warn_unsupported("K-BFGS")

    @property
    def layers(self) -> list[CapturedLayer]:
        return self.capture.layers

    @property
    def skipped_updates(self) -> int:
        """BFGS updates of H_a or H_g skipped (s^T y <= 0 or a non-finite result)."""
        return int(self.state[SCHEDULE]["skipped_updates"])

    # ------------------------------------------------------------------ the three phases
    def _statistics_step(self, closure: Callable[[], Tensor], decay: float) -> Tensor:
        loss = self.capture.record_step(closure, sampled=False, method="K-BFGS")
        for layer in self.layers:
            state = self.state[layer.weight]
            a = layer.activations().flatten(0, 1)
            state[ACTIVATION_FACTOR] = accumulate_gram_average(
                state.get(ACTIVATION_FACTOR),
                a,
                decay,
                1.0 / layer.batch_size,
                self.matmul_precision,
            )
            state[MEAN_ACTIVATION] = a.mean(dim=0)
            state[MEAN_PRE_ACTIVATION], state[MEAN_OUTPUT_GRADIENT] = _layer_means(layer)
        self.capture.clear()
        return loss

    def _update_inverses(self) -> None:
        groups = self._group_of()
        for layer in self.layers:
            state = self.state[layer.weight]
            factor = state[ACTIVATION_FACTOR]
            root_damping = math.sqrt(groups[layer.weight]["damping"])
            inverse = state.get(ACTIVATION_INVERSE)
            if inverse is None:  # the first refresh: H_a = A_lm^-1
                inverse = self._inverse_or_previous(
                    partial(damped_inverse, factor, root_damping),
                    None,
                    partial(damping_only, factor, root_damping),
                )
                state[ACTIVATION_INVERSE] = (inverse + inverse.mT) / 2
                continue
            s = inverse @ state[MEAN_ACTIVATION]
            y = factor @ s + root_damping * s  # A_lm s
            self._bfgs_or_skip(state, ACTIVATION_INVERSE, s, y)

    def _directions(
        self, momenta: dict[Tensor, Tensor], gradients: dict[Tensor, Tensor]
    ) -> dict[Tensor, Tensor]:
        def direction(layer: CapturedLayer, momentum: Tensor) -> Tensor:
            state = self.state[layer.weight]
            right = matmul(momentum, state[ACTIVATION_INVERSE], self.matmul_precision)
            return self._apply_gradient_inverse(state, right, self.matmul_precision)

        return layer_directions(self.layers, momenta, direction)

    def _after_update(self, closure: Callable[[], Tensor], refreshed: bool) -> None:
        """On refresh steps: the second pass at the new weights, and H_g's update."""
        if not refreshed:
            return
        buffers = [buffer.clone() for buffer in self.model.buffers()]
        params = [p for group in self.param_groups for p in group["params"]]
        gradients = [None if p.grad is None else p.grad.clone() for p in params]
        try:
            with phase("statistics"):
                self.capture.record_step(closure, sampled=False, method="K-BFGS")
                new_means = {layer.weight: _layer_means(layer) for layer in self.layers}
        except NonFiniteLoss:  # the step diverged: no pair; the next step reports it
            self.state[SCHEDULE]["skipped_updates"] += len(self.layers)
            return
        finally:
            self.capture.clear()
            with torch.no_grad():
                for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
                    buffer.copy_(saved)
            for p, gradient in zip(params, gradients, strict=True):
                p.grad = gradient
        groups = self._group_of()
        with torch.no_grad(), phase("inversion"):
            for layer in self.layers:
                state = self.state[layer.weight]
                pre_activation, output_gradient = new_means[layer.weight]
                s = self._pair_average(state, PAIR_S, pre_activation - state[MEAN_PRE_ACTIVATION])
                y = self._pair_average(state, PAIR_Y, output_gradient - state[MEAN_OUTPUT_GRADIENT])
                s, y = double_damping(
                    s,
                    y,
                    partial(self._apply_gradient_inverse, state),
                    mu1=self.powell_mu1,
                    mu2=math.sqrt(groups[layer.weight]["damping"]),
                )
                if self.inverse == GradientInverse.bfgs:
                    state.setdefault(GRADIENT_INVERSE, _identity_like(s))
                    self._bfgs_or_skip(state, GRADIENT_INVERSE, s, y)
                else:
                    self._remember_pair(state, s, y)

    # ------------------------------------------------------------------ helpers
    def _apply_gradient_inverse(
        self,
        state: dict[str, Any],
        vectors: Tensor,
        precision: MatmulPrecision = MatmulPrecision.full,
    ) -> Tensor:
        """H_g v for a vector, or for every column of a matrix (d_out rows); `precision` for
        the dense H_g's product with a matrix."""
        if self.inverse == GradientInverse.bfgs:
            inverse = state.get(GRADIENT_INVERSE)
            if inverse is None:
                return vectors
            return matmul(inverse, vectors, precision) if vectors.dim() == 2 else inverse @ vectors
        if PAIRS_S not in state:
            return vectors
        return lbfgs_apply(vectors, state[PAIRS_S], state[PAIRS_Y])

    def _bfgs_or_skip(self, state: dict[str, Any], key: str, s: Tensor, y: Tensor) -> None:
        updated = bfgs_update(state[key], s, y)
        if updated is None:
            self.state[SCHEDULE]["skipped_updates"] += 1
        else:
            state[key] = updated

    def _remember_pair(self, state: dict[str, Any], s: Tensor, y: Tensor) -> None:
        if not float(torch.dot(s, y)) > 0.0 or not bool(torch.isfinite(s).all()):
            self.state[SCHEDULE]["skipped_updates"] += 1
            return
        if self.history == 0:
            return
        if PAIRS_S in state:
            state[PAIRS_S] = torch.cat([state[PAIRS_S], s[None]])[-self.history :]
            state[PAIRS_Y] = torch.cat([state[PAIRS_Y], y[None]])[-self.history :]
        else:
            state[PAIRS_S], state[PAIRS_Y] = s[None].clone(), y[None].clone()

    def _pair_average(self, state: dict[str, Any], key: str, estimate: Tensor) -> Tensor:
        """The running average of a pair's half, started at its first estimate; a copy, so
        that damping never changes the average."""
        average = state.get(key)
        if average is None:
            state[key] = estimate.clone()
        else:
            average.mul_(self.pair_decay).add_(estimate, alpha=1.0 - self.pair_decay)
        return state[key].clone()


def _layer_means(layer: CapturedLayer) -> tuple[Tensor, Tensor]:
    """(mean_n s_n, mean_n g_n) of a recorded step, with g_n = N * dLoss/ds_n."""
    return (
        layer.pre_activations().flatten(0, 1).mean(dim=0),
        layer.output_gradients().flatten(0, 1).mean(dim=0),
    )


def _identity_like(vector: Tensor) -> Tensor:
    return torch.eye(vector.shape[0], dtype=vector.dtype, device=vector.device)

"""TENGraD: natural gradient with the damped Fisher block of each layer over the batch, exact
for Linear layers and, with `conv_gradients: exact`, for convolutions (the default `averaged`
approximates a convolution's per-example gradients: the Note below).

Soori, Can, Mu & Dehnavi (2021), "TENGraD: Time-efficient natural gradient descent with exact
Fisher-block inversion".

For a Linear or Conv2d layer with gradient matrix [dW | db] (d_out x (d_in+1)), from the
curvature capture (optimizers.curvature), with a_tilde_n = [a_n; 1] and g_n = N * dLoss/ds_n
from the sampled-label backward pass, the rows of A_tilde (N x (d_in+1)) and of
Gamma (N x d_out):

    G_n = g_n a_tilde_n^T,  U = [vec G_1 ... vec G_N],  F = (1/N) U U^T      (neither formed)
    K = U^T U = (A_tilde A_tilde^T) o (Gamma Gamma^T)       (Hadamard product of N x N Grams)
    L = cholesky(N*gamma*I + K)                                              every T2 steps
    (F + gamma*I)^-1 v = (1/gamma) (v - U (N*gamma*I + K)^-1 U^T v)          (Woodbury)
    (U^T vec V)_n = g_n^T V a_tilde_n,  U z = Gamma^T diag(z) A_tilde
    D = (F + gamma*I)^-1 M,  M = momentum buffer as [m_W | m_b]
    W <- (1 - lr*wd)*W - lr*D

A_tilde, Gamma and L are kept from the refresh step and reused (torch.cholesky_solve) for the
directions until the next one. Cost per layer: O(N^2 (d_in + d_out) + N^3) per refresh and
O(N d_in d_out) per direction; memory O(N (d_in + d_out) + N^2).

A convolution is s = W a + b at T output positions, a_{n,t} the unfolded input patches.
`conv_gradients` chooses its per-example gradients:

    exact      G_n = sum_t g_{n,t} a_tilde_{n,t}^T, stored flattened as the N rows of
               U^T (N x d_out*(d_in+1)): K = U^T U, U^T vec V and U z directly
    averaged   a_tilde_n = mean_t a_tilde_{n,t}, g_n = sum_t g_{n,t}, then the Linear formulas

For T = 1 (a Linear layer, or a convolution with a 1 x 1 output) the two coincide and the
factored Linear form is used. Other parameters (BatchNorm, LayerNorm, embeddings, grouped
convolutions) take the plain momentum step D = m; their types are listed once in a warning
when the optimizer is built. Momentum and decay: optimizers.base.

Note: there is no running average: the Fisher of a layer is that of the mini-batch of the
latest refresh step. So TENGraD has `inverse_every` (T2) only, and hands the base class
curvature_every = inverse_every = T2, statistics_decay = 0 and no warm start: statistics
are captured exactly on the refresh steps (t % T2 == 0), never in between.

Note: `conv_gradients: averaged` is the default. For T > 1 it approximates each G_n by
(sum_t g_{n,t}) (mean_t a_tilde_{n,t})^T (the bias column stays exact), and in exchange keeps
the cost O(N^2 (d_in + d_out) + N^3) and the memory O(N (d_in + d_out) + N^2) above; the
exact form needs N * d_out * (d_in+1) numbers per layer (one VGG layer of 512 x 512 x 3 x 3
filters at batch 128: ~1.2 GB in float32) and O(N^2 d_out d_in) for K. Linear layers on
(N, ..., d_in) inputs have T > 1 positions as well and follow the same choice.

Data parallel (optimizers.distributed), `distributed_fisher` chooses whose Fisher block:

    global (the default)  the global batch's, the same algorithm as one process: on a refresh
               step every rank all-gathers the rows of A_tilde and Gamma (of the per-example
               gradients G_n with `conv_gradients: exact`) of all layers, in one all-gather
               per dtype. The rows need no rescaling: g_n = n_r * dLoss_r/ds_n is example
               n's own loss gradient on any slice (optimizers.curvature.layers), the same row
               one process computes as N * dLoss/ds_n. So every rank holds U of the global
               batch, N is the global N = sum_r n_r in N*gamma*I + K and F = (1/N) U U^T,
               and K (N x N) and its Cholesky factor are computed identically on every rank,
               as are the directions (M is the global batch's momentum: the closure reduced
               the gradient). Communication per refresh: N (d_in + 1 + d_out) numbers per
               layer; the work per rank is the one process's, not divided.
    local      each rank's own block from its slice, F_r = (1/n_r) U_r U_r^T, with n_r in
               n_r*gamma*I + K_r (n_r x n_r): no gather, 1/R of the Gram's rows, (1/R)^2 of
               its entries and (1/R)^3 of its factorisation. The ranks' directions then
               differ, and their weighted mean D = sum_r (n_r / N) (F_r + gamma*I)^-1 M is
               every rank's direction (one all-reduce of the preconditioned layers'
               parameters per step, n_r the refresh step's), so the weights stay the same on
               every rank. A different preconditioner by design: the mean of the slices'
               inverses, not the inverse of the global batch's Fisher. With one process the
               two are the same.

Note: a Cholesky factorisation that fails in float64 too keeps the layer's previous
(A_tilde, Gamma, L) and is counted in `inverse_failures`; with no previous one the layer's
direction is M / gamma (the Fisher taken as 0). A coupled `l2` term enters the momentum,
not the per-example gradients (it is not part of the model's Fisher).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from optimizers.base import (
    SCHEDULE,
    CurvatureOptimizer,
    Fisher,
    check_positive_int,
    parse_choice,
)
from optimizers.curvature import CapturedLayer, CurvatureCapture, layer_directions
from optimizers.distributed import all_gather_rows, is_distributed, weighted_mean_
from optimizers.linalg import InversionError, damped_cholesky, damped_choleskys

ACTIVATIONS = "activations"  # A_tilde, (N, d_in [+1])
OUTPUT_GRADIENTS = "output_gradients"  # Gamma, (N, d_out)
PER_EXAMPLE_GRADIENTS = "per_example_gradients"  # exact conv form: G_n, (N, d_out, d_in [+1])
GRAM_CHOLESKY = "gram_cholesky"  # L, cholesky(N*gamma*I + K)
CAPTURED = "captured_"  # prefix of a statistics step's record until its inversion
LOCAL_FISHER_EXAMPLES = "local_fisher_examples"  # n_r of the refresh (distributed_fisher: local)


class ConvGradients(str, Enum):
    """The per-example gradients of a layer with T > 1 positions (convolutions)."""

    averaged = "averaged"  # g_n = sum_t g_{n,t}, a_n = mean_t a_{n,t}: the Linear formulas
    exact = "exact"  # G_n = sum_t g_{n,t} a_{n,t}^T, stored in full


class DistributedFisher(str, Enum):
    """Whose Fisher block a data-parallel rank inverts (module docstring)."""

    global_ = "global"  # the global batch's: rows all-gathered, the one-process algorithm
    local = "local"  # the rank's slice's; the ranks' directions averaged


class PerExampleGradients(Protocol):
    """U = [vec G_1 ... vec G_N] of one layer, never formed as a matrix."""

    @property
    def batch_size(self) -> int: ...

    def gram(self) -> Tensor:
        """K = U^T U, (N, N)."""
        ...

    def project(self, matrix: Tensor) -> Tensor:
        """U^T vec(V) for V of shape (d_out, d_in [+1]), (N,)."""
        ...

    def expand(self, weights: Tensor) -> Tensor:
        """U z for z of shape (N,), as a (d_out, d_in [+1]) matrix."""
        ...

    def tensors(self) -> dict[str, Tensor]:
        """What `self.state` keeps of it (`from_state` reads it back)."""
        ...


@dataclass(frozen=True)
class FactoredGradients:
    """G_n = g_n a_tilde_n^T from its factors: rows of A_tilde (N, d_in [+1]) and of
    Gamma (N, d_out)."""

    activations: Tensor
    output_gradients: Tensor

    @property
    def batch_size(self) -> int:
        return self.activations.shape[0]

    def gram(self) -> Tensor:
        """(A_tilde A_tilde^T) o (Gamma Gamma^T)."""
        a, g = self.activations, self.output_gradients
        return (a @ a.mT) * (g @ g.mT)

    def project(self, matrix: Tensor) -> Tensor:
        """Entries g_n^T V a_tilde_n."""
        return ((self.output_gradients @ matrix) * self.activations).sum(dim=1)

    def expand(self, weights: Tensor) -> Tensor:
        """Gamma^T diag(z) A_tilde."""
        return self.output_gradients.mT @ (weights.unsqueeze(1) * self.activations)

    def tensors(self) -> dict[str, Tensor]:
        return {ACTIVATIONS: self.activations, OUTPUT_GRADIENTS: self.output_gradients}


@dataclass(frozen=True)
class FlatGradients:
    """The per-example gradients G_n themselves, (N, d_out, d_in [+1])."""

    gradients: Tensor

    @property
    def batch_size(self) -> int:
        return self.gradients.shape[0]

    def gram(self) -> Tensor:
        rows = self.gradients.flatten(1)  # U^T
        return rows @ rows.mT

    def project(self, matrix: Tensor) -> Tensor:
        return self.gradients.flatten(1) @ matrix.reshape(-1)

    def expand(self, weights: Tensor) -> Tensor:
        return (weights @ self.gradients.flatten(1)).reshape(self.gradients.shape[1:])

    def tensors(self) -> dict[str, Tensor]:
        return {PER_EXAMPLE_GRADIENTS: self.gradients}


def averaged_factors(activations: Tensor, output_gradients: Tensor) -> FactoredGradients:
    """a_tilde_n = mean_t a_tilde_{n,t}, g_n = sum_t g_{n,t} from (N, T, d) records."""
    return FactoredGradients(activations.mean(dim=1), output_gradients.sum(dim=1))


def exact_gradients(activations: Tensor, output_gradients: Tensor) -> FlatGradients:
    """G_n = sum_t g_{n,t} a_tilde_{n,t}^T from (N, T, d) records (one batched matmul)."""
    return FlatGradients(torch.bmm(output_gradients.mT, activations))


def per_example_gradients(
    activations: Tensor, output_gradients: Tensor, conv_gradients: ConvGradients
) -> PerExampleGradients:
    """A layer's per-example gradients from its (N, T, d) records; T = 1: the Linear factors."""
    if conv_gradients == ConvGradients.exact and activations.shape[1] > 1:
        return exact_gradients(activations, output_gradients)
    return averaged_factors(activations, output_gradients)


def from_state(state: dict[str, Any], prefix: str = "") -> PerExampleGradients | None:
    """The per-example gradients kept in a layer's state under `prefix` (None: none yet)."""
    if prefix + PER_EXAMPLE_GRADIENTS in state:
        return FlatGradients(state[prefix + PER_EXAMPLE_GRADIENTS])
    if prefix + ACTIVATIONS in state:
        return FactoredGradients(state[prefix + ACTIVATIONS], state[prefix + OUTPUT_GRADIENTS])
    return None


def gram_cholesky(gradients: PerExampleGradients, damping: float) -> Tensor:
    """L = cholesky(N*gamma*I + K), float64 retry; InversionError when both fail."""
    return damped_cholesky(gradients.gram(), gradients.batch_size * damping)


def woodbury_solve(
    matrix: Tensor, gradients: PerExampleGradients, cholesky: Tensor, damping: float
) -> Tensor:
    """(F + gamma*I)^-1 vec(V) = (1/gamma) (V - U (N*gamma*I + K)^-1 U^T vec(V)), as a matrix
    shaped like V, with `cholesky` = L of N*gamma*I + K = L L^T."""
    coefficients = torch.cholesky_solve(gradients.project(matrix).unsqueeze(1), cholesky)
    return (matrix - gradients.expand(coefficients.squeeze(1))) / damping


class TENGraD(CurvatureOptimizer):
    """TENGraD for Linear and Conv2d layers (module docstring for the update rule).

    Args:
        params: the parameters to optimise, or param groups (torch.optim convention).
        model: the network; its Linear and Conv2d layers are hooked for the statistics.
        lr: alpha. damping: gamma, added to each layer's Fisher block (> 0). The defaults
            are the best of a grid on the demo problem (conf/tuned/demo/tengrad.yaml).
        momentum, momentum_dampening, weight_decay, l2: optimizers.base.
        inverse_every: T2, steps between refreshes of the per-example gradients and the
            Cholesky factor (captured on the refresh step's mini-batch).
        conv_gradients: "averaged" (spatially averaged factors) or "exact" (the full
            per-example gradients of layers with T > 1 positions).
        fisher: "sampled" (labels from the model) or "empirical" (training labels).
        distributed_fisher: data parallel, "global" (the global batch's Fisher block) or
            "local" (each rank's slice's, the directions averaged): module docstring. No
            effect on one process.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        model: nn.Module,
        lr: float = 1e-3,
        damping: float = 0.3,
        momentum: float = 0.9,
        momentum_dampening: float = 0.0,
        weight_decay: float = 0.0,
        l2: float = 0.0,
        inverse_every: int = 20,
        conv_gradients: str = "averaged",
        fisher: str = "sampled",
        distributed_fisher: str = "global",
    ) -> None:
        if not damping > 0.0:
            raise ValueError(f"Invalid damping value: {damping} (must be positive)")
        self.distributed_fisher = parse_choice(
            DistributedFisher, "distributed_fisher", distributed_fisher
        )
        check_positive_int("inverse_every", inverse_every)  # before the base's curvature_every
        self.conv_gradients = parse_choice(ConvGradients, "conv_gradients", conv_gradients)
        self.fisher = parse_choice(Fisher, "fisher", fisher)
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            momentum_dampening=momentum_dampening,
            weight_decay=weight_decay,
            l2=l2,
            curvature_every=inverse_every,  # statistics exactly on the refresh steps
            inverse_every=inverse_every,
            statistics_decay=0.0,  # the refresh step's mini-batch, no running average
            warm_start=False,
            damping=damping,
        )
        trained = [p for group in self.param_groups for p in group["params"]]
        self.capture = CurvatureCapture(model, trained)
        self.capture.warn_unsupported("TENGraD")

    @property
    def layers(self) -> list[CapturedLayer]:
        return self.capture.layers

    def _statistics_step(self, closure: Callable[[], Tensor], decay: float) -> Tensor:
        loss = self.capture.record_step(closure, self.fisher == Fisher.sampled, "TENGraD")
        records = []
        for layer in self.layers:
            gradients = per_example_gradients(
                layer.activations(), layer.output_gradients(), self.conv_gradients
            )
            records.append((self.state[layer.weight], gradients.tensors()))
        if is_distributed():
            if self.distributed_fisher == DistributedFisher.global_:
                records = self._gathered(records)
            elif self.layers:
                self.state[SCHEDULE][LOCAL_FISHER_EXAMPLES] = self.layers[0].batch_size
        for state, tensors in records:
            state.update({CAPTURED + key: value for key, value in tensors.items()})
        self.capture.clear()
        return loss

    @staticmethod
    def _gathered(
        records: list[tuple[dict[str, Any], dict[str, Tensor]]],
    ) -> list[tuple[dict[str, Any], dict[str, Tensor]]]:
        """Every layer's per-example rows of all ranks, in rank order (one all-gather per
        dtype for all layers): the global batch's U (module docstring)."""
        flat = all_gather_rows([tensor for _, tensors in records for tensor in tensors.values()])
        rows = iter(flat)
        return [(state, {key: next(rows) for key in tensors}) for state, tensors in records]

    def _update_inverses(self) -> None:
        """Every layer's L = cholesky(N*gamma*I + K) in one batched call (optimizers.linalg:
        one factorisation per Gram shape, N x N for all layers alike, and one host read,
        instead of a factorisation and reads per layer)."""
        groups = self._group_of()
        captures = []
        for layer in self.layers:
            state = self.state[layer.weight]
            captured = from_state(state, CAPTURED)
            if captured is None:
                continue
            for key in captured.tensors():
                del state[CAPTURED + key]
            captures.append((state, captured, groups[layer.weight]["damping"]))
        outcomes = damped_choleskys(
            [captured.gram() for _, captured, _ in captures],
            [captured.batch_size * damping for _, captured, damping in captures],
        )
        for (state, captured, _), outcome in zip(captures, outcomes, strict=True):
            if isinstance(outcome, InversionError):  # keep the previous record (none: M / gamma)
                self.state[SCHEDULE]["inverse_failures"] += 1
                continue
            state.update(captured.tensors())
            state[GRAM_CHOLESKY] = outcome

    def _directions(
        self, momenta: dict[Tensor, Tensor], gradients: dict[Tensor, Tensor]
    ) -> dict[Tensor, Tensor]:
        groups = self._group_of()

        def direction(layer: CapturedLayer, momentum: Tensor) -> Tensor:
            state = self.state[layer.weight]
            damping = groups[layer.weight]["damping"]
            stored = from_state(state)
            if stored is None:
                return momentum / damping
            return woodbury_solve(momentum, stored, state[GRAM_CHOLESKY], damping)

        directions = layer_directions(self.layers, momenta, direction)
        if is_distributed() and self.distributed_fisher == DistributedFisher.local:
            # the mean of the ranks' directions, so that the weights stay the same everywhere
            examples = self.state[SCHEDULE].get(LOCAL_FISHER_EXAMPLES, 1)
            weighted_mean_(list(directions.values()), examples)
        return directions

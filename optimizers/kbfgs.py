"""K-BFGS and K-BFGS(L): Kronecker-factored quasi-Newton updates.

Goldfarb, Ren & Bahamou (2020), "Practical quasi-Newton methods for training deep neural
networks" (NeurIPS), as the authors' code (renyiryry/kbfgs_neurips2020_public) runs it. Each
Linear layer s = W a + b, with homogeneous a_tilde = [a; 1] and gradient matrix [dW | db]
(d_out x (d_in+1)), has its block Hessian approximated by A (x) G, with running inverses
H_a ~ A^-1 and H_g ~ G^-1. With lambda = damping, one iteration t, in the authors' order
(their `Kron_BFGS_update`, called on every iteration: kbfgs_utils.py, training_function.py
l.243):

    1. the step's forward/backward pass (true labels); g <- g + l2*W;
       m <- mu*m + (1 - dampening)*g                              (optimizers.base)
    2. A <- rho*A + (1-rho) * (1/N) sum_n a_tilde_n a_tilde_n^T     (not at t = 0 after a
       warm start: the warm start's average is step 0's A);  A_lm = A + sqrt(lambda)*I
    3. at the first iteration H_a = A_lm^-1 (Cholesky); H_g = I
    4. D = H_g M H_a  (M the momentum buffer as [m_W | m_b]);  W <- (1 - lr*wd)*W - lr*D
    5. a second pass on the SAME mini-batch at the new weights (true labels): the forward
       pass and a backward pass to the layer outputs only, from dLoss/doutputs in closed form:
       no weight gradients and no loss value (the pairs need dLoss/ds alone;
       StepClosure.forward_outputs and output_gradient), and per layer:
         s_g = mean_n s_n(new) - mean_n s_n(old),  y_g = mean_n g_n(new) - mean_n g_n(old)
             with s the pre-activations and g_n = N * dLoss/ds_n;
         (s_g, y_g) <- pair_decay * (s_g, y_g)_avg + (1 - pair_decay) * (s_g, y_g), the
             average starting at zero (training_utils.py l.164): since BFGS, both dampings
             and the skip test below ignore a common scale of the pair, this is the
             bias-corrected average exactly;
         double damping of a copy (the average stays undamped): Powell on H_g (mu1 =
             powell_mu1), then Levenberg-Marquardt (mu2 = sqrt(lambda))  (optimizers.
             quasi_newton);
         H_g <- BFGS(H_g, s_g, y_g)                                  (inverse: bfgs, K-BFGS)
             or the pair joins the last `history` pairs, and H_g v is the L-BFGS two-loop
             from H0 = I                                           (inverse: lbfgs, K-BFGS(L))
       6. H_a <- BFGS(H_a, s_a, y_a) with s_a = H_a a_bar, y_a = A_lm s_a (this iteration's
          A_lm; a_bar = mean_n a_tilde_n of the first pass): the Hessian-action update
    Steps 5 and 6 update H_g and H_a for the NEXT iteration (kbfgs_utils.py l.102-188).

Skip rule (the authors' `get_BFGS_formula`, kbfgs_utils.py l.440-458, and the L-BFGS pair
test, l.344-353): an update (or a pair) is skipped, and counted in `skipped_updates`, when
s^T y <= 0, when s^T y <= min_curvature_ratio * (s^T s) * ||g_k|| (1e-4; g_k = mean_n g_n of
the first pass for H_g, a_bar for H_a), or when the result is not finite. The dampings and
the BFGS skip tests run branch-free on the device (torch.where, optimizers.quasi_newton), so
a step reads no value per layer on the host; K-BFGS(L) reads all layers' pair tests at once
(one read per refresh: the history's length is a host-side shape).

Schedule: with inverse_every = 1 (the default, and what the authors ran) steps 5 and 6 run
on every iteration. `inverse_every: T2 > 1` is sobench's cheaper interval variant, not the
paper's method: the second pass and the updates of H_g and H_a then run only on the steps of
the shared schedule (every curvature_every steps while t < T2, every T2 steps afterwards);
the authors' code sets a `Kron_BFGS_A_inv_freq = 20` but never reads it. Layers other than
Linear (Conv2d, BatchNorm, ...) take the plain momentum step D = m, listed once in a warning
when the optimizer is built.

Data parallel (optimizers.distributed): rank r records its slice of n_r examples; every
statistic of a pass is a mean over the batch, so the global batch's is the weighted mean
sum_r (n_r / N) x_r of the ranks' (N = sum_r n_r):

    first pass   A_hat (the (1/N) sum a_tilde a_tilde^T above, estimated apart from its
                 running average), a_bar, mean_n s_n and mean_n g_n of every layer: one
                 all-reduce of sum_layers (d_in+1)^2 + (d_in+1) + 2 d_out numbers
    second pass  on each rank's slice at the new weights, mean_n s_n and mean_n g_n of every
                 layer and the sum of the slice's outputs (its divergence witness, so that
                 every rank takes the same finiteness decision): one all-reduce of
                 sum_layers 2 d_out + 1 numbers

(g_n is each example's own loss gradient whatever the slice's size, and `.grad` is the
global batch's, reduced by the closure.) The updates of H_g and H_a (steps 5 and 6) and H_a's
first inverse (step 3) are then computed identically on every rank from the same inputs:
BFGS and L-BFGS updates are O(d^2) matrix-vector work per layer, which costs about what
broadcasting the d^2 result from an owner would (and a broadcast would add a collective's
latency per refresh); the first Cholesky runs once. So K-BFGS communicates the two
all-reduces above and nothing else, and its inverse work is not divided among the ranks.

Note: the second pass runs in training mode and leaves the model's buffers (BatchNorm running
statistics) and `.grad` (the step's gradient) as they were before it. The authors' warm start
averages A with forward passes only; this one runs the closure (forward and backward) for
each warm-start batch, outside the training clock, with the same A.
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
    check_non_negative,
    parse_choice,
)
from optimizers.curvature import CapturedLayer, CurvatureCapture, LayerKind, layer_directions
from optimizers.distributed import is_distributed, weighted_mean_
from optimizers.linalg import damped_inverses, damping_only, outcome_value
from optimizers.phases import phase
from optimizers.precision import MatmulPrecision, matmul
from optimizers.quasi_newton import (
    bfgs_update,
    curvature_threshold,
    double_damping,
    lbfgs_apply,
)
from optimizers.statistics import accumulate_gram_average, update_average

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
        curvature_every: T1, steps between refreshes of A (the authors: 1).
        inverse_every: T2, steps between the second passes and the updates of H_g and H_a
            (the authors: 1, every step; > 1 is sobench's interval variant, module
            docstring); a multiple of curvature_every, so that every refresh has this
            step's activations.
        statistics_decay: rho of A's running average.
        pair_decay: the running average of the (s_g, y_g) pairs, from zero.
        powell_mu1: mu1 of Powell's damping on H_g, in (0, 1).
        min_curvature_ratio: an update is skipped when s^T y <= this * s^T s * ||g_k||
            (the authors' 1e-4; 0 skips only s^T y <= 0).
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
        inverse_every: int = 1,
        statistics_decay: float = 0.9,
        pair_decay: float = 0.9,
        powell_mu1: float = 0.2,
        min_curvature_ratio: float = 1e-4,
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
        check_non_negative("min_curvature_ratio", min_curvature_ratio)
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
        self.min_curvature_ratio = min_curvature_ratio
        self.history = history
        self.model = model
        self.state[SCHEDULE]["skipped_updates"] = 0
        trained = [p for group in self.param_groups for p in group["params"]]
        self.capture = CurvatureCapture(
            model, trained, keep_outputs=True, kinds=(LayerKind.linear,)
        )
        self.capture.warn_unsupported("K-BFGS")

    # the authors keep the warm start's A at step 0 (kbfgs_utils.py l.75-76)
    refresh_statistics_after_warm_start = False

    @property
    def layers(self) -> list[CapturedLayer]:
        return self.capture.layers

    @property
    def skipped_updates(self) -> int:
        """BFGS updates of H_a or H_g, or L-BFGS pairs, skipped (the skip rule). The count is
        kept on the device (a 0-dim tensor once a skip test ran: the tests add to it without
        a host read); this property reads it."""
        return int(self.state[SCHEDULE]["skipped_updates"])

    # ------------------------------------------------------------------ the three phases
    def _statistics_step(self, closure: Callable[[], Tensor], decay: float) -> Tensor:
        """The step's pass, its means, and A's running average (step 2)."""
        return self._record_first_pass(closure, decay)

    def _pass_without_statistics(self, closure: Callable[[], Tensor]) -> Tensor:
        """Step 0 after a warm start: the pass and its means, A kept as the warm start left
        it."""
        return self._record_first_pass(closure, None)

    def _record_first_pass(self, closure: Callable[[], Tensor], decay: float | None) -> Tensor:
        loss = self.capture.record_step(closure, sampled=False, method="K-BFGS")
        if is_distributed():
            self._record_global_first_pass(decay)
            self.capture.clear()
            return loss
        for layer in self.layers:
            state = self.state[layer.weight]
            a = layer.activations(ones_column=False).flatten(0, 1)  # the Gram adds the ones
            if decay is not None:
                state[ACTIVATION_FACTOR] = accumulate_gram_average(
                    state.get(ACTIVATION_FACTOR),
                    a,
                    decay,
                    1.0 / layer.batch_size,
                    self.matmul_precision,
                    ones_column=layer.has_bias,
                )
            mean = a.mean(dim=0)
            state[MEAN_ACTIVATION] = torch.cat([mean, mean.new_ones(1)]) if layer.has_bias else mean
            state[MEAN_PRE_ACTIVATION], state[MEAN_OUTPUT_GRADIENT] = _layer_means(layer)
        self.capture.clear()
        return loss

    def _record_global_first_pass(self, decay: float | None) -> None:
        """Data parallel: this rank's A_hat and means, their weighted means over the ranks
        in one all-reduce, then A's running average (module docstring)."""
        records = []
        for layer in self.layers:
            a = layer.activations(ones_column=False).flatten(0, 1)
            estimate = None
            if decay is not None:
                estimate = accumulate_gram_average(
                    None,
                    a,
                    0.0,
                    1.0 / layer.batch_size,
                    self.matmul_precision,
                    ones_column=layer.has_bias,
                )
            records.append((layer, estimate, a.mean(dim=0), *_layer_means(layer)))
        reduced = [t for record in records for t in record[1:] if t is not None]
        weighted_mean_(reduced, self._local_batch_size())
        for layer, estimate, mean, pre_activation, output_gradient in records:
            state = self.state[layer.weight]
            if estimate is not None:
                average = state.get(ACTIVATION_FACTOR)
                state[ACTIVATION_FACTOR] = (
                    estimate if average is None else update_average(average, estimate, decay)
                )
            # the bias's 1 appended after the reduction: exactly 1, not a sum of weights
            state[MEAN_ACTIVATION] = torch.cat([mean, mean.new_ones(1)]) if layer.has_bias else mean
            state[MEAN_PRE_ACTIVATION], state[MEAN_OUTPUT_GRADIENT] = (
                pre_activation,
                output_gradient,
            )

    def _local_batch_size(self) -> int:
        """n_r of the recorded pass (every layer sees the same examples)."""
        return self.layers[0].batch_size if self.layers else 0

    def _update_inverses(self) -> None:
        """At the first refresh only: H_a = A_lm^-1 (step 3), every layer's in one batched
        call (optimizers.linalg: one host read). Later refreshes update H_a by BFGS after the
        second pass, for the next step (`_after_update`)."""
        groups = self._group_of()
        states = [
            (self.state[layer.weight], math.sqrt(groups[layer.weight]["damping"]))
            for layer in self.layers
            if ACTIVATION_INVERSE not in self.state[layer.weight]
        ]
        if not states:
            return
        # computed on every rank when data parallel (module docstring): no broadcast
        outcomes = damped_inverses(
            [state[ACTIVATION_FACTOR] for state, _ in states],
            [root_damping for _, root_damping in states],
        )
        for (state, root_damping), outcome in zip(states, outcomes, strict=True):
            factor = state[ACTIVATION_FACTOR]
            inverse = self._inverse_or_previous(
                partial(outcome_value, outcome),
                None,
                partial(damping_only, factor, root_damping),
            )
            state[ACTIVATION_INVERSE] = (inverse + inverse.mT) / 2

    def _directions(
        self, momenta: dict[Tensor, Tensor], gradients: dict[Tensor, Tensor]
    ) -> dict[Tensor, Tensor]:
        def direction(layer: CapturedLayer, momentum: Tensor) -> Tensor:
            state = self.state[layer.weight]
            right = matmul(momentum, state[ACTIVATION_INVERSE], self.matmul_precision)
            return self._apply_gradient_inverse(state, right, self.matmul_precision)

        return layer_directions(self.layers, momenta, direction)

    def _after_update(self, closure: Callable[[], Tensor], refreshed: bool) -> None:
        """On refresh steps: the second pass at the new weights, then H_g's and H_a's
        updates for the next step (steps 5 and 6)."""
        if not refreshed:
            return
        buffers = [buffer.clone() for buffer in self.model.buffers()]
        try:
            with phase("statistics"):
                witness = self._second_pass(closure)
                new_means = {layer.weight: _layer_means(layer) for layer in self.layers}
                if is_distributed():
                    self._global_second_pass(new_means, witness)
        except NonFiniteLoss:  # the step diverged: no pair; the next step reports it
            self.state[SCHEDULE]["skipped_updates"] += len(self.layers)
            return
        finally:
            self.capture.clear()
            with torch.no_grad():
                for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
                    buffer.copy_(saved)
        groups = self._group_of()
        pairs = []  # K-BFGS(L)'s (state, s, y, accepted) of every layer, remembered together
        with torch.no_grad(), phase("inversion"):
            for layer in self.layers:
                state = self.state[layer.weight]
                root_damping = math.sqrt(groups[layer.weight]["damping"])
                pre_activation, output_gradient = new_means[layer.weight]
                s = self._pair_average(state, PAIR_S, pre_activation - state[MEAN_PRE_ACTIVATION])
                y = self._pair_average(state, PAIR_Y, output_gradient - state[MEAN_OUTPUT_GRADIENT])
                s, y = double_damping(
                    s,
                    y,
                    partial(self._apply_gradient_inverse, state),
                    mu1=self.powell_mu1,
                    mu2=root_damping,
                )
                first_gradient = state[MEAN_OUTPUT_GRADIENT]
                if self.inverse == GradientInverse.bfgs:
                    if GRADIENT_INVERSE not in state:  # not setdefault: no d x d eye per step
                        state[GRADIENT_INVERSE] = _identity_like(s)
                    self._bfgs_or_skip(state, GRADIENT_INVERSE, s, y, first_gradient)
                else:
                    pairs.append((state, s, y, self._pair_accepted(s, y, first_gradient)))
                # H_a's Hessian-action update with this step's A_lm, for the next step
                mean_activation = state[MEAN_ACTIVATION]
                s_a = state[ACTIVATION_INVERSE] @ mean_activation
                y_a = state[ACTIVATION_FACTOR] @ s_a + root_damping * s_a
                self._bfgs_or_skip(state, ACTIVATION_INVERSE, s_a, y_a, mean_activation)
            self._remember_pairs(pairs)

    # ------------------------------------------------------------------ helpers
    def _global_second_pass(
        self, means: dict[Tensor, tuple[Tensor, Tensor]], witness: Tensor
    ) -> None:
        """Data parallel: the second pass's means and divergence witness (_second_pass),
        weighted means over the ranks in one all-reduce, in place; NonFiniteLoss on every rank
        when the global witness is not finite (the ranks take the same decision, so none
        waits in a collective alone)."""
        if not self.layers:
            return
        global_witness = witness.detach().to(self.layers[0].weight.dtype).reshape(1).clone()
        weighted_mean_(
            [t for pair in means.values() for t in pair] + [global_witness],
            self._local_batch_size(),
        )
        if not bool(torch.isfinite(global_witness)):
            raise NonFiniteLoss(global_witness[0])

    def _second_pass(self, closure: Callable[[], Tensor]) -> Tensor:
        """The mini-batch at the new weights, recorded: its forward pass, then the backward
        pass to the layer outputs only, from dLoss/doutputs in closed form (the pairs need
        mean_n g_n, not weight gradients nor the loss's value: a third less work than a full
        backward, and `.grad` keeps the step's gradient). A plain closure without
        `forward_outputs()` runs its full pass instead, its `.grad` put back after.

        Returns the sum of the network's outputs (the plain closure: its loss), the witness of
        a diverged pass: an output that is infinite or NaN makes every likelihood's loss so,
        and makes this sum so. When it is not finite the pass gives no pairs (NonFiniteLoss)."""
        forward_outputs = getattr(closure, "forward_outputs", None)
        if forward_outputs is None:
            params = [p for group in self.param_groups for p in group["params"]]
            gradients = [None if p.grad is None else p.grad.clone() for p in params]
            try:
                loss = self.capture.record_step(closure, sampled=False, method="K-BFGS")
            finally:
                for p, gradient in zip(params, gradients, strict=True):
                    p.grad = gradient
            return loss
        with self.capture.recording():
            outputs = forward_outputs()
        witness = outputs.detach().float().sum()
        # data parallel, the finiteness of the global witness decides (_global_second_pass)
        if not is_distributed() and not bool(torch.isfinite(witness)):
            raise NonFiniteLoss(witness)
        with phase("forward_backward"):  # the second pass's backward, as its forward
            self.capture.backward_to_outputs(outputs, closure.output_gradient())  # type: ignore[attr-defined]
        self.capture.check_complete()
        return witness

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

    def _bfgs_or_skip(
        self, state: dict[str, Any], key: str, s: Tensor, y: Tensor, gradient: Tensor
    ) -> None:
        """H <- BFGS(H, s, y) in place, or H kept and the skip counted, on the device (no host
        read). H is the optimizer's own matrix (built by it or loaded into its state)."""
        threshold = curvature_threshold(s, gradient, self.min_curvature_ratio)
        state[key], skipped = bfgs_update(state[key], s, y, threshold, in_place=True)
        self._count_skipped(skipped)

    def _count_skipped(self, skipped: Tensor) -> None:
        """skipped_updates += skipped, a device tensor from the first skip test on, so that
        counting reads nothing on the host (the `skipped_updates` property reads it)."""
        schedule = self.state[SCHEDULE]
        schedule["skipped_updates"] = schedule["skipped_updates"] + skipped.to(torch.int64)

    def _pair_accepted(self, s: Tensor, y: Tensor, gradient: Tensor) -> Tensor:
        """The L-BFGS pair test (s^T y above the threshold, s finite), a 0-dim bool tensor."""
        threshold = curvature_threshold(s, gradient, self.min_curvature_ratio)
        return (torch.dot(s, y) > threshold) & torch.isfinite(s).all()

    def _remember_pairs(self, pairs: list[tuple[dict[str, Any], Tensor, Tensor, Tensor]]) -> None:
        """Every layer's accepted pair joins its last `history` pairs; the acceptance of all
        layers is read in one host read (the history's length is a host-side shape)."""
        if not pairs:
            return
        flags = torch.stack([flag for *_, flag in pairs])
        if self.history == 0:  # no history to change: count on the device, no read
            self._count_skipped((~flags).sum())
            return
        accepted = flags.tolist()
        self.state[SCHEDULE]["skipped_updates"] += accepted.count(False)
        for (state, s, y, _), remember in zip(pairs, accepted, strict=True):
            if not remember:
                continue
            if PAIRS_S in state:
                state[PAIRS_S] = torch.cat([state[PAIRS_S], s[None]])[-self.history :]
                state[PAIRS_Y] = torch.cat([state[PAIRS_Y], y[None]])[-self.history :]
            else:
                state[PAIRS_S], state[PAIRS_Y] = s[None].clone(), y[None].clone()

    def _pair_average(self, state: dict[str, Any], key: str, estimate: Tensor) -> Tensor:
        """The running average of a pair's half, started at zero as the authors' (so equal to
        the bias-corrected average up to a scale the updates ignore); a copy, so that damping
        never changes the average."""
        average = state.setdefault(key, torch.zeros_like(estimate))
        average.mul_(self.pair_decay).add_(estimate, alpha=1.0 - self.pair_decay)
        return average.clone()


def _layer_means(layer: CapturedLayer) -> tuple[Tensor, Tensor]:
    """(mean_n s_n, mean_n g_n) of a recorded step, with g_n = N * dLoss/ds_n."""
    # mean_n (N dLoss/ds_n) = N * mean_n dLoss/ds_n: the scaling on the mean, not on a copy
    return (
        layer.pre_activations().flatten(0, 1).mean(dim=0),
        layer.output_gradients(scaled=False).flatten(0, 1).mean(dim=0) * layer.batch_size,
    )


def _identity_like(vector: Tensor) -> Tensor:
    return torch.eye(vector.shape[0], dtype=vector.dtype, device=vector.device)

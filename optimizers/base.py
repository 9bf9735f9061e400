"""What every curvature method of this project shares (docs/optimizers.md, "Conventions
shared by every method"): the schedule, the warm start, momentum, weight decay and the update.

A method subclasses `CurvatureOptimizer` and supplies three things, kept apart as in
facebookresearch/optimizers' PreconditionerList and ASDL's gradient makers:

    _statistics_step(closure, decay)  run the closure and refresh the curvature statistics,
                                      S <- decay*S + (1-decay)*S_hat; returns the loss
    _update_inverses()                recompute inverses or inverse roots from S
    _directions(momenta, gradients)   the preconditioned directions D for the parameters it
                                      preconditions (the others take D = m)
    _after_update(closure, refreshed) optional: work at the new weights on the same batch
                                      (K-BFGS's curvature pairs); nothing by default

and `step` does the rest, with t the step counter from 0, T1 = curvature_every and
T2 = inverse_every:

    statistics refreshed           when t % T1 == 0 (but at t = 0 after a warm start, for
                                   the methods whose authors do not: TNT, Shampoo, K-BFGS)
    inverses recomputed            when t % T1 == 0 while t < T2, then when t % T2 == 0
                                   (or only when t % T2 == 0: early_inverses=False)
    g <- g + l2*W                  coupled L2 (a separate field from weight decay)
    m <- mu*m + (1 - dampening)*g  momentum on the raw gradient, m starting at 0
    W <- (1 - lr*wd)*W - lr*D      decoupled weight decay scaled by the learning rate

The statistic's first estimate initialises it (decay 0), so no zero-initialised average biases
the first inverses; `warm_start` averages the estimates of its batches (decay (k-1)/k at the
k-th) at the initial weights, and training continues the average from there.

Note: the momentum buffer starts at 0 (the papers' code), so with momentum_dampening > 0 the
first step is (1 - dampening)*g; torch.optim.SGD starts its buffer at g. With dampening 0
(the default) the two agree exactly.

A non-finite loss from the closure changes nothing (no statistics, no update) and is returned,
so the runner records the divergence; the weights never become NaN through a step.

Data parallel (optimizers.distributed, docs/optimizers.md "Data parallel"): the closure
(runners.closure.StepClosure) already returns the global batch's loss and leaves `.grad` the
global batch's gradient on every rank; what a method computes from its own records is made
global by the method (its module docstring says how), and `_inverses_or_previous` spreads a
refresh's inverses over the ranks: each matrix is computed on one owner (assigned by cost,
d^3) and broadcast, so the inverses, and every rank's state, are the same on every rank.

All state lives in `self.state` (so state_dict round trips and the runner reports its size):
per parameter as in torch.optim, and the schedule under the key "schedule".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from functools import partial
from typing import Any

import torch
from torch import Tensor

from optimizers.distributed import (
    assign_by_cost,
    broadcast_from_owners,
    is_distributed,
    weighted_mean_,
    world,
)
from optimizers.linalg import Outcome, keep_previous_on_failure, outcome_value
from optimizers.phases import phase

SCHEDULE = "schedule"


class Fisher(str, Enum):
    """Which labels the curvature statistics use."""

    sampled = "sampled"  # labels drawn from the model's predictive distribution (true Fisher)
    empirical = "empirical"  # the training labels (empirical Fisher; TNT-EF)


def parse_choice(enum: type[Enum], name: str, value: Any) -> Any:
    """`enum(value)`, or ValueError("Invalid <name> value: ...") listing the choices."""
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(member.value for member in enum)  # type: ignore[attr-defined]
        raise ValueError(f"Invalid {name} value: {value!r} (choose from {choices})") from None


def check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid {name} value: {value} (must be a positive integer)")


def check_non_negative(name: str, value: Any) -> None:
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"Invalid {name} value: {value}")


def check_fraction(name: str, value: Any, include_one: bool = False) -> None:
    upper_ok = value <= 1.0 if include_one else value < 1.0
    if not (value >= 0.0 and upper_ok):
        interval = "[0, 1]" if include_one else "[0, 1)"
        raise ValueError(f"Invalid {name} value: {value} (must be in {interval})")


def inverses_due(step: int, curvature_every: int, inverse_every: int, early: bool = True) -> bool:
    """Every T1 steps while t < T2, every T2 steps afterwards; only every T2 steps, from
    t = 0, without the early refreshes (the authors' Shampoo on the autoencoders)."""
    if early and step < inverse_every:
        return step % curvature_every == 0
    return step % inverse_every == 0


def sampled_output_gradient(closure: Callable[[], Tensor], method: str) -> tuple[Tensor, Tensor]:
    """(outputs, dLoss/doutputs at labels sampled from the model) of the closure's latest
    forward pass (runners.closure.StepClosure.output_gradient): backpropagated from the outputs,
    it gives the sampled-Fisher gradients without computing the sampled loss itself."""
    output_gradient = getattr(closure, "output_gradient", None)
    if output_gradient is None:
        raise TypeError(
            f"{method} with fisher=sampled needs a closure with output_gradient() "
            "(runners.closure.StepClosure); use fisher=empirical with a plain closure"
        )
    return closure.outputs, output_gradient(sampled=True)  # type: ignore[attr-defined]


def gradient_with_l2(p: Tensor, l2: float) -> Tensor:
    """g + l2*W, a new tensor when l2 > 0 (p.grad is never modified)."""
    assert p.grad is not None
    return p.grad if l2 == 0 else p.grad.add(p, alpha=l2)


def momentum_step(
    state: dict[str, Any], p: Tensor, gradient: Tensor, mu: float, dampening: float
) -> Tensor:
    """m <- mu*m + (1 - dampening)*g in state["momentum_buffer"], from m = 0; with mu = 0,
    m = g and no buffer is kept. Every method of the project takes its momentum here."""
    if mu == 0:
        return gradient
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    buffer = state["momentum_buffer"]
    buffer.mul_(mu).add_(gradient, alpha=1.0 - dampening)
    return buffer


def decoupled_update(p: Tensor, direction: Tensor, lr: float, weight_decay: float) -> None:
    """W <- (1 - lr*wd)*W - lr*D, in place."""
    if weight_decay != 0:
        p.mul_(1.0 - lr * weight_decay)
    p.add_(direction, alpha=-lr)


class NonFiniteLoss(Exception):
    """The closure's loss is not finite: no statistics can be computed from it and no update
    is made; `step` returns the loss so that the runner records the divergence."""

    def __init__(self, loss: Tensor) -> None:
        super().__init__(f"non-finite loss {float(loss)}")
        self.loss = loss


def local_batch_size(closure: Callable[[], Tensor]) -> int:
    """n_r, the examples of this rank's slice of the global batch: the closure's inputs
    (runners.closure.StepClosure)."""
    inputs = getattr(closure, "inputs", None)
    if inputs is None:
        raise TypeError(
            "data-parallel training needs a closure with its mini-batch's inputs "
            "(runners.closure.StepClosure)"
        )
    return len(inputs)


def call_closure(closure: Callable[[], Tensor], retain_graph: bool = False) -> Tensor:
    """Run the closure, keeping its graph for a second backward pass when asked; raise
    NonFiniteLoss when its loss is not finite."""
    if retain_graph:
        if not hasattr(closure, "retain_graph"):
            raise TypeError(
                "a second backward pass needs a closure with retain_graph "
                "(runners.closure.StepClosure)"
            )
        closure.retain_graph = True  # type: ignore[attr-defined]
    loss = closure()
    if not bool(torch.isfinite(loss)):
        raise NonFiniteLoss(loss)
    return loss


class CurvatureOptimizer(torch.optim.Optimizer):
    """Base class of the curvature methods: schedule, warm start, momentum, decay, update."""

    # Shampoo's statistics_decay = 1 means a plain sum (the original Shampoo); others need < 1.
    statistics_decay_may_be_one = False
    # Whether step 0 refreshes the statistics again after a warm start: the authors' KFAC
    # does, their TNT, Shampoo and K-BFGS (its A) do not (the warm start's average is the
    # statistic of step 0); a method that sets this False runs `_pass_without_statistics`
    # at that step instead.
    refresh_statistics_after_warm_start = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        *,
        lr: float,
        momentum: float,
        momentum_dampening: float,
        weight_decay: float,
        l2: float,
        curvature_every: int,
        inverse_every: int,
        statistics_decay: float,
        warm_start: bool,
        early_inverses: bool = True,
        **method_defaults: Any,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")  # torch.optim's wording
        check_fraction("momentum", momentum)
        check_fraction("momentum_dampening", momentum_dampening)
        check_non_negative("weight_decay", weight_decay)
        check_non_negative("l2", l2)
        check_positive_int("curvature_every", curvature_every)
        check_positive_int("inverse_every", inverse_every)
        check_fraction("statistics_decay", statistics_decay, self.statistics_decay_may_be_one)
        if not isinstance(warm_start, bool):
            raise ValueError(f"Invalid warm_start value: {warm_start!r} (must be true or false)")
        if not isinstance(early_inverses, bool):
            raise ValueError(
                f"Invalid early_inverses value: {early_inverses!r} (must be true or false)"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "momentum_dampening": momentum_dampening,
            "weight_decay": weight_decay,
            "l2": l2,
            **method_defaults,
        }
        super().__init__(params, defaults)
        self.curvature_every = curvature_every
        self.inverse_every = inverse_every
        self.statistics_decay = statistics_decay
        self.warm_start_enabled = warm_start
        self.early_inverses = early_inverses
        self.state[SCHEDULE] = {"step": 0, "statistics_updates": 0, "inverse_failures": 0}

    # --------------------------------------------------------------------- for subclasses
    def _statistics_step(self, closure: Callable[[], Tensor], decay: float) -> Tensor:
        raise NotImplementedError

    def _update_inverses(self) -> None:
        raise NotImplementedError

    def _directions(
        self, momenta: dict[Tensor, Tensor], gradients: dict[Tensor, Tensor]
    ) -> dict[Tensor, Tensor]:
        raise NotImplementedError

    def _pass_without_statistics(self, closure: Callable[[], Tensor]) -> Tensor:
        """Step 0 after a warm start, for a method that does not refresh its statistics
        there (refresh_statistics_after_warm_start = False): the step's forward and backward
        pass only. A method that needs something of that pass (K-BFGS: the layers' means for
        its second pass) overrides it."""
        return call_closure(closure)

    def _after_update(self, closure: Callable[[], Tensor], refreshed: bool) -> None:
        """Called after the weights moved, with whether the inverses were refreshed on this
        step; `closure()` evaluates the same mini-batch at the new weights (K-BFGS's second
        pass). Nothing by default."""

    def _inverse_or_previous(
        self,
        compute: Callable[[], Tensor],
        previous: Tensor | None,
        fallback: Callable[[], Tensor],
    ) -> Tensor:
        """`compute()`; if it fails in float64 too, the previous inverse (or `fallback()` when
        there is none), counting the failure."""
        result, failed = keep_previous_on_failure(compute, previous, fallback)
        if failed:
            self.state[SCHEDULE]["inverse_failures"] += 1
        return result

    def _inverses_or_previous(
        self,
        matrices: Sequence[Tensor],
        compute: Callable[[list[int]], list[Outcome]],
        previous: Sequence[Tensor | None],
        fallbacks: Sequence[Callable[[], Tensor]],
    ) -> list[Tensor]:
        """The inverse (root, factor) of every matrix of a refresh, as `_inverse_or_previous`
        for each: `compute(indices)` gives the outcomes of those matrices in one batched call
        (optimizers.linalg), each result shaped and typed like its matrix.

        Data parallel: the matrices are assigned to the ranks by cost (d^3, the cost of a
        Cholesky or an eigendecomposition: assign_by_cost), each rank computes its own in one
        batched call, and every result is broadcast from its owner with its failure flag
        (broadcast_from_owners), so every rank holds the same inverses and counts the same
        failures. The work of a refresh is then divided by the world size, at the price of
        broadcasting each result once."""
        if not is_distributed():
            outcomes = compute(list(range(len(matrices))))
            return [
                self._inverse_or_previous(partial(outcome_value, outcome), before, fallback)
                for outcome, before, fallback in zip(outcomes, previous, fallbacks, strict=True)
            ]
        rank, _ = world()
        owners = assign_by_cost([float(matrix.shape[0]) ** 3 for matrix in matrices])
        mine = [index for index, owner in enumerate(owners) if owner == rank]
        outcomes = dict(zip(mine, compute(mine), strict=True))
        items: list[list[Tensor]] = []
        for index, matrix in enumerate(matrices):
            if index in outcomes:
                result, failed = keep_previous_on_failure(
                    partial(outcome_value, outcomes[index]), previous[index], fallbacks[index]
                )
                # a fresh tensor, as the receivers' are: a view into the batched results sits
                # at another alignment, and MKL's products then round differently in the last
                # bit, so the ranks' weights would drift apart
                result = result.clone(memory_format=torch.contiguous_format)
                flag = torch.full((1,), float(failed), dtype=result.dtype, device=result.device)
            else:  # received from the owner
                result, flag = torch.empty_like(matrix), matrix.new_empty(1)
            items.append([result, flag])
        broadcast_from_owners(items, owners)
        if items:  # one host read for the whole refresh
            failures = int(torch.cat([flag for _, flag in items]).sum().item())
            self.state[SCHEDULE]["inverse_failures"] += failures
        return [result for result, _ in items]

    def _statistic_gradients(
        self, closure: Callable[[], Tensor], fisher: Fisher
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Run the closure; return its loss and (parameter, mini-batch gradient) pairs for the
        statistics: at labels sampled from the model (a second backward pass through the
        retained graph, leaving `.grad` the true-label gradient the update uses), or the
        true-label gradient itself (fisher=empirical).

        Data parallel: `.grad` is already the global batch's (the closure reduced it); the
        sampled-label gradients are this rank's slice's mean, made the global batch's by
        the weighted mean sum_r (n_r / N) g_r (one all-reduce for all of them)."""
        sampled = fisher == Fisher.sampled
        loss = call_closure(closure, retain_graph=sampled)
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not sampled:
            return loss, [(p, p.grad) for p in params]  # type: ignore[misc]
        method = type(self).__name__
        outputs, output_gradient = sampled_output_gradient(closure, method)
        gradients = torch.autograd.grad(
            outputs, params, grad_outputs=output_gradient, allow_unused=True
        )
        if is_distributed():
            weighted_mean_([g for g in gradients if g is not None], local_batch_size(closure))
        return loss, [(p, g) for p, g in zip(params, gradients, strict=True) if g is not None]

    # --------------------------------------------------------------------- public
    @property
    def inverse_failures(self) -> int:
        """How many inverses failed in float64 too (the previous one was kept)."""
        return int(self.state[SCHEDULE]["inverse_failures"])

    @property
    def steps_taken(self) -> int:
        return int(self.state[SCHEDULE]["step"])

    @torch.no_grad()
    def warm_start(self, closures: Iterable[Callable[[], Tensor]]) -> None:
        """Average the curvature statistics over `closures` (mini-batches at the initial
        weights) before step 0; the weights do not change. The runner calls it outside the
        training clock when the trainer starts; it does nothing when warm_start=false."""
        if not self.warm_start_enabled:
            return
        schedule = self.state[SCHEDULE]
        for count, closure in enumerate(closures, start=1):
            try:
                with torch.enable_grad(), phase("statistics"):
                    self._statistics_step(closure, decay=(count - 1) / count)
            except NonFiniteLoss as error:
                raise RuntimeError(f"warm start: {error} at the initial weights") from None
            schedule["statistics_updates"] += 1
        self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        if closure is None:
            raise RuntimeError(
                f"{type(self).__name__}.step needs a closure that recomputes the loss "
                "(runners.closure.StepClosure)"
            )
        schedule = self.state[SCHEDULE]
        step = schedule["step"]
        warm_started = step == 0 and schedule["statistics_updates"] > 0
        try:
            with torch.enable_grad():
                if warm_started and not self.refresh_statistics_after_warm_start:
                    loss = self._pass_without_statistics(closure)
                elif step % self.curvature_every == 0:
                    # the closure marks its own forward_backward phase inside this one
                    first = schedule["statistics_updates"] == 0
                    with phase("statistics"):
                        loss = self._statistics_step(
                            closure, decay=0.0 if first else self.statistics_decay
                        )
                    schedule["statistics_updates"] += 1
                else:
                    loss = call_closure(closure)
        except NonFiniteLoss as diverged:
            return diverged.loss  # nothing is updated from a non-finite loss
        refresh = inverses_due(step, self.curvature_every, self.inverse_every, self.early_inverses)
        if refresh:
            with phase("inversion"):
                self._update_inverses()
        gradients, momenta = self._momenta()
        directions = dict(momenta)  # parameters a method does not precondition: D = m
        with phase("preconditioning"):
            directions.update(self._directions(momenta, gradients))
        self._apply(directions)
        with torch.enable_grad():
            self._after_update(closure, refresh)
        schedule["step"] = step + 1
        return loss

    # --------------------------------------------------------------------- shared update
    def _momenta(self) -> tuple[dict[Tensor, Tensor], dict[Tensor, Tensor]]:
        """g (+ l2*W) and m <- mu*m + (1 - dampening)*g for every parameter with a gradient."""
        gradients: dict[Tensor, Tensor] = {}
        momenta: dict[Tensor, Tensor] = {}
        for group in self.param_groups:
            mu, dampening = group["momentum"], group["momentum_dampening"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                gradients[p] = gradient_with_l2(p, group["l2"])
                momenta[p] = momentum_step(self.state[p], p, gradients[p], mu, dampening)
        return gradients, momenta

    def _apply(self, directions: dict[Tensor, Tensor]) -> None:
        """W <- (1 - lr*wd)*W - lr*D."""
        for group in self.param_groups:
            for p in group["params"]:
                direction = directions.get(p)
                if direction is not None:
                    decoupled_update(p, direction, group["lr"], group["weight_decay"])

    def _group_of(self) -> dict[Tensor, dict[str, Any]]:
        """Each parameter's param group."""
        return {p: group for group in self.param_groups for p in group["params"]}

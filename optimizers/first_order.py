"""The first-order methods of the TNT and K-BFGS reference codes, on the shared momentum.

Both codes build their first-order baselines on the same buffer as their second-order
methods: the momentum of the raw gradient, from 0, then a direction D from that buffer, then
the update. With t the step from 1, g the mini-batch gradient, mu = `momentum` and
d = `momentum_dampening`:

    g <- g + l2*W                      coupled L2 (the K-BFGS code's tau = 1e-5)
    m_t = mu*m_{t-1} + (1 - d)*g_t     m_0 = 0
    D_t = the method's direction from m_t (below)
    W <- (1 - lr*wd)*W - lr*D_t        decoupled weight decay at the current learning rate

which is the update of optimizers.base (the curvature methods' convention) with no
curvature. The classes:

    SGDW               D = m                           (SGD-m of both codes)
    AdamOnMomentum     D = mhat / (sqrt(vhat) + eps),  v of mhat^2: Adam on the momentum
    RMSpropOnMomentum  D = m / (sqrt(v) + eps),        v of m^2, warm-started

None of them is a torch.optim class: torch.optim.SGD starts its buffer at g (so with
dampening its first step differs), torch.optim.Adam keeps the second moment of g, not of
the momentum, and torch.optim.RMSprop keeps that of g and starts it at 0. Each class's
docstring says where its equations come from, as `repo:path:line` at the commits

    tnt    github.com/renyiryry/tnt_neurips_2021          266d0aa7dfe849dcc14106dc50c48818770d40e4
    kbfgs  github.com/renyiryry/kbfgs_neurips2020_public  be57dc380be1817dc9746d174fbe06e8fdeb1946

As for the curvature methods (optimizers.base): a non-finite loss from the closure changes
nothing and is returned, so the runner records the divergence and no weight becomes NaN; the
learning rate is only read (its schedule is the runner's); every hyperparameter is checked,
for the defaults and for each param group, with torch's wording; all state is in
`self.state`, per parameter (`momentum_buffer`, `second_moment`, `step`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from optimizers.base import (
    check_fraction,
    check_non_negative,
    decoupled_update,
    gradient_with_l2,
    momentum_step,
)
from optimizers.phases import phase


def check_eps(eps: Any) -> None:
    if not eps > 0.0:  # also rejects NaN; eps 0 divides 0 by 0 where v is 0
        raise ValueError(f"Invalid eps value: {eps}")


class MomentumMethod(torch.optim.Optimizer):
    """The shared part: checks, g + l2*W, the momentum from 0, decoupled decay, the update.
    A subclass says how D follows from the momentum (`_direction`) and checks its own
    hyperparameters (`_check_method`)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        *,
        lr: float,
        momentum: float,
        momentum_dampening: float,
        weight_decay: float,
        l2: float,
        **method_defaults: Any,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "momentum_dampening": momentum_dampening,
            "weight_decay": weight_decay,
            "l2": l2,
            **method_defaults,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's, then the group's settings checked (the defaults fill what it omits), so a
        bad setting fails at construction whether it is a default or a group's own."""
        super().add_param_group(param_group)
        self._check(self.param_groups[-1])

    def _check(self, group: dict[str, Any]) -> None:
        if not group["lr"] >= 0.0:
            raise ValueError(f"Invalid learning rate: {group['lr']}")  # torch.optim's wording
        check_fraction("momentum", group["momentum"])
        check_fraction("momentum_dampening", group["momentum_dampening"])
        check_non_negative("weight_decay", group["weight_decay"])
        check_non_negative("l2", group["l2"])
        self._check_method(group)

    def _check_method(self, group: dict[str, Any]) -> None:
        """Check the method's own settings in `group`; nothing by default."""

    def _direction(self, p: Tensor, m: Tensor, group: dict[str, Any]) -> Tensor:
        """D for parameter `p` from its momentum `m` (read-only); D = m by default."""
        return m

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One step from the gradients the closure computes (or, without a closure, from the
        `.grad` already there, as torch.optim allows); returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
            if not bool(torch.isfinite(loss)):
                return loss  # nothing is updated from a non-finite loss
        for group in self.param_groups:
            mu, dampening = group["momentum"], group["momentum_dampening"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                gradient = gradient_with_l2(p, group["l2"])
                m = momentum_step(self.state[p], p, gradient, mu, dampening)
                direction = self._direction(p, m, group)
                decoupled_update(p, direction, group["lr"], group["weight_decay"])
        return loss


class SGDW(MomentumMethod):
    """SGD with momentum on the raw gradient from m_0 = 0 and decoupled weight decay:

        m_t = mu*m_{t-1} + (1 - d)*(g_t + l2*W),   m_0 = 0
        W <- (1 - lr_t*wd)*W - lr_t*m_t

    with lr_t the current learning rate (after the runner's schedule).

    The TNT code's SGD-m (`optimizer=sgdw`, the defaults: its CIFAR-10 ResNet-32 setting):
    mu 0.9, d 0 (`tnt:utils_git/jupyter_functions.py:105-109`), m_0 = 0
    (`tnt:utils_git/utils.py:11428`), m <- mu*m + (1 - d)*g (`:11872-11880`); the update
    W <- (1 - alpha_t*wd)*W + alpha_t*p on every variable, p = -m, with alpha_t the decayed
    learning rate (`:7048-7079`, `alpha_current` at `:11930-11933`); lr 0.03 and wd 0.01
    (`tnt:demo.ipynb` cell 6). torch.optim.SGD's `weight_decay` is coupled (wd*W is added to
    g, and goes through the momentum), so it does not reproduce this.

    The K-BFGS code's SGD-m (`momentum_dampening=0.9 l2=1e-5 weight_decay=0`): mu 0.9
    (`kbfgs:training_function.py:34`), m <- 0.9*m + 0.1*(g + tau*W) from m_0 = 0 (`:161`,
    `:216`, `:223-225`, tau = 1e-5 at `:46`), D = m (`kbfgs:first_order_methods.py:43-48`),
    W <- W - alpha*D (`kbfgs:training_utils.py:270-281`). Its first step is 0.1*alpha*g:
    torch.optim.SGD with dampening 0.9 starts its buffer at g (no dampening on the first
    step), so its first step is alpha*g, ten times larger. With d = 0 and wd = 0 this class
    and torch.optim.SGD take the same steps.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.03,
        momentum: float = 0.9,
        momentum_dampening: float = 0.0,
        weight_decay: float = 0.01,
        l2: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            momentum_dampening=momentum_dampening,
            weight_decay=weight_decay,
            l2=l2,
        )


class AdamOnMomentum(MomentumMethod):
    """Adam on the momentum: the Adam of the TNT and K-BFGS codes, not torch.optim.Adam.

    With t the step from 1 and m the shared momentum with d = mu (= beta1):

        m_t    = mu*m_{t-1} + (1 - mu)*(g_t + l2*W),   m_0 = 0
        mhat_t = m_t / (1 - mu^t)
        v_t    = beta2*v_{t-1} + (1 - beta2)*mhat_t^2,  v_0 = 0   (the bias-corrected MOMENTUM)
        vhat_t = v_t / (1 - beta2^t)
        D_t    = mhat_t / (sqrt(vhat_t) + eps)                      (eps outside the root)
        W     <- (1 - lr_t*wd)*W - lr_t*D_t

    torch.optim.Adam keeps v of g^2; here v is of mhat^2, so v and the steps differ from the
    first step on (at t = 1 they agree, mhat_1 = g_1; from t = 2, mhat_t^2 != g_t^2).

    Sources. TNT code: mhat (`tnt:utils_git/utils.py:6832-6840`), v of mhat^2 (`:6878`,
    `:6893-6896`), vhat (`:6987-6993`), D (`:7018-7020`), the decoupled decay at the current
    lr (`:7048-7079`); beta2 0.999 (`tnt:utils_git/jupyter_functions.py:127`), d 0.9 "i.e.
    beta_1" (`:129`), eps = the damping value (`:125`), v_0 = 0, no warm start ("noWarmStart",
    `:133-136`); on the MNIST autoencoder lr 1e-4, eps 1e-4, wd 0 (`tnt:demo.ipynb` cell 11,
    the defaults here). K-BFGS code: m <- 0.9*m + 0.1*(g + tau*W) from 0
    (`kbfgs:training_function.py:161`, `:216`, `:223-225`), mhat, v of mhat^2, vhat, D
    (`kbfgs:first_order_methods.py:14-38`) with beta2 = 0.9 (`:21`) and eps 1e-4
    (`kbfgs:training_function.py:23`), v_0 = 0 (`kbfgs:training_utils.py:192-194`), no
    weight decay (`kbfgs:training_utils.py:270-281`); its experiments set `beta2: 0.9`,
    `eps: 1e-4`, `l2: 1e-5`.

    Why mhat = m / (1 - mu^t) with dampening 0.9: both codes feed Adam the same dampened
    momentum m_t = sum_{s<=t} mu^(t-s) (1 - mu) g_s, whose weights sum to 1 - mu^t, so
    dividing by 1 - mu^t makes it an average of the g_s (a constant gradient gives mhat = g):
    that is Adam's first moment with beta1 = mu. The correction is right only when d = mu:
    with d != mu the weights sum to (1 - d)(1 - mu^t)/(1 - mu), and mhat would be off by the
    factor (1 - d)/(1 - mu) (10 for d = 0); the factor cancels between mhat and sqrt(vhat)
    except against eps (it acts as eps*(1 - mu)/(1 - d)), so the method would silently be
    another one. The TNT code asserts d = mu (`tnt:utils_git/utils.py:6836`), and the K-BFGS
    code has d = mu by construction (m <- rho*m + (1 - rho)*g); this class follows them and
    raises ValueError when `momentum_dampening != momentum`.

    t counts the steps each parameter has taken (torch.optim.Adam's per-parameter `step`);
    the codes' global iteration counter is the same when every parameter has a gradient at
    every step, as in both codes.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        momentum: float = 0.9,
        momentum_dampening: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-4,
        weight_decay: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            momentum_dampening=momentum_dampening,
            weight_decay=weight_decay,
            l2=l2,
            beta2=beta2,
            eps=eps,
        )

    def _check_method(self, group: dict[str, Any]) -> None:
        check_fraction("beta2", group["beta2"])
        check_eps(group["eps"])
        mu, dampening = group["momentum"], group["momentum_dampening"]
        if dampening != mu:
            raise ValueError(
                f"Invalid momentum_dampening value: {dampening} (must equal momentum={mu}: the "
                "bias correction 1/(1 - momentum^t) is right only for m <- mu*m + (1 - mu)*g)"
            )

    def _direction(self, p: Tensor, m: Tensor, group: dict[str, Any]) -> Tensor:
        mu, beta2, eps = group["momentum"], group["beta2"], group["eps"]
        state = self.state[p]
        t = state["step"] = state.get("step", 0) + 1
        mhat = m / (1.0 - mu**t)
        if "second_moment" not in state:
            state["second_moment"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        v = state["second_moment"]
        v.mul_(beta2).addcmul_(mhat, mhat, value=1.0 - beta2)
        vhat = v / (1.0 - beta2**t)
        return mhat.div_(vhat.sqrt_().add_(eps))


class RMSpropOnMomentum(MomentumMethod):
    """RMSprop on the momentum: the RMSprop of the K-BFGS code, not torch.optim.RMSprop.

        m_t = mu*m_{t-1} + (1 - d)*(g_t + l2*W),   m_0 = 0
        v_t = beta2*v_{t-1} + (1 - beta2)*m_t^2    (of the momentum, no bias correction)
        D_t = m_t / (sqrt(v_t) + eps)
        W  <- (1 - lr_t*wd)*W - lr_t*D_t

        v_0 = (1/J) sum_{j=1..J} (g_j(W_0) + l2*W_0)^2   with warm_start (the default)
        v_0 = 0                                          without

    The warm start (`warm_start(closures)`, called by the trainer before step 0 over
    `trainer.warm_start_batches` mini-batches, one epoch by default) averages uniformly the
    element-wise square of the raw gradient plus the L2 term at the initial weights: the k-th
    batch with v <- (k-1)/k*v + (1/k)*g_k^2. It squares the gradient, while the iterations
    square the momentum, as in the code. It does not change the weights.

    Sources, all in the K-BFGS code: m (`kbfgs:training_function.py:161`, `:216`,
    `:223-225`: mu 0.9, d 0.9, tau 1e-5 at `:46`); v of m^2 with beta2 = 0.9 and no bias
    correction (`kbfgs:first_order_methods.py:21-25`, `:32-33`); D (`:35-38`); eps 1e-4
    (`kbfgs:training_function.py:23`, `:69-70`); W <- W - alpha*D, no weight decay
    (`kbfgs:training_utils.py:270-281`); the warm start (`kbfgs:training_utils.py:86-123`:
    true labels, gradient of the mean loss plus tau*W, uniform average of its square over
    floor(n/N1) batches). Without a warm start v starts at 0: the code initialises it to zeros
    (`:88`) and runs the warm-start loop only when the batch is smaller than the training set
    (`:93`). The code has no RMSprop setting for any problem (`kbfgs:Demo.ipynb` runs none);
    lr 1e-4 here is the Adam setting of the TNT code, whose steps have the same scale.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        momentum: float = 0.9,
        momentum_dampening: float = 0.9,
        beta2: float = 0.9,
        eps: float = 1e-4,
        weight_decay: float = 0.0,
        l2: float = 1e-5,
        warm_start: bool = True,
    ) -> None:
        if not isinstance(warm_start, bool):
            raise ValueError(f"Invalid warm_start value: {warm_start!r} (must be true or false)")
        self.warm_start_enabled = warm_start
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            momentum_dampening=momentum_dampening,
            weight_decay=weight_decay,
            l2=l2,
            beta2=beta2,
            eps=eps,
        )

    def _check_method(self, group: dict[str, Any]) -> None:
        check_fraction("beta2", group["beta2"])
        check_eps(group["eps"])

    def _direction(self, p: Tensor, m: Tensor, group: dict[str, Any]) -> Tensor:
        beta2, eps = group["beta2"], group["eps"]
        state = self.state[p]
        if "second_moment" not in state:
            state["second_moment"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        v = state["second_moment"]
        v.mul_(beta2).addcmul_(m, m, value=1.0 - beta2)
        return m / v.sqrt().add_(eps)

    @torch.no_grad()
    def warm_start(self, closures: Iterable[Callable[[], Tensor]]) -> None:
        """v_0: the uniform average of (g + l2*W)^2 over `closures` (mini-batches at the
        initial weights), before step 0; the weights do not change. Nothing when
        warm_start=false."""
        if not self.warm_start_enabled:
            return
        counts: dict[Tensor, int] = {}
        for closure in closures:
            with torch.enable_grad(), phase("statistics"):
                loss = closure()
            if not bool(torch.isfinite(loss)):
                raise RuntimeError(
                    f"warm start: non-finite loss {float(loss)} at the initial weights"
                )
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    grad = gradient_with_l2(p, group["l2"])
                    count = counts[p] = counts.get(p, 0) + 1
                    state = self.state[p]
                    if count == 1:
                        state["second_moment"] = grad.square()
                    else:
                        state["second_moment"].mul_((count - 1) / count).addcmul_(
                            grad, grad, value=1.0 / count
                        )
        self.zero_grad(set_to_none=True)

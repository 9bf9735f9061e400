"""A diagonal Fisher preconditioner: the worked example of the README section
"Adding an optimizer".

    v <- rho*v + (1-rho) * g_bar^2     every T1 steps (g_bar: the sampled mini-batch gradient)
    P = 1 / (v + eps)                  every T2 steps
    D = P * m,  W <- (1 - lr*wd)*W - lr*D

The base class (optimizers.base) supplies the schedule, warm start, momentum, weight decay
and the update; this class only says what the statistic, its "inverse" and the direction are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor

from optimizers.base import CurvatureOptimizer, Fisher, parse_choice
from optimizers.statistics import update_average


class DiagonalFisher(CurvatureOptimizer):
    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        eps: float = 1e-3,
        momentum: float = 0.9,
        momentum_dampening: float = 0.0,
        weight_decay: float = 0.0,
        l2: float = 0.0,
        curvature_every: int = 1,
        inverse_every: int = 1,
        statistics_decay: float = 0.9,
        fisher: str = "sampled",
        warm_start: bool = False,
    ) -> None:
        if not eps > 0.0:
            raise ValueError(f"Invalid eps value: {eps}")
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
            eps=eps,  # per param group, like lr
        )

    def _statistics_step(self, closure: Callable[[], Tensor], decay: float) -> Tensor:
        loss, gradients = self._statistic_gradients(closure, self.fisher)
        for p, gradient in gradients:
            state = self.state[p]
            state["diagonal"] = update_average(state.get("diagonal"), gradient.square(), decay)
        return loss

    def _update_inverses(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if "diagonal" in self.state[p]:
                    self.state[p]["inverse"] = 1.0 / (self.state[p]["diagonal"] + group["eps"])

    def _directions(
        self, momenta: dict[Tensor, Tensor], gradients: dict[Tensor, Tensor]
    ) -> dict[Tensor, Tensor]:
        inverses = {p: self.state[p].get("inverse") for p in momenta}
        return {p: m * inverses[p] for p, m in momenta.items() if inverses[p] is not None}

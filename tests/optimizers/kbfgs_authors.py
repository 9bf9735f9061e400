"""The authors' K-BFGS iteration written out literally, for tests: renyiryry/
kbfgs_neurips2020_public at be57dc3 (training_function.py l.191-255, kbfgs_utils.py l.9-213,
l.215-268, l.338-462, training_utils.py l.161-191), on a network of Linear layers and ReLUs,
independently of optimizers/kbfgs.py.

One iteration, per Linear layer l with input h (homogeneous h~ = [h; 1]), pre-activation a and
g = N * dL/da (true labels, the mean loss without the L2 term):
    1. forward/backward; grad <- grad + tau*w; m <- 0.9 m + 0.1 grad          (m starts at 0)
    2. A <- 0.9 A + 0.1 mean(h~ h~^T), except at i = 0 after the warm start;
       A_LM = A + sqrt(lambda) I;  at i = 0: H_a = A_LM^-1, H_g = I
    3. p = -H_g [m_W | m_b] H_a
    4. second forward/backward on the same batch at w + alpha p (a copy)
    5. s = mean a(old) - mean a(new), y = mean g(old) - mean g(new);
       s_bar <- 0.9 s_bar + 0.1 s, y_bar <- 0.9 y_bar + 0.1 y (from zero);
       Powell (0.2) against H_g, then Levenberg-Marquardt (sqrt(lambda)), on copies;
       H_g <- BFGS(H_g, s, y, g_k = mean g(old))  or an L-BFGS pair (y^T s > 1e-4 s^T s |g_k|)
       H_a <- BFGS(H_a, H_a a_bar, A_LM H_a a_bar, g_k = a_bar),  a_bar = mean h~(old)
    6. w <- w + alpha p
BFGS: skipped if s^T y <= 0, or s^T y <= 1e-4 s^T s |g_k|, or an inf in the result (the
    ratio 1e-4 is a parameter here, so that a test can make the rule bite on a tiny problem);
    H <- H + (rho^2 y^T H y + rho) s s^T - rho (s (Hy)^T + (Hy) s^T), rho = 1/s^T y.
Warm start: A = the uniform average of mean(h~ h~^T) over the warm-start batches.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TAU = 1e-5
MU1 = 0.2
RATIO = 1e-4


def _linears(model: nn.Sequential) -> list[nn.Linear]:
    return [module for module in model if isinstance(module, nn.Linear)]


def _passes(model: nn.Sequential, x: Tensor, y: Tensor) -> tuple[list[dict[str, Tensor]], list]:
    """Per Linear layer: h~, a and N dL/da of the mean loss; and the parameter gradients."""
    caches: list[dict[str, Tensor]] = []
    values = x
    pre_activations = []
    for module in model:
        if isinstance(module, nn.Linear):
            h = torch.cat([values, torch.ones(values.shape[0], 1, dtype=values.dtype)], dim=1)
            values = module(values)
            values.retain_grad()
            pre_activations.append(values)
            caches.append({"h": h.detach()})
        else:
            values = module(values)
    loss = F.cross_entropy(values, y)
    model.zero_grad()
    loss.backward()
    n = x.shape[0]
    for cache, a in zip(caches, pre_activations, strict=True):
        cache["a"], cache["g"] = a.detach(), n * a.grad.detach()
    grads = [
        torch.cat([layer.weight.grad, layer.bias.grad[:, None]], dim=1) for layer in _linears(model)
    ]
    return caches, grads


def _bfgs(h: Tensor, s: Tensor, y: Tensor, g_k: Tensor, ratio: float) -> Tensor | None:
    s_y = torch.dot(s, y)
    if s_y <= 0 or s_y <= ratio * torch.dot(s, s) * torch.linalg.vector_norm(g_k):
        return None
    rho = 1.0 / s_y
    h_y = h @ y
    new = h + (rho**2 * torch.dot(y, h_y) + rho) * torch.outer(s, s)
    new = new - rho * (torch.outer(s, h_y) + torch.outer(h_y, s))
    return None if torch.isinf(new).any() else new


def _two_loop(v: Tensor, pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
    q, alphas = v.clone(), []
    for s, y in reversed(pairs):
        alpha = torch.dot(s, q) / torch.dot(s, y)
        q = q - alpha * y
        alphas.append(alpha)
    for (s, y), alpha in zip(pairs, reversed(alphas), strict=True):
        beta = torch.dot(y, q) / torch.dot(s, y)
        q = q + (alpha - beta) * s
    return q


class AuthorsKBFGS:
    """The authors' K-BFGS (lbfgs=False) or K-BFGS(L) (lbfgs=True) on `model`'s Linear
    layers; `warm_start(batches)` then `step(x, y)` per iteration."""

    def __init__(
        self,
        model: nn.Sequential,
        lr: float,
        damping: float,
        lbfgs: bool = False,
        ratio: float = RATIO,
    ):
        self.model, self.lr, self.lbfgs, self.ratio = model, lr, lbfgs, ratio
        self.root = math.sqrt(damping)
        self.i, self.warm_started = 0, False
        layers = _linears(model)
        self.m = [
            torch.zeros(layer.out_features, layer.in_features + 1, dtype=torch.float64)
            for layer in layers
        ]
        self.A: list[Tensor | None] = [None] * len(layers)
        self.H_a: list[Tensor | None] = [None] * len(layers)
        self.H_g = [torch.eye(layer.out_features, dtype=torch.float64) for layer in layers]
        self.pairs: list[list[tuple[Tensor, Tensor]]] = [[] for _ in layers]
        self.s_bar = [torch.zeros(layer.out_features, dtype=torch.float64) for layer in layers]
        self.y_bar = [torch.zeros(layer.out_features, dtype=torch.float64) for layer in layers]
        self.skipped = 0

    def warm_start(self, batches: list[tuple[Tensor, Tensor]]) -> None:
        for j, (x, y) in enumerate(batches, start=1):
            caches, _ = _passes(self.model, x.flatten(1), y)
            for index, cache in enumerate(caches):
                estimate = cache["h"].T @ cache["h"] / cache["h"].shape[0]
                previous = self.A[index]
                self.A[index] = (
                    estimate if previous is None else (j - 1) / j * previous + estimate / j
                )
        self.warm_started = True

    def _apply_h_g(self, index: int, v: Tensor) -> Tensor:
        return _two_loop(v, self.pairs[index]) if self.lbfgs else self.H_g[index] @ v

    def step(self, x: Tensor, y: Tensor) -> None:
        x = x.flatten(1)
        layers = _linears(self.model)
        caches, grads = _passes(self.model, x, y)
        directions, a_lms = [], []
        for index, (layer, cache, grad) in enumerate(zip(layers, caches, grads, strict=True)):
            w = torch.cat([layer.weight, layer.bias[:, None]], dim=1).detach()
            self.m[index] = 0.9 * self.m[index] + 0.1 * (grad + TAU * w)
            if not (self.i == 0 and self.warm_started):
                estimate = cache["h"].T @ cache["h"] / cache["h"].shape[0]
                previous = self.A[index]
                self.A[index] = estimate if previous is None else 0.9 * previous + 0.1 * estimate
            a_lm = self.A[index] + self.root * torch.eye(len(self.A[index]), dtype=torch.float64)
            a_lms.append(a_lm)
            if self.i == 0:
                self.H_a[index] = torch.linalg.inv(a_lm)
            if self.lbfgs:
                left = torch.stack([_two_loop(c, self.pairs[index]) for c in self.m[index].T], 1)
            else:
                left = self.H_g[index] @ self.m[index]
            directions.append(-(left @ self.H_a[index]))
        trial = copy.deepcopy(self.model)
        with torch.no_grad():
            for layer, p in zip(_linears(trial), directions, strict=True):
                layer.weight += self.lr * p[:, :-1]
                layer.bias += self.lr * p[:, -1]
        new_caches, _ = _passes(trial, x, y)
        for index, (cache, new) in enumerate(zip(caches, new_caches, strict=True)):
            s = cache["a"].mean(0) - new["a"].mean(0)
            yy = cache["g"].mean(0) - new["g"].mean(0)
            self.s_bar[index] = 0.9 * self.s_bar[index] + 0.1 * s
            self.y_bar[index] = 0.9 * self.y_bar[index] + 0.1 * yy
            s, yy = self.s_bar[index].clone(), self.y_bar[index].clone()
            h_y = self._apply_h_g(index, yy)
            if not torch.dot(s, yy) / torch.dot(yy, h_y) > MU1:
                theta = (1 - MU1) * torch.dot(yy, h_y) / (torch.dot(yy, h_y) - torch.dot(s, yy))
                s = theta * s + (1 - theta) * h_y
            if not torch.dot(s, yy) / torch.dot(s, s) > self.root:
                theta = (1 - self.root) * torch.dot(s, s) / (torch.dot(s, s) - torch.dot(s, yy))
                yy = theta * yy + (1 - theta) * s
            g_k = cache["g"].mean(0)
            if self.lbfgs:
                bound = self.ratio * torch.dot(s, s) * torch.linalg.vector_norm(g_k)
                if torch.isfinite(torch.dot(s, s)) and torch.dot(yy, s) > bound:
                    self.pairs[index] = (self.pairs[index] + [(s, yy)])[-100:]
                else:
                    self.skipped += 1
            else:
                updated = _bfgs(self.H_g[index], s, yy, g_k, self.ratio)
                self.skipped += updated is None
                self.H_g[index] = self.H_g[index] if updated is None else updated
            a_bar = cache["h"].mean(0)
            s_a = self.H_a[index] @ a_bar
            updated = _bfgs(self.H_a[index], s_a, a_lms[index] @ s_a, a_bar, self.ratio)
            self.skipped += updated is None
            self.H_a[index] = self.H_a[index] if updated is None else updated
        with torch.no_grad():
            for layer, p in zip(layers, directions, strict=True):
                layer.weight += self.lr * p[:, :-1]
                layer.bias += self.lr * p[:, -1]
        self.i += 1

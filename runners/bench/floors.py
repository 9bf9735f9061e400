"""The FLOP floor of every method: the multiply-accumulates (MACs) each phase of a training step
must do, counted from the layer shapes and the schedule, and what the measured times make of
them.

A method's floor is the time its MACs would take at the rate SGD-m reaches on the same problem
in the same process (SGD-m's MACs over its measured time per step): floor time = MACs / rate.
"x floor" is a measured time over that floor time, so 1.0 means "as fast, per MAC, as the
forward and backward passes of plain SGD-m"; achieved GFLOP/s = 2 * MACs / seconds.

How the MACs are counted (BENCHMARKS.md, "How the floor is counted"), for a Linear or Conv2d
layer with R = N*T rows (N examples, T output positions: 1 for a Linear on (N, d) inputs, the
output pixels of a convolution), fan-in d_in (C_in*kh*kw for a convolution), fan-out d_out,
b = 1 with a bias (0 without), P = R * d_in * d_out the MACs of its forward product:

    forward and backward    P (forward) + P (weight gradient) + P (input gradient; not for a
                            layer whose input needs no gradient: the first layer)
    backward to outputs     the input gradients only, sum of P over the layers that have one
                            and run after the first layer whose output gradient is wanted
                            (KFAC's and TENGraD's sampled-label pass, K-BFGS's second pass:
                            they need dLoss/ds, not the weight gradients)
    symmetric Gram X^T X    R d^2 / 2 for X of R x d (one triangle)
    inverse (Cholesky)      d^3; Cholesky factor alone d^3 / 3; eigendecomposition 4 d^3
    product of a d x d matrix with a d x k one   d^2 k

and per method, with T1 = curvature_every and T2 = inverse_every, the statistics counted once
per T1 steps and the inversion once per T2 steps (the steady state: after the first T2 steps):

    KFAC       statistics   backward to outputs (fisher=sampled) + Gram of [a;1] (d_in+b) and
                            of g (d_out) per layer
               inversion    (d_in+b)^3 + d_out^3 per layer
               precond.     G^-1 M A^-1: d_out^2 (d_in+b) + d_out (d_in+b)^2 per layer
    Shampoo    statistics   per parameter of order k with modes d_1..d_k (D = prod d_i), per
                            mode of at most max_dim: G_(i) G_(i)^T, D d_i / 2
               inversion    4 d_i^3 per such mode (eigh; counted alike for coupled Newton,
                            whose iteration count depends on the matrix)
               precond.     m x_i P_i: D d_i per such mode
    TNT        statistics   a full backward (weight gradients of the sampled loss: input and
                            weight gradients, fisher=sampled) + every mode's Gram as Shampoo's
               inversion    d_i^3 per mode (Cholesky inverse)
               precond.     D d_i per mode
    K-BFGS     statistics   Gram of [a;1] per Linear layer (every T1 steps)
               second pass  forward + backward to outputs, every T2 steps (timed inside the
                            closure's forward_backward phase, so counted there)
               inversion    BFGS updates, every T2 steps: H_g 4 d_out^2 (Powell's H_g y and the
                            update's H y and two outer products), H_a 5 (d_in+b)^2 (s_a = H_a
                            a_bar, y_a = A s_a and the update); K-BFGS(L) keeps pairs instead:
                            Powell's H_g y from them, 4 p d_out for p pairs held
               precond.     H_g M H_a: d_out^2 (d_in+b) + d_out (d_in+b)^2; K-BFGS(L): H_g M
                            by the pairs' compact form, 4 p d_out (d_in+b), or, when fewer, H_g
                            formed from them, 4 p d_out^2 + d_out^2 (d_in+b)
                            (optimizers.quasi_newton.lbfgs_apply_macs), + d_out (d_in+b)^2
    TENGraD    statistics   backward to outputs (fisher=sampled) + the N x N Grams of A_tilde
                            and Gamma, N^2 (d_in+b+d_out) / 2 per layer (averaged
                            convolutions: the rows are the N examples), every T2 steps; the
                            exact convolution form: R d_out (d_in+b) to form the per-example
                            gradients and N^2 d_out (d_in+b) / 2 for their Gram
               inversion    Cholesky of the N x N matrix, N^3 / 3 per layer, every T2 steps
               precond.     U^T vec M and U z: 2 N d_out (d_in+b), + N^2 for the two
                            triangular solves, per layer, every step
    first-order (torch.optim) forward and backward only

Elementwise work (momentum, the update, activations, BatchNorm) is not counted: it is memory
traffic, not MACs. An optimizer this module has no rule for has no floor (NaN in the tables).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from optimizers.base import CurvatureOptimizer, Fisher
from optimizers.kbfgs import KBFGS, PAIRS_S, GradientInverse
from optimizers.kfac import KFAC
from optimizers.quasi_newton import lbfgs_apply_macs
from optimizers.shampoo import Shampoo
from optimizers.tengrad import ConvGradients, TENGraD
from optimizers.tensor_modes import ConvReshape, mode_shape
from optimizers.tnt import TNT

COUNTED_PHASES = ("forward_backward", "statistics", "inversion", "preconditioning")


@dataclass(frozen=True)
class LayerShape:
    """What the counts need of one Linear or Conv2d layer on a mini-batch."""

    name: str
    batch: int  # N
    positions: int  # T
    fan_in: int  # d_in
    fan_out: int  # d_out
    bias: bool
    input_gradient: bool  # whether a backward pass computes the gradient of its input

    @property
    def rows(self) -> int:
        return self.batch * self.positions

    @property
    def width(self) -> int:
        """d_in + b, the width of [a; 1]."""
        return self.fan_in + int(self.bias)

    @property
    def product(self) -> int:
        """MACs of the forward product, R d_in d_out."""
        return self.rows * self.fan_in * self.fan_out


def layer_shapes(model: nn.Module, inputs: Tensor) -> dict[str, LayerShape]:
    """{module name: LayerShape} of every Linear and Conv2d layer that runs in a forward pass
    of `inputs` (gradients enabled, so that each input's requires_grad is that of training)."""
    shapes: dict[str, LayerShape] = {}
    handles = []

    def recorder(name: str) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
            batch = args[0].shape[0]
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
                positions, fan_out = math.prod(output.shape[2:]), module.out_channels
            else:
                assert isinstance(module, nn.Linear)
                fan_in, fan_out = module.in_features, module.out_features
                positions = output.numel() // (batch * fan_out)
            shapes[name] = LayerShape(
                name, batch, positions, fan_in, fan_out, module.bias is not None,
                args[0].requires_grad,
            )  # fmt: skip

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            handles.append(module.register_forward_hook(recorder(name)))
    try:
        with torch.enable_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


# ---------------------------------------------------------------------------- building blocks
def forward_backward_macs(shapes: Iterable[LayerShape]) -> float:
    return sum(s.product * (2 + s.input_gradient) for s in shapes)


def forward_macs(shapes: Iterable[LayerShape]) -> float:
    return sum(s.product for s in shapes)


def backward_to_outputs_macs(shapes: dict[str, LayerShape], hooked: Iterable[str]) -> float:
    """The input gradients alone, of the layers that run after the first `hooked` one (in the
    forward pass's order, that of `shapes`): what a backward pass to the hooked layers'
    outputs needs. Nothing below the first hooked output is reached (K-BFGS's Linear head on
    a CNN backpropagates through the head alone)."""
    names = list(shapes)
    first = min(names.index(name) for name in hooked)
    return sum(s.product for s in list(shapes.values())[first + 1 :] if s.input_gradient)


def full_backward_macs(shapes: Iterable[LayerShape]) -> float:
    return sum(s.product * (1 + s.input_gradient) for s in shapes)


def gram_macs(rows: int, size: int) -> float:
    """X^T X for X of rows x size, one triangle."""
    return rows * size * size / 2


def inverse_macs(size: int) -> float:
    return float(size) ** 3


def eigh_macs(size: int) -> float:
    return 4.0 * float(size) ** 3


def cholesky_macs(size: int) -> float:
    return float(size) ** 3 / 3


def two_sided_macs(rows: int, columns: int) -> float:
    """L M R for M of rows x columns, L rows x rows, R columns x columns."""
    return rows * rows * columns + rows * columns * columns


# ---------------------------------------------------------------------------- per method
PhaseMacs = dict[str, float]


def _hooked(optimizer: CurvatureOptimizer) -> list[str]:
    """The names of the layers the method hooks (its capture's layers)."""
    return [layer.name for layer in optimizer.capture.layers]  # type: ignore[attr-defined]


def _named(optimizer: CurvatureOptimizer, shapes: dict[str, LayerShape]) -> list[LayerShape]:
    """The shapes of the layers the method hooks."""
    return [shapes[name] for name in _hooked(optimizer)]


def _parameters(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]


def _modes(p: Tensor, conv_reshape: ConvReshape) -> tuple[int, list[int]]:
    modes = list(mode_shape(p.shape, conv_reshape))
    return math.prod(modes), modes


def kfac_macs(optimizer: KFAC, shapes: dict[str, LayerShape]) -> PhaseMacs:
    layers = _named(optimizer, shapes)
    sampled = optimizer.fisher == Fisher.sampled
    statistics = backward_to_outputs_macs(shapes, _hooked(optimizer)) if sampled else 0.0
    statistics += sum(gram_macs(s.rows, s.width) + gram_macs(s.rows, s.fan_out) for s in layers)
    return {
        "statistics": statistics / optimizer.curvature_every,
        "inversion": sum(inverse_macs(s.width) + inverse_macs(s.fan_out) for s in layers)
        / optimizer.inverse_every,
        "preconditioning": sum(two_sided_macs(s.fan_out, s.width) for s in layers),
    }


def _mode_macs(
    optimizer: Shampoo | TNT, max_dim: float, root: Callable[[int], float]
) -> tuple[float, float, float]:
    """(statistics, roots or inverses, preconditioning) MACs of the modes of every parameter."""
    statistics = inversion = preconditioning = 0.0
    for p in _parameters(optimizer):
        size, modes = _modes(p, optimizer.conv_reshape)
        for dim in modes:
            if dim > max_dim:
                continue
            statistics += size * dim / 2
            inversion += root(dim)
            preconditioning += size * dim
    return statistics, inversion, preconditioning


def shampoo_macs(optimizer: Shampoo, shapes: dict[str, LayerShape]) -> PhaseMacs:
    statistics, inversion, preconditioning = _mode_macs(optimizer, optimizer.max_dim, eigh_macs)
    return {
        "statistics": statistics / optimizer.curvature_every,
        "inversion": inversion / optimizer.inverse_every,
        "preconditioning": preconditioning,
    }


def tnt_macs(optimizer: TNT, shapes: dict[str, LayerShape]) -> PhaseMacs:
    statistics, inversion, preconditioning = _mode_macs(optimizer, math.inf, inverse_macs)
    if optimizer.fisher == Fisher.sampled:
        statistics += full_backward_macs(shapes.values())
    return {
        "statistics": statistics / optimizer.curvature_every,
        "inversion": inversion / optimizer.inverse_every,
        "preconditioning": preconditioning,
    }


def _pairs_held(optimizer: KBFGS, layer: nn.Module) -> int:
    pairs = optimizer.state.get(layer.weight, {}).get(PAIRS_S)  # type: ignore[call-overload]
    return 0 if pairs is None else int(pairs.shape[0])


def kbfgs_macs(optimizer: KBFGS, shapes: dict[str, LayerShape]) -> PhaseMacs:
    every = optimizer.inverse_every
    layers = optimizer.capture.layers
    second_pass = forward_macs(shapes.values()) + backward_to_outputs_macs(
        shapes, _hooked(optimizer)
    )
    inversion = preconditioning = statistics = 0.0
    for layer in layers:
        s = shapes[layer.name]
        statistics += gram_macs(s.rows, s.width)
        inversion += 5.0 * s.width**2
        preconditioning += s.fan_out * s.width**2
        if optimizer.inverse == GradientInverse.bfgs:
            inversion += 4.0 * s.fan_out**2
            preconditioning += s.fan_out**2 * s.width
        else:
            pairs = _pairs_held(optimizer, layer.module)
            inversion += 4.0 * pairs * s.fan_out
            preconditioning += lbfgs_apply_macs(s.fan_out, s.width, pairs)
    return {
        "forward_backward": second_pass / every,
        "statistics": statistics / optimizer.curvature_every,
        "inversion": inversion / every,
        "preconditioning": preconditioning,
    }


def tengrad_macs(optimizer: TENGraD, shapes: dict[str, LayerShape]) -> PhaseMacs:
    every = optimizer.inverse_every
    sampled = optimizer.fisher == Fisher.sampled
    statistics = backward_to_outputs_macs(shapes, _hooked(optimizer)) if sampled else 0.0
    inversion = preconditioning = 0.0
    for s in _named(optimizer, shapes):
        n = s.batch
        if optimizer.conv_gradients == ConvGradients.exact and s.positions > 1:
            statistics += s.rows * s.fan_out * s.width + n * n * s.fan_out * s.width / 2
        else:
            statistics += n * n * (s.width + s.fan_out) / 2
        inversion += cholesky_macs(n)
        preconditioning += 2.0 * n * s.fan_out * s.width + n * n
    return {
        "statistics": statistics / every,
        "inversion": inversion / every,
        "preconditioning": preconditioning,
    }


RULES: tuple[tuple[type, Callable[..., PhaseMacs]], ...] = (
    (KFAC, kfac_macs),
    (Shampoo, shampoo_macs),
    (TNT, tnt_macs),
    (KBFGS, kbfgs_macs),
    (TENGraD, tengrad_macs),
)


def step_macs(optimizer: torch.optim.Optimizer, shapes: dict[str, LayerShape]) -> PhaseMacs | None:
    """MACs per training step in each of COUNTED_PHASES (the schedule's mean step), or None
    for a curvature method without a rule here."""
    method: PhaseMacs = {}
    for cls, rule in RULES:
        if isinstance(optimizer, cls):
            method = rule(optimizer, shapes)
            break
    else:
        if isinstance(optimizer, CurvatureOptimizer):
            return None
    macs = dict.fromkeys(COUNTED_PHASES, 0.0)
    macs["forward_backward"] = forward_backward_macs(shapes.values())
    for phase, value in method.items():
        macs[phase] += value
    return macs

"""What a curvature method sees of one Linear or Conv2d layer on a recorded step.

For a layer s = W a + b (a convolution is that map applied at each of T output positions to
the unfolded input patch a_t):

    activations()        a_tilde = [a; 1] (the 1 only when the layer has a bias),
                         shape (N, T, d_in [+1]); T = 1 for a Linear on (N, d_in) inputs
    output_gradients()   g_n = N * dLoss/ds_n for the mean mini-batch loss, i.e. the
                         gradient of example n's own loss, shape (N, T, d_out)
    pre_activations()    s, shape (N, T, d_out) (when the capture keeps outputs)

All three are in the weight's dtype, whatever the recorded tensors' dtype: under bfloat16
autocast (trainer.precision=bfloat16) a layer's input (every layer's but the first), output
and output gradient are bfloat16, and every curvature statistic computed from them (KFAC's A
and G, K-BFGS's A and means, TENGraD's Grams) must be computed and kept in float32 like the
weights. With float32 records the cast is a no-op (no copy).

Linear inputs of shape (N, ..., d_in) are read as N examples with prod(...) positions, like a
convolution's spatial positions. The gradient of the weights and bias as one matrix
[dW | db] of shape (d_out, d_in [+1]) is `as_matrix(weight_like, bias_like)`; `split_matrix`
undoes it. The column order of a conv weight matrix (C_in, kh, kw) matches F.unfold's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge


class LayerKind(str, Enum):
    linear = "linear"
    conv2d = "conv2d"


def unsupported_reason(module: nn.Module) -> str | None:
    """Why the capture cannot read `module` (None when it can)."""
    if isinstance(module, nn.Linear):
        return None
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"grouped convolution (groups={module.groups})"
        if module.padding_mode != "zeros":
            return f"padding_mode={module.padding_mode!r}"
        if isinstance(module.padding, str) and module.padding != "valid":
            return f"padding={module.padding!r}"
        return None
    return "no Kronecker-factored rule for this layer type"


def layer_kind(module: nn.Module) -> LayerKind:
    return LayerKind.conv2d if isinstance(module, nn.Conv2d) else LayerKind.linear


@dataclass(eq=False)
class CapturedLayer:
    """One hooked layer and what the hooks recorded on the latest recorded step."""

    name: str
    module: nn.Module
    kind: LayerKind
    inputs: Tensor | None = field(default=None, repr=False)  # the module's input, detached
    outputs: Tensor | None = field(default=None, repr=False)  # s, detached (keep_outputs)
    output_edge: GradientEdge | None = field(default=None, repr=False)
    output_grad: Tensor | None = field(default=None, repr=False)  # dLoss/ds, latest backward

    @property
    def weight(self) -> Tensor:
        return self.module.weight

    @property
    def bias(self) -> Tensor | None:
        return self.module.bias

    @property
    def has_bias(self) -> bool:
        return self.module.bias is not None

    @property
    def batch_size(self) -> int:
        if self.inputs is None:
            raise RuntimeError(f"layer {self.name!r} has no recorded forward pass")
        return self.inputs.shape[0]

    def clear(self) -> None:
        self.inputs = self.outputs = self.output_edge = self.output_grad = None

    def activations(self, ones_column: bool = True) -> Tensor:
        """a_tilde, (N, T, d_in [+1]): the inputs (conv: unfolded patches) with a column of
        ones when the layer has a bias (and `ones_column`: False leaves it to the caller,
        whose Gram adds it without this copy, optimizers.statistics)."""
        if self.inputs is None:
            raise RuntimeError(f"layer {self.name!r} has no recorded forward pass")
        inputs = self._in_weight_dtype(self.inputs)
        if self.kind == LayerKind.conv2d:
            conv = self.module
            assert isinstance(conv, nn.Conv2d)
            padding = 0 if conv.padding == "valid" else conv.padding
            patches = F.unfold(
                inputs, conv.kernel_size, conv.dilation, padding, conv.stride
            ).transpose(1, 2)  # (N, T, C_in*kh*kw)
        else:
            patches = inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])
        if not (self.has_bias and ones_column):
            return patches
        ones = torch.ones(*patches.shape[:2], 1, dtype=patches.dtype, device=patches.device)
        return torch.cat([patches, ones], dim=2)

    def output_gradients(self, scaled: bool = True) -> Tensor:
        """g, (N, T, d_out): N * dLoss/ds, each example's own loss gradient (the loss is a
        mean over the batch); `scaled` False: dLoss/ds itself, without the copy that the
        scaling makes (a Gram then takes N^2 into its own scale)."""
        if self.output_grad is None:
            raise RuntimeError(f"layer {self.name!r} has no recorded backward pass")
        # cast before scaling by N, so that the product is not rounded to bfloat16
        gradient = _positions_last(self._in_weight_dtype(self.output_grad), self.kind)
        return gradient * self.batch_size if scaled else gradient

    def pre_activations(self) -> Tensor:
        """s, (N, T, d_out), when the capture keeps outputs."""
        if self.outputs is None:
            raise RuntimeError(f"layer {self.name!r} kept no outputs (keep_outputs=False)")
        return _positions_last(self._in_weight_dtype(self.outputs), self.kind)

    def _in_weight_dtype(self, tensor: Tensor) -> Tensor:
        """`tensor` in the weight's dtype (itself when it already is): the bfloat16 records of
        an autocast forward pass become float32 before any statistic is computed."""
        return tensor.to(self.weight.dtype)


def _positions_last(tensor: Tensor, kind: LayerKind) -> Tensor:
    """(N, C, H, W) conv outputs -> (N, H*W, C); (N, ..., d) linear outputs -> (N, T, d)."""
    if kind == LayerKind.conv2d:
        return tensor.flatten(2).transpose(1, 2)
    return tensor.reshape(tensor.shape[0], -1, tensor.shape[-1])


def as_matrix(weight_like: Tensor, bias_like: Tensor | None) -> Tensor:
    """[W | b] as a (d_out, d_in [+1]) matrix (conv weights flattened to C_in*kh*kw)."""
    matrix = weight_like.reshape(weight_like.shape[0], -1)
    if bias_like is None:
        return matrix
    return torch.cat([matrix, bias_like.unsqueeze(1)], dim=1)


def layer_directions(
    layers: list[CapturedLayer],
    momenta: dict[Tensor, Tensor],
    direction: Callable[[CapturedLayer, Tensor], Tensor],
) -> dict[Tensor, Tensor]:
    """{parameter: D} of every layer whose parameters all have a momentum this step, with the
    layer's D = direction(layer, M) for M = [m_W | m_b], split back into weight and bias."""
    directions: dict[Tensor, Tensor] = {}
    for layer in layers:
        weight, bias = layer.weight, layer.bias
        if weight not in momenta or (bias is not None and bias not in momenta):
            continue  # no gradient this step
        matrix = as_matrix(momenta[weight], None if bias is None else momenta[bias])
        weight_direction, bias_direction = split_matrix(
            direction(layer, matrix), weight.shape, bias is not None
        )
        directions[weight] = weight_direction
        if bias is not None:
            directions[bias] = bias_direction
    return directions


def split_matrix(
    matrix: Tensor, weight_shape: torch.Size, has_bias: bool
) -> tuple[Tensor, Tensor | None]:
    """The inverse of `as_matrix`: (weight-shaped tensor, bias-shaped tensor or None)."""
    if not has_bias:
        return matrix.reshape(weight_shape), None
    return matrix[:, :-1].reshape(weight_shape), matrix[:, -1]

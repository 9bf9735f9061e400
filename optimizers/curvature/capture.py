"""Curvature capture: the one place where activations and output gradients are recorded.

Every Linear and Conv2d layer whose parameters are trained (or only the kinds a method asks
for: K-BFGS takes Linear layers alone) gets two permanent hooks:

- a forward-pre hook that keeps the layer's input (detached);
- a forward hook that keeps the autograd edge of the layer's output s and registers a tensor
  hook on s that keeps dLoss/ds whenever a backward pass goes through it.

Both do nothing unless a recording is open (`with capture.recording():`), the model is in
training mode and gradients are enabled, so steps off the statistics schedule, evaluation and
no-grad forwards cost one flag test per layer.

On a recorded step the closure's forward pass fills the inputs; its true-label backward pass
fills the output gradients (the empirical Fisher). For the sampled Fisher,
`backward_to_outputs(closure.outputs, closure.output_gradient(sampled=True))` then runs the
sampled-label backward pass, from the network's outputs with dLoss/doutputs at the sampled
labels (no sampled loss is computed, only its gradient), to the recorded output edges only:
autograd computes the output gradients of every layer and skips every weight gradient, and
`.grad` is left as the closure set it (the true-label gradient the update needs).
`check_complete()` makes a layer that did not take part an error.

Why not full-backward module hooks: they wrap each layer's output in a view, which an in-place
activation after the layer (nn.ReLU(inplace=True), common in VGG and ResNet code) is not
allowed to modify; and driving them needs a full backward pass, weight gradients included.
A tensor hook registered on s before any in-place change receives the gradient with respect
to s itself (PyTorch's documented rule for hooks and in-place ops), and the recorded edge is
s's own, so in-place activations are handled.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from optimizers.base import call_closure, sampled_output_gradient
from optimizers.curvature.layers import CapturedLayer, LayerKind, layer_kind, unsupported_reason

ALL_KINDS = (LayerKind.linear, LayerKind.conv2d)
KIND_NAMES = {LayerKind.linear: "Linear", LayerKind.conv2d: "Conv2d"}


class CurvatureCaptureError(RuntimeError):
    """A registered layer did not take part in a recorded step, or took part twice."""


class UnsupportedLayerWarning(UserWarning):
    """Layers with trained parameters that a curvature method cannot precondition."""


class CurvatureCapture:
    """Hooks on the layers of `kinds` (Linear and Conv2d by default) in `model` whose
    parameters are in `parameters`; other modules owning trained parameters are listed in
    `unsupported` as (module name, type name, reason). `keep_outputs` also keeps each layer's
    output s (the pre-activations K-BFGS reads)."""

    def __init__(
        self,
        model: nn.Module,
        parameters: Iterable[Tensor],
        keep_outputs: bool = False,
        kinds: tuple[LayerKind, ...] = ALL_KINDS,
    ) -> None:
        trained = {id(p) for p in parameters if p.requires_grad}
        self.keep_outputs = keep_outputs
        self.kinds = kinds
        self.layers: list[CapturedLayer] = []
        self.unsupported: list[tuple[str, str, str]] = []
        self._handles: list[RemovableHandle] = []
        self._recording = False
        for name, module in model.named_modules():
            own = list(module.parameters(recurse=False))
            owned_and_trained = [p for p in own if id(p) in trained]
            if not owned_and_trained:
                continue
            reason = unsupported_reason(module)
            if reason is None and layer_kind(module) not in kinds:
                reason = "no rule for this layer type in this method"
            if reason is None and len(owned_and_trained) != len(own):
                reason = "only some of its parameters are trained"
            if reason is not None:
                self.unsupported.append((name, type(module).__name__, reason))
                continue
            layer = CapturedLayer(name=name, module=module, kind=layer_kind(module))
            self.layers.append(layer)
            self._handles.append(module.register_forward_pre_hook(self._input_hook(layer)))
            self._handles.append(module.register_forward_hook(self._output_hook(layer)))

    # ------------------------------------------------------------------------------ hooks
    def _active(self, module: nn.Module) -> bool:
        return self._recording and module.training and torch.is_grad_enabled()

    def _input_hook(self, layer: CapturedLayer) -> Callable[[nn.Module, tuple[Tensor, ...]], None]:
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            if not self._active(module):
                return
            if layer.inputs is not None:
                raise CurvatureCaptureError(
                    f"layer {layer.name!r} ran more than once in one forward pass; "
                    "curvature capture needs each registered layer to run exactly once"
                )
            layer.inputs = args[0].detach()

        return hook

    def _output_hook(
        self, layer: CapturedLayer
    ) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], None]:
        def store_gradient(grad: Tensor) -> None:
            layer.output_grad = grad

        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
            if not self._active(module) or not output.requires_grad:
                return
            layer.output_edge = torch.autograd.graph.get_gradient_edge(output)
            output.register_hook(store_gradient)
            if self.keep_outputs:
                layer.outputs = output.detach()

        return hook

    # ------------------------------------------------------------------------------ use
    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record the forward passes run inside this block (previous records are cleared)."""
        self.clear()
        self._recording = True
        try:
            yield
        finally:
            self._recording = False

    def record_step(self, closure: Callable[[], Tensor], sampled: bool, method: str) -> Tensor:
        """Run the closure with the recording open; with `sampled`, also backpropagate the
        loss's gradient at labels drawn from the model to the layer outputs (their gradients
        become those of the sampled Fisher; `.grad` keeps the true-label gradient). Checks
        that every layer took part; returns the closure's loss (NonFiniteLoss when it is not
        finite)."""
        with self.recording():
            loss = call_closure(closure, retain_graph=sampled)
        if sampled:
            self.backward_to_outputs(*sampled_output_gradient(closure, method))
        self.check_complete()
        return loss

    def backward_to_outputs(self, root: Tensor, root_gradient: Tensor | None = None) -> None:
        """Backpropagate from `root` (a loss, or the network's outputs with `root_gradient`,
        dLoss/droot) to the recorded layer outputs only: fills every layer's output gradient
        without computing weight gradients or touching `.grad`; frees the graph."""
        missing = [layer.name for layer in self.layers if layer.output_edge is None]
        if missing:
            raise CurvatureCaptureError(self._missing_message("forward", missing))
        for layer in self.layers:
            layer.output_grad = None
        edges = [layer.output_edge for layer in self.layers]
        torch.autograd.grad(root, edges, grad_outputs=root_gradient, allow_unused=True)  # type: ignore[arg-type]

    def check_complete(self) -> None:
        """Every registered layer has an input and an output gradient on this step."""
        no_forward = [layer.name for layer in self.layers if layer.inputs is None]
        if no_forward:
            raise CurvatureCaptureError(self._missing_message("forward", no_forward))
        no_backward = [layer.name for layer in self.layers if layer.output_grad is None]
        if no_backward:
            raise CurvatureCaptureError(self._missing_message("backward", no_backward))

    @staticmethod
    def _missing_message(which: str, names: list[str]) -> str:
        return (
            f"layers registered for curvature had no {which} pass on a statistics step: "
            f"{', '.join(names)} (is the model in eval mode, or is a layer unused by forward?)"
        )

    def clear(self) -> None:
        for layer in self.layers:
            layer.clear()

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def warn_unsupported(self, method: str) -> None:
        """One warning listing the layer types `method` leaves to the plain momentum step."""
        if not self.unsupported:
            return
        counts: dict[tuple[str, str], int] = {}
        for _, type_name, reason in self.unsupported:
            counts[(type_name, reason)] = counts.get((type_name, reason), 0) + 1
        listed = "; ".join(
            f"{type_name} x{count} ({reason})" for (type_name, reason), count in counts.items()
        )
        kinds = " and ".join(KIND_NAMES[kind] for kind in self.kinds)
        warnings.warn(
            f"{method} preconditions {kinds} layers only; these take the plain momentum "
            f"step: {listed}",
            UnsupportedLayerWarning,
            stacklevel=3,
        )

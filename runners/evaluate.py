"""Evaluation over a whole split, in eval mode and without gradients: the full training loss
and the test loss (and accuracy for classifiers) of the papers' figures. Never timed as
training (runners.clock).

`batch_statistics=True` evaluates with BatchNorm normalising each evaluation batch with its
own statistics (training-mode BatchNorm) and leaves the running statistics as they were: the
trainer's evaluation at step 0, when those statistics are still their initial values.

`autocast=torch.bfloat16` (trainer.precision=bfloat16) runs each batch's forward pass and loss
under the same autocast as the training steps (runners.closure), so that train and test
metrics are of the same model arithmetic; the losses are summed in float64 and reported as
Python floats either way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from models.likelihoods import Likelihood
from runners.build import EvalSet
from runners.closure import forward_autocast


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


@contextmanager
def _batch_norm_on_batch_statistics(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers in training mode (batch statistics), their buffers restored after."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{name: b.clone() for name, b in layer.named_buffers()} for layer in layers]
    for layer in layers:
        layer.train()
    try:
        yield
    finally:
        for layer, buffers in zip(layers, saved, strict=True):
            layer.eval()
            for name, value in buffers.items():
                getattr(layer, name).copy_(value)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    likelihood: Likelihood,
    data: EvalSet,
    batch_size: int,
    batch_statistics: bool = False,
    autocast: torch.dtype | None = None,
) -> dict[str, float]:
    """Mean loss over the split (each batch's mean weighted by its size), and accuracy when the
    likelihood has classes."""
    was_training = model.training
    model.eval()
    total = data.inputs.shape[0]
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.inputs.device)
    correct_sum = torch.zeros((), dtype=torch.int64, device=data.inputs.device)
    has_classes = False
    with _batch_norm_on_batch_statistics(model) if batch_statistics else nullcontext():
        for start in range(0, total, batch_size):
            inputs = data.inputs[start : start + batch_size]
            targets = data.targets[start : start + batch_size]
            with forward_autocast(data.inputs.device, autocast):
                outputs = model(inputs)
                loss = likelihood.loss(outputs, targets)
            loss_sum += loss.double() * inputs.shape[0]
            correct = likelihood.correct(outputs, targets)
            if correct is not None:
                has_classes = True
                correct_sum += correct
    model.train(was_training)
    results = {"loss": (loss_sum / total).item()}
    if has_classes:
        results["accuracy"] = correct_sum.item() / total
    return results

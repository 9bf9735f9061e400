"""Evaluation over a whole split, in eval mode and without gradients: the full training loss
and the test loss (and accuracy for classifiers) of the papers' figures. Never timed as
training (runners.clock).

`batch_statistics=True` evaluates with BatchNorm normalising each evaluation batch with its
own statistics (training-mode BatchNorm) and leaves the running statistics as they were: the
trainer's evaluation at step 0, when those statistics are still their initial values.

`autocast=torch.bfloat16` (trainer.precision=bfloat16) runs each batch's forward pass and loss
under the same autocast as the training steps (runners.closure), so that train and test
metrics are of the same model arithmetic; the losses are summed in float64 and reported as
Python floats either way.

In a data-parallel run (`world`) the split is cut into the batches one process evaluates
(`batch_size` each) and every rank evaluates a contiguous run of whole batches (`rank_batches`);
the loss sums, correct counts and example counts are then summed over the ranks. Each batch
is thus computed exactly as one process computes it, and the metrics are one process's up to
the order of the float64 sum. A split of fewer batches than ranks leaves some ranks idle:
a smaller trainer.eval_batch_size spreads it over more."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from data.tensors import rank_slice
from models.likelihoods import Likelihood
from runners.build import EvalSet
from runners.closure import forward_autocast
from runners.distributed import SINGLE, World


def rank_batches(total: int, batch_size: int, world: World) -> range:
    """The start rows of the evaluation batches of this rank: the split's batches of
    `batch_size` (the last one shorter), shared out as contiguous runs of whole batches."""
    starts = range(0, total, batch_size)
    return starts[rank_slice(len(starts), world.rank, world.size)]


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
    world: World = SINGLE,
) -> dict[str, float]:
    """Mean loss over the split (each batch's mean weighted by its size), and accuracy when the
    likelihood has classes; over all ranks' batches in a data-parallel run."""
    was_training = model.training
    model.eval()
    total = data.inputs.shape[0]
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.inputs.device)
    correct_sum = torch.zeros((), dtype=torch.int64, device=data.inputs.device)
    has_classes = False
    with _batch_norm_on_batch_statistics(model) if batch_statistics else nullcontext():
        for start in rank_batches(total, batch_size, world):
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
    if world.distributed:
        # one reduction of the three sums (counts are exact in float64 below 2^53)
        sums = torch.stack([loss_sum, correct_sum.double(), loss_sum.new_tensor(has_classes)])
        loss_sum, correct, classes = world.all_reduce(sums).unbind()
        correct_sum, has_classes = correct.round().long(), bool(classes.item())
    results = {"loss": (loss_sum / total).item()}
    if has_classes:
        results["accuracy"] = correct_sum.item() / total
    return results

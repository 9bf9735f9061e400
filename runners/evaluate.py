"""Evaluation over a whole split, in eval mode and without gradients: the full training loss
and the test loss (and accuracy for classifiers) of the papers' figures. Never timed as
training (runners.clock)."""

from __future__ import annotations

import torch
from torch import nn

from models.likelihoods import Likelihood
from runners.build import EvalSet


@torch.no_grad()
def evaluate(
    model: nn.Module, likelihood: Likelihood, data: EvalSet, batch_size: int
) -> dict[str, float]:
    """Mean loss over the split (each batch's mean weighted by its size), and accuracy when the
    likelihood has classes."""
    was_training = model.training
    model.eval()
    total = data.inputs.shape[0]
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.inputs.device)
    correct_sum = torch.zeros((), dtype=torch.int64, device=data.inputs.device)
    has_classes = False
    for start in range(0, total, batch_size):
        inputs = data.inputs[start : start + batch_size]
        targets = data.targets[start : start + batch_size]
        outputs = model(inputs)
        loss_sum += likelihood.loss(outputs, targets).double() * inputs.shape[0]
        correct = likelihood.correct(outputs, targets)
        if correct is not None:
            has_classes = True
            correct_sum += correct
    model.train(was_training)
    results = {"loss": (loss_sum / total).item()}
    if has_classes:
        results["accuracy"] = correct_sum.item() / total
    return results

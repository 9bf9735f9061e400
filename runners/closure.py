"""The step protocol: the runner calls `optimizer.step(closure)` once per training step.

`StepClosure` is a torch.optim closure (calling it zeroes the gradients, runs the forward
pass, computes the true-label loss, backpropagates and returns the loss), so any torch.optim
optimizer, ours or a third party's, runs unchanged. The same object carries what
curvature-aware methods need, so they need no other hook into the runner:

    model                 the network being trained
    inputs, targets       this step's mini-batch (the same for every call of this step)
    likelihood            loss(outputs, targets) and sample(outputs) (models.likelihoods)
    outputs, loss         of the latest call; with `retain_graph = True` their graph is kept
                          so that a second backward pass can follow (the sampled Fisher)
    sampled_loss()        the loss at targets drawn from the model's predictive distribution,
                          on the latest outputs: backpropagate it for sampled-Fisher statistics
    forward()             the forward pass and loss alone, with its graph, no backward pass and
                          `.grad` untouched: for a pass that needs only the gradients of the
                          layer outputs (K-BFGS's second pass backpropagates to them alone)
    calls                 how many times the mini-batch was evaluated this step (the closure or
                          forward()). Calling either again evaluates the same mini-batch at the
                          current weights (K-BFGS's second pass).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.likelihoods import Likelihood
from optimizers.phases import phase


class StepClosure:
    def __init__(self, model: nn.Module, likelihood: Likelihood, inputs: Tensor, targets: Tensor):
        self.model = model
        self.likelihood = likelihood
        self.inputs = inputs
        self.targets = targets
        self.retain_graph = False
        self.outputs: Tensor | None = None
        self.loss: Tensor | None = None
        self.calls = 0

    def __call__(self) -> Tensor:
        with phase("forward_backward"), torch.enable_grad():
            self.model.zero_grad(set_to_none=True)
            loss = self.forward()
            loss.backward(retain_graph=self.retain_graph)
        return loss.detach()

    def forward(self) -> Tensor:
        """The true-label loss at the current weights, with its graph (no backward pass)."""
        with phase("forward_backward"), torch.enable_grad():
            outputs = self.model(self.inputs)
            loss = self.likelihood.loss(outputs, self.targets)
        self.outputs, self.loss = outputs, loss
        self.calls += 1
        return loss

    def sampled_loss(self) -> Tensor:
        """Mean loss at targets sampled from the model, on the latest outputs (call the closure
        with `retain_graph = True` first, then backpropagate this)."""
        if self.outputs is None:
            raise RuntimeError("sampled_loss() needs a forward pass: call the closure first")
        return self.likelihood.loss(self.outputs, self.likelihood.sample(self.outputs))

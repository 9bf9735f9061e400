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
    batch_size            the examples of this mini-batch (this rank's slice of the global
                          batch when data parallel)
    autocast              None (the default): everything in the parameters' precision; a
                          dtype (torch.bfloat16, trainer.precision=bfloat16): every call's
                          forward pass and loss, and sampled_loss(), run under
                          torch.autocast to that dtype on the inputs' device type

Under autocast the matmuls and convolutions run in bfloat16 and the ops on autocast's float32
list (cross-entropy, log-softmax, binary cross-entropy with logits; on CUDA also pow and sum)
in float32, so every likelihood's loss is float32 (the Gaussian's through its float32
targets on CPU); the backward pass runs outside autocast, as PyTorch
recommends, so the gradients of float32 parameters are float32. `outputs` are then the
forward pass's bfloat16 outputs: sampled_loss() draws its labels from them read in float32
and computes its loss on them under the same autocast. The curvature capture casts what it
records to the weights' precision (optimizers.curvature.layers), so statistics are float32.

Data parallel (torch.distributed initialised with more than one rank; docs/optimizers.md,
"Data parallel"): each rank's closure holds its own slice of n_r examples of the global
mini-batch of N = sum_r n_r. After the backward pass, calling the closure replaces every
parameter's `.grad` by the global batch's gradient and returns the global batch's loss, both
as the weighted mean sum_r (n_r / N) x_r over the ranks (optimizers.distributed.weighted_mean_:
one all-reduce for all gradients and the loss, the count riding along), so every rank takes
the same step from the same gradient and agrees on the divergence check. This is
DistributedDataParallel's gradient all-reduce, done here for every method rather than by
wrapping the model in DDP, because the curvature methods need their hooks on the bare module
and run backward passes that DDP's reducer does not support (the sampled-label pass to the
layer outputs, K-BFGS's second pass); for torch.optim's optimizers it is the same as DDP
(without DDP's overlap of the all-reduce with the backward pass). `forward()` returns this
rank's loss with its graph, and `sampled_loss()` this rank's sampled loss: their callers
reduce what they need (optimizers.base, optimizers.kbfgs). Without a process group, or with
one rank, nothing of this runs.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor, nn

from models.likelihoods import Likelihood
from optimizers.distributed import is_distributed, weighted_mean_
from optimizers.phases import phase


def forward_autocast(
    device: torch.device, dtype: torch.dtype | None
) -> AbstractContextManager[object]:
    """torch.autocast to `dtype` on `device`'s type, or no context at all when `dtype` is None
    (so the default path is exactly the code without autocast)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class StepClosure:
    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood,
        inputs: Tensor,
        targets: Tensor,
        autocast: torch.dtype | None = None,
    ):
        self.model = model
        self.likelihood = likelihood
        self.inputs = inputs
        self.targets = targets
        self.autocast = autocast
        self.retain_graph = False
        self.outputs: Tensor | None = None
        self.loss: Tensor | None = None
        self.calls = 0

    def __call__(self) -> Tensor:
        with phase("forward_backward"), torch.enable_grad():
            self.model.zero_grad(set_to_none=True)
            loss = self.forward()
            loss.backward(retain_graph=self.retain_graph)  # outside autocast, as PyTorch advises
        if is_distributed():
            return self._global_loss_and_gradients(loss.detach())
        return loss.detach()

    @property
    def batch_size(self) -> int:
        return len(self.inputs)

    def _global_loss_and_gradients(self, loss: Tensor) -> Tensor:
        """`.grad` <- the global batch's gradient and the global batch's loss, both the
        weighted mean over the ranks in one all-reduce (module docstring)."""
        gradients = [p.grad for p in self.model.parameters() if p.grad is not None]
        global_loss = loss.to(gradients[0].dtype if gradients else loss.dtype).clone()
        weighted_mean_([*gradients, global_loss.reshape(1)], self.batch_size)
        return global_loss.to(loss.dtype)

    def forward(self) -> Tensor:
        """The true-label loss at the current weights, with its graph (no backward pass)."""
        with phase("forward_backward"), torch.enable_grad(), self._autocast():
            outputs = self.model(self.inputs)
            loss = self.likelihood.loss(outputs, self.targets)
        self.outputs, self.loss = outputs, loss
        self.calls += 1
        return loss

    def sampled_loss(self) -> Tensor:
        """Mean loss at targets sampled from the model, on the latest outputs (call the closure
        with `retain_graph = True` first, then backpropagate this). Under the closure's
        autocast, as the true-label loss is, so that both losses are the same arithmetic."""
        if self.outputs is None:
            raise RuntimeError("sampled_loss() needs a forward pass: call the closure first")
        outputs = self.outputs
        # Under autocast the labels are drawn from the bfloat16 outputs read in float32: draws
        # in bfloat16 would be rounded, and bfloat16 Gaussian labels would make the loss
        # bfloat16 on CPU (autocast keeps pow and sum in float32 on CUDA only).
        labels = self.likelihood.sample(
            outputs if self.autocast is None else outputs.detach().float()
        )
        with self._autocast():
            return self.likelihood.loss(outputs, labels)

    def _autocast(self) -> AbstractContextManager[object]:
        return forward_autocast(self.inputs.device, self.autocast)

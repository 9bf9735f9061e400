"""The step protocol: the runner calls `optimizer.step(closure)` once per training step.

`StepClosure` is a torch.optim closure (calling it zeroes the gradients, runs the forward
pass, computes the true-label loss, backpropagates it and returns it; the backward pass starts
from the outputs with the loss's gradient in closed form, output_gradient() below), so any
torch.optim optimizer, ours or a third party's, runs unchanged. The same object carries what
curvature-aware methods need, so they need no other hook into the runner:

    model                 the network being trained
    inputs, targets       this step's mini-batch (the same for every call of this step)
    likelihood            loss(outputs, targets) and sample(outputs) (models.likelihoods)
    outputs, loss         of the latest call; with `retain_graph = True` their graph is kept
                          so that a second backward pass can follow (the sampled Fisher)
    forward_outputs()     the forward pass alone (the outputs with their graph, no loss, no
                          backward pass and `.grad` untouched): for a pass that needs only the
                          gradients of the layer outputs (K-BFGS's second pass backpropagates
                          to them alone)
    output_gradient(sampled)
                          dLoss/doutputs of the latest outputs in closed form (models.likelihoods),
                          at the mini-batch's targets or, with `sampled`, at targets drawn from
                          the model's predictive distribution: backpropagate it from `outputs`
                          (autograd.grad with grad_outputs) for sampled-Fisher statistics or
                          for K-BFGS's pairs; the loss itself is never computed for these passes
    calls                 how many times the mini-batch was evaluated this step (the closure or
                          forward_outputs()). Calling either again evaluates the same
                          mini-batch at the current weights (K-BFGS's second pass).
    batch_size            the examples of this mini-batch (this rank's slice of the global
                          batch when data parallel)
    autocast              None (the default): everything in the parameters' precision; a
                          dtype (torch.bfloat16, trainer.precision=bfloat16): every call's
                          forward pass and loss run under torch.autocast to that dtype on the
                          inputs' device type

Under autocast the matmuls and convolutions run in bfloat16 and the ops on autocast's float32
list (cross-entropy, log-softmax, binary cross-entropy with logits; on CUDA also pow and sum)
in float32, so every likelihood's loss is float32 (the Gaussian's through its float32
targets on CPU); the backward pass runs outside autocast, as PyTorch
recommends, so the gradients of float32 parameters are float32. `outputs` are then the
forward pass's bfloat16 outputs: output_gradient() reads them in float32 (where autocast puts
the loss), draws sampled labels from them there, and returns the gradient in the outputs'
bfloat16, as autograd would through autocast's cast. The curvature capture casts what it
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
(without DDP's overlap of the all-reduce with the backward pass). `forward_outputs()` returns
this rank's outputs with their graph, and `output_gradient()` this rank's gradient (of its
mean loss): their callers reduce what they need (optimizers.base, optimizers.kbfgs).
Without a process group, or with one rank, nothing of this runs.
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
            outputs = self.forward_outputs()
            with self._autocast():
                loss = self.likelihood.loss(outputs, self.targets)
            self.loss = loss
            # from the outputs with dLoss/doutputs in closed form, as the passes that need only
            # gradients start (K-BFGS's second pass): the same arithmetic, so two passes at the
            # same weights give bitwise equal gradients. Outside autocast, as PyTorch advises.
            outputs.backward(self.output_gradient(), retain_graph=self.retain_graph)
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

    def forward_outputs(self) -> Tensor:
        """The model's outputs at the current weights, with their graph (no loss, no backward
        pass)."""
        with phase("forward_backward"), torch.enable_grad(), self._autocast():
            outputs = self.model(self.inputs)
        self.outputs, self.loss = outputs, None
        self.calls += 1
        return outputs

    def output_gradient(self, sampled: bool = False) -> Tensor:
        """dLoss/doutputs on the latest outputs (models.likelihoods.output_gradient), at the
        mini-batch's targets or, with `sampled`, at targets sampled from the model. For the
        sampled Fisher, call the closure with `retain_graph = True` first, then backpropagate
        this from `outputs`."""
        if self.outputs is None:
            raise RuntimeError("output_gradient() needs a forward pass: call the closure first")
        outputs = self.outputs.detach()
        # Under autocast the loss is float32 (autocast's list), so its gradient is taken there
        # from the bfloat16 outputs read in float32 (sampled labels drawn in float32 too: in
        # bfloat16 they would be rounded), then cast back as autograd's would be.
        readable = outputs if self.autocast is None else outputs.float()
        targets = self.likelihood.sample(readable) if sampled else self.targets
        return self.likelihood.output_gradient(readable, targets).to(outputs.dtype)

    def _autocast(self) -> AbstractContextManager[object]:
        return forward_autocast(self.inputs.device, self.autocast)

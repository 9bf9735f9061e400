"""Negative log-likelihoods of the test problems, with sampling for the "true" Fisher.

Each loss is the mean over the mini-batch of the per-example loss summed over outputs, the
papers' convention:
- cross-entropy: -log softmax(z)_y;
- Bernoulli: binary cross-entropy with logits, summed over outputs (MNIST, CURVES, Fashion-MNIST
  autoencoders);
- Gaussian: 0.5 * ||z - y||^2, summed over outputs (FACES autoencoder): the negative
  log-density of N(z, I) up to a constant.

`sample(outputs)` draws targets from the model's own predictive distribution, one per example
(Categorical(softmax z), Bernoulli(sigmoid z), Normal(z, I)). Backpropagating the loss at those
targets gives the sampled-Fisher gradients (docs/optimizers.md, "The sampled ("true") Fisher");
the draw uses torch's global random state, which run checkpoints save and restore.

`output_gradient(outputs, targets)` is dLoss/dz in closed form, for the passes that need the
gradients and not the loss's value (the sampled-label pass, K-BFGS's second pass): with N
examples in the batch,
- cross-entropy: (softmax(z) - onehot(y)) / N;
- Bernoulli: (sigmoid(z) - y) / N;
- Gaussian: (z - y) / N.
Backpropagating it from the outputs gives the same gradients as backpropagating the loss, without
the loss's forward computation (on the MNIST autoencoder at batch 1000, the binary cross-entropy's
log-sigmoid of 784,000 logits: ~5 ms of a ~240 ms step on a 2-core CPU). A likelihood without a
closed form inherits the autograd of its loss.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical, Normal


class Likelihood(ABC):
    """loss(outputs, targets) -> scalar mean-over-batch loss; sample(outputs) -> targets."""

    name: str

    @abstractmethod
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor: ...

    @abstractmethod
    def sample(self, outputs: Tensor) -> Tensor: ...

    def output_gradient(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """dLoss/doutputs of `loss(outputs, targets)`, without a graph (by autograd here;
        the likelihoods below override it with their closed forms)."""
        with torch.enable_grad():
            leaf = outputs.detach().requires_grad_()
            (gradient,) = torch.autograd.grad(self.loss(leaf, targets), leaf)
        return gradient

    def correct(self, outputs: Tensor, targets: Tensor) -> Tensor | None:
        """Number of correct predictions in the batch, for likelihoods that have classes."""
        return None


class CrossEntropy(Likelihood):
    name = "cross_entropy"

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets)

    @torch.no_grad()
    def output_gradient(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """(softmax(z) - onehot(y)) / N for (N, classes) logits and class indices; other
        shapes and targets F.cross_entropy accepts (per-position logits, class probabilities)
        by the autograd of the loss."""
        if outputs.dim() != 2 or targets.dim() != 1:
            return super().output_gradient(outputs, targets)
        gradient = torch.softmax(outputs, dim=1)
        gradient[torch.arange(len(targets), device=targets.device), targets] -= 1.0
        return gradient.div_(outputs.shape[0])

    @torch.no_grad()
    def sample(self, outputs: Tensor) -> Tensor:
        # validate_args=False: the check of the logits is a host read on every sampled step
        # (a GPU sync); non-finite logits are caught by the optimizers' loss check anyway
        return Categorical(logits=outputs.detach(), validate_args=False).sample()

    def correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return (outputs.argmax(dim=1) == targets).sum()


class BernoulliLikelihood(Likelihood):
    name = "bernoulli"

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        summed = F.binary_cross_entropy_with_logits(outputs, targets, reduction="sum")
        return summed / outputs.shape[0]

    @torch.no_grad()
    def output_gradient(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """(sigmoid(z) - y) / N."""
        return torch.sigmoid(outputs).sub_(targets).div_(outputs.shape[0])

    @torch.no_grad()
    def sample(self, outputs: Tensor) -> Tensor:
        # 1[U < sigmoid(z)], U uniform: Bernoulli(sigmoid(z)) exactly, in half the time of
        # torch.bernoulli on CPU (9 ms saved per sampled step of the MNIST autoencoder at
        # batch 1000, whose 784 outputs per example are each drawn)
        logits = outputs.detach()
        return torch.rand_like(logits).lt_(torch.sigmoid(logits))


class GaussianLikelihood(Likelihood):
    name = "gaussian"

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return 0.5 * (outputs - targets).pow(2).sum() / outputs.shape[0]

    @torch.no_grad()
    def output_gradient(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """(z - y) / N."""
        return (outputs - targets).div_(outputs.shape[0])

    @torch.no_grad()
    def sample(self, outputs: Tensor) -> Tensor:
        return Normal(outputs.detach(), 1.0, validate_args=False).sample()


LIKELIHOODS: dict[str, type[Likelihood]] = {
    cls.name: cls for cls in (CrossEntropy, BernoulliLikelihood, GaussianLikelihood)
}


def make_likelihood(name: str) -> Likelihood:
    try:
        return LIKELIHOODS[name]()
    except KeyError:
        raise ValueError(
            f"Unknown likelihood {name!r}; choose from {sorted(LIKELIHOODS)}"
        ) from None

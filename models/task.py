"""The vocabulary shared by models, data sets and the config schema."""

from __future__ import annotations

from enum import Enum


class Task(str, Enum):
    """What a model predicts from a data set's inputs (each model class declares its TASK)."""

    classification = "classification"  # the labels; cross-entropy
    reconstruction = "reconstruction"  # the input itself; the data set's likelihood


class LikelihoodName(str, Enum):
    """Negative log-likelihoods (models.likelihoods): mean over the batch of the per-example
    loss summed over outputs."""

    cross_entropy = "cross_entropy"
    bernoulli = "bernoulli"  # binary cross-entropy with logits, for pixels in [0, 1]
    gaussian = "gaussian"  # 0.5 * squared error, for real-valued outputs

"""One look for every figure: each method keeps its name and colour across all plots, and
each problem and metric its label."""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib

DISPLAY_NAMES = {  # in the papers' order, which every legend and table keeps
    "sgd": "SGD-m",
    "sgdw": "SGDW",  # SGD-m with decoupled weight decay from m = 0 (optimizers.first_order)
    "adam": "Adam",
    # the papers' codes' Adam and RMSprop: second moment of the momentum (optimizers.first_order)
    "adam_on_momentum": "Adam on momentum",
    "rmsprop_on_momentum": "RMSprop on momentum",
    "kfac": "KFAC",
    "shampoo": "Shampoo",
    "tnt": "TNT",
    "kbfgs": "K-BFGS",
    "kbfgs_l": "K-BFGS(L)",
    "tengrad": "TENGraD",
    "tnt_ef": "TNT-EF",
}
# Variants of one optimizer class that the papers compare as separate methods, chosen by a
# config value: (optimizer, config column, value) -> method.
METHOD_VARIANTS = {("tnt", "config.optimizer.fisher", "empirical"): "tnt_ef"}

_FIXED_ORDER = list(DISPLAY_NAMES)
# tab10 for the first ten known methods (their colours never change when names are added
# at the end), then Dark2 and tab20b for more known methods and for unknown ones
_PALETTE = (
    matplotlib.colormaps["tab10"].colors
    + matplotlib.colormaps["Dark2"].colors
    + matplotlib.colormaps["tab20b"].colors
)

PROBLEM_TITLES = {
    "tnt_mnist_ae": "MNIST autoencoder",
    "tnt_faces_ae": "FACES autoencoder",
    "tnt_fmnist_ae": "Fashion-MNIST autoencoder",
    "kbfgs_mnist_ae": "MNIST autoencoder",
    "kbfgs_faces_ae": "FACES autoencoder",
    "kbfgs_curves_ae": "CURVES autoencoder",
    "kbfgs_fmnist_ae": "Fashion-MNIST autoencoder",
    "tnt_cifar10_resnet32": "CIFAR-10 ResNet-32",
    "tnt_cifar100_vgg16": "CIFAR-100 VGG16-BN",
    "tengrad_fmnist": "Fashion-MNIST CNN",
    "tengrad_cifar10": "CIFAR-10 ResNet-32",
    "demo": "demo: Fashion-MNIST autoencoder",
}

METRIC_LABELS = {
    "train/full_loss": "training loss",
    "train/loss_ema": "training loss (EMA of mini-batch losses)",
    "train/loss_ema_epoch_end": "training loss (mini-batch EMA)",
    "train/full_loss_l2": "training loss + ½τ‖w‖²",  # tau = 1e-5, said in the caption
    "test/loss": "test loss",
    "test/error": "test error (%)",
    "test/accuracy": "test accuracy (%)",
}
PERCENT_METRICS = ("test/error", "test/accuracy", "train/error", "train/accuracy")
AXIS_LABELS = {"epoch": "epoch", "time": "training time (s)", "process": "process time (s)"}


def display_name(method: str) -> str:
    return DISPLAY_NAMES.get(method, method)


def problem_title(problem: str) -> str:
    """ "tnt_mnist_ae" -> "MNIST autoencoder"; a split problem keeps its distinguishing
    settings: "tnt_mnist_ae[dataset.train_size=64]" -> "MNIST autoencoder [...]"."""
    experiment, bracket, settings = problem.partition("[")
    title = PROBLEM_TITLES.get(experiment, experiment)
    return f"{title} [{settings}" if bracket else title


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def colour(method: str) -> tuple[float, float, float]:
    """Known methods get fixed colours; others take the remaining ones by name."""
    if method in _FIXED_ORDER:
        return _PALETTE[_FIXED_ORDER.index(method) % len(_PALETTE)]
    spare = _PALETTE[len(_FIXED_ORDER) :] or _PALETTE
    return spare[sum(map(ord, method)) % len(spare)]


def sort_key(method: str) -> tuple[int, str]:
    """Known methods in the papers' order, then the rest by name."""
    known = _FIXED_ORDER.index(method) if method in _FIXED_ORDER else len(_FIXED_ORDER)
    return known, method


def ordered(methods: Iterable[str]) -> list[str]:
    """The distinct methods in the papers' order."""
    return sorted(set(methods), key=sort_key)

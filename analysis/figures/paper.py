"""The papers' curve figures (docs/problems.md, "Figures and tables to reproduce"), by name,
and the overview of whatever a sweep holds."""

from __future__ import annotations

from analysis.figures.common import LOSS
from analysis.figures.curves import CurveSpec
from analysis.results import Results
from analysis.selection import is_classifier
from analysis.style import ordered

TNT_METHODS = ("tnt", "kfac", "shampoo", "adam", "sgd")
KBFGS_METHODS = ("kbfgs", "kbfgs_l", "kfac", "adam", "sgd")

PAPER_FIGURES = {
    spec.name: spec
    for spec in (
        # TNT Figure 1: optimisation on the autoencoders, against epochs and time
        CurveSpec(
            "tnt_fig1",
            "TNT Figure 1: training loss of the autoencoders",
            ("tnt_mnist_ae", "tnt_faces_ae"),
            TNT_METHODS,
        ),
        # TNT Figure 2: generalisation; training loss and test error, 2 x 2 per problem
        CurveSpec(
            "tnt_fig2",
            "TNT Figure 2: training loss and test error of the CNNs",
            ("tnt_cifar10_resnet32", "tnt_cifar100_vgg16"),
            TNT_METHODS,
            (LOSS, "test/error"),
        ),
        # K-BFGS main figure: full training loss against epochs and time
        CurveSpec(
            "kbfgs_fig",
            "K-BFGS: training loss of the autoencoders",
            ("kbfgs_mnist_ae", "kbfgs_faces_ae", "kbfgs_curves_ae"),
            KBFGS_METHODS,
        ),
        # TENGraD: test accuracy and training loss against time
        CurveSpec(
            "tengrad_fig",
            "TENGraD: test accuracy and training loss against time",
            ("tengrad_fmnist", "tengrad_cifar10"),
            ("tengrad", "kfac", "sgd"),
            ("test/accuracy", LOSS),
            ("time",),
        ),
        # appendix: TNT with the sampled vs the empirical Fisher
        CurveSpec(
            "tnt_ef",
            "TNT vs TNT-EF: training loss of the autoencoders",
            ("tnt_mnist_ae", "tnt_faces_ae"),
            ("tnt", "tnt_ef"),
        ),
    )
}


def overview_spec(results: Results) -> CurveSpec:
    """Every problem and method of the sweep; test error too when a problem classifies."""
    runs = results.sweep.runs
    metrics = (LOSS, "test/error") if is_classifier(runs) else (LOSS,)
    return CurveSpec(
        "overview",
        f"All problems of {results.sweep.source}",
        tuple(results.sweep.problems),
        tuple(ordered(runs["method"])),
        metrics,
    )

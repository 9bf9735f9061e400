"""The papers' curve figures (docs/problems.md, "Figures and tables to reproduce"), by name,
and the overview of whatever a sweep holds.

By default each paper figure draws what its paper drew (analysis.papers): the TNT figures
the epoch-end EMA of the mini-batch losses (and the CNNs' test error), the K-BFGS figure the
full training loss + 0.5 tau ||w||^2, TENGraD's figure the full training loss; log y on every
panel of the TNT and K-BFGS figures, linear x; time in process seconds where every run drawn
trained on the CPU (Options.clock). Their methods are analysis.papers' lists."""

from __future__ import annotations

from analysis.figures.common import LOSS
from analysis.figures.curves import CurveSpec
from analysis.papers import (
    KBFGS,
    KBFGS_METHODS,
    TENGRAD,
    TENGRAD_METHODS,
    TNT,
    TNT_EF_METHODS,
    TNT_METHODS,
)
from analysis.results import Results
from analysis.selection import is_classifier
from analysis.style import ordered

PAPER_FIGURES = {
    spec.name: spec
    for spec in (
        # TNT Figure 1: optimisation on the autoencoders, against epochs and process time;
        # 1 x 2 panels per problem
        CurveSpec(
            "tnt_fig1",
            "TNT Figure 1: training loss of the autoencoders",
            ("tnt_mnist_ae", "tnt_faces_ae"),
            TNT_METHODS,
            log_y=True,
            paper_clock=TNT.clock,
        ),
        # TNT Figure 2: generalisation; training loss and test error, 2 x 2 per problem
        CurveSpec(
            "tnt_fig2",
            "TNT Figure 2: training loss and test error of the CNNs",
            ("tnt_cifar10_resnet32", "tnt_cifar100_vgg16"),
            TNT_METHODS,
            (LOSS, "test/error"),
            log_y=True,
            row_per_metric=True,
            paper_clock=TNT.clock,
        ),
        # K-BFGS main figure: full training loss + 0.5 tau ||w||^2 against epochs and time
        CurveSpec(
            "kbfgs_fig",
            "K-BFGS: training loss of the autoencoders",
            ("kbfgs_mnist_ae", "kbfgs_faces_ae", "kbfgs_curves_ae"),
            KBFGS_METHODS,
            log_y=True,
            paper_clock=KBFGS.clock,
        ),
        # TENGraD: test accuracy and training loss against time (no code: sobench's view)
        CurveSpec(
            "tengrad_fig",
            "TENGraD: test accuracy and training loss against time",
            ("tengrad_fmnist", "tengrad_cifar10"),
            TENGRAD_METHODS,
            ("test/accuracy", LOSS),
            ("time",),
            paper_clock=TENGRAD.clock,
        ),
        # appendix: TNT with the sampled vs the empirical Fisher
        CurveSpec(
            "tnt_ef",
            "TNT vs TNT-EF: training loss of the autoencoders",
            ("tnt_mnist_ae", "tnt_faces_ae"),
            TNT_EF_METHODS,
            log_y=True,
            paper_clock=TNT.clock,
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

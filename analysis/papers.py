"""What each paper selects and plots, in one place (the authors' code, as read in
docs/analysis.md, "The papers' figures"): which experiments are its problems, the training
loss it plots, how it chooses each method's setting, its clock, and the methods of its
figures.

- TNT (Ren & Goldfarb 2021; code renyiryry/tnt_neurips_2021): plots the epoch-end EMA
  (0.9/0.1) of the mini-batch training losses; chooses the autoencoders' learning rate by the
  lowest minimum of that curve, the CNNs' by the highest test accuracy; process time.
- K-BFGS (Goldfarb, Ren & Bahamou 2020; code renyiryry/kbfgs_neurips2020_public): plots the
  full training loss + 0.5 tau ||w||^2 (tau = 1e-5); its code has no selection rule (tuned by
  hand), so sobench takes the lowest value of that plotted quantity; process time.
- TENGraD (Soori et al.): no code published; sobench's full training loss, its rules and its
  wall clock.
Problems of no paper (e.g. `demo`) keep sobench's rules (analysis.selection).

`loss` choices, for figures and selection alike: "paper" (each problem's paper quantity
above, full loss for problems of no paper), "full" (the full training-set loss, sobench's
view), "ema" (the epoch-end EMA of the mini-batch losses). Classifiers are always chosen by
test accuracy (both sobench's rule and the TNT paper's).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import pandas as pd

from analysis.quantities import EMA_AT_EPOCH_ENDS, KBFGS_OBJECTIVE
from analysis.selection import (
    HIGHEST_TEST_ACCURACY,
    LOWEST_OF,
    LOWEST_TRAINING_LOSS,
    Rule,
    is_classifier,
)
from contract.records import FULL_TRAIN_LOSS, TRAIN_LOSS_EMA, WEIGHT_SQ_NORM

LossChoice = Literal["paper", "full", "ema"]
LOSS_CHOICES: tuple[LossChoice, ...] = ("paper", "full", "ema")
Clock = Literal["wall", "process"]

# ------------------------------------------------------------------------------ the methods
# The methods each paper figure draws (the legend keeps the order of
# analysis.style.DISPLAY_NAMES). A method without runs is named under the figure.
# "rmsprop_on_momentum" is the slot of the K-BFGS code's RMSprop (the only RMSprop the K-BFGS
# figure compares; torch.optim's is another algorithm).
# The papers' experiments run the authors' Adam (adam_on_momentum: conf/tuned/<experiment>/);
# their SGD-m keeps the name sgd (its class is SGDW where the authors' convention needs it).
TNT_METHODS = ("tnt", "kfac", "shampoo", "adam_on_momentum", "sgd")
TNT_EF_METHODS = ("tnt", "tnt_ef")
KBFGS_METHODS = ("kbfgs", "kbfgs_l", "kfac", "adam_on_momentum", "rmsprop_on_momentum", "sgd")
TENGRAD_METHODS = ("tengrad", "kfac", "sgd")


@dataclass(frozen=True)
class Paper:
    name: str
    experiments: tuple[str, ...]
    loss: str  # the training loss it plots (a Sweep.metrics column)
    autoencoder_why: str  # whose rule chooses its autoencoders' settings, and how
    classifier_why: str
    clock: Clock  # the clock of its time axis


TNT = Paper(
    "TNT",
    (
        "tnt_mnist_ae",
        "tnt_faces_ae",
        "tnt_fmnist_ae",
        "tnt_cifar10_resnet32",
        "tnt_cifar100_vgg16",
    ),
    EMA_AT_EPOCH_ENDS,
    "the TNT paper's rule: the authors' code picks the learning rate whose run has the lowest "
    "minimum of this curve (tuning_criterion 'train_minibatch_loss') and plots that curve",
    "the TNT paper's rule: the authors' code picks the learning rate with the highest test "
    "accuracy over the epochs (tuning_criterion 'test_acc')",
    "process",
)
KBFGS = Paper(
    "K-BFGS",
    ("kbfgs_mnist_ae", "kbfgs_faces_ae", "kbfgs_curves_ae", "kbfgs_fmnist_ae"),
    KBFGS_OBJECTIVE,
    "the K-BFGS authors' code has no selection rule (they tuned by hand), so sobench takes "
    "the lowest value of the quantity the K-BFGS figure plots",
    "sobench's rule for classifiers",
    "process",
)
TENGRAD = Paper(
    "TENGraD",
    ("tengrad_fmnist", "tengrad_cifar10"),
    FULL_TRAIN_LOSS,
    "sobench's rule for autoencoders (no TENGraD code is published)",
    "sobench's rule for classifiers (no TENGraD code is published)",
    "wall",
)
PAPERS = (TNT, KBFGS, TENGRAD)

# what a derived loss is computed from (analysis.quantities): said when it is missing
NEEDS = {EMA_AT_EPOCH_ENDS: TRAIN_LOSS_EMA, KBFGS_OBJECTIVE: WEIGHT_SQ_NORM}
CHOICE_METRICS = {"full": FULL_TRAIN_LOSS, "ema": EMA_AT_EPOCH_ENDS}


def experiment_of(problem: str) -> str:
    """ "tnt_mnist_ae[dataset.train_size=64]" -> "tnt_mnist_ae" (analysis.sweep's names)."""
    return problem.partition("[")[0]


def paper_of(problem: str) -> Paper | None:
    experiment = experiment_of(problem)
    return next((paper for paper in PAPERS if experiment in paper.experiments), None)


def loss_metric(problem: str, choice: LossChoice) -> str:
    """The training loss drawn (and selected by) for `problem` under `choice`."""
    if choice not in LOSS_CHOICES:
        raise ValueError(f"unknown loss {choice!r}: choose one of {', '.join(LOSS_CHOICES)}")
    if choice == "paper":
        paper = paper_of(problem)
        return paper.loss if paper else FULL_TRAIN_LOSS
    return CHOICE_METRICS[choice]


def _why(problem: str, choice: LossChoice, classifier: bool) -> str:
    paper = paper_of(problem)
    kind = "classifiers" if classifier else "autoencoders"
    if paper is None:
        return f"sobench's rule for {kind} ({experiment_of(problem)} is no paper's problem)"
    paper_why = paper.classifier_why if classifier else paper.autoencoder_why
    if classifier or choice == "paper" or CHOICE_METRICS[choice] == paper.loss:
        return paper_why
    return f"asked for with select={choice}, not the paper's rule ({paper_why})"


def problem_rule(runs: pd.DataFrame, problem: str, choice: LossChoice) -> Rule:
    """The rule of one problem (its runs) under `choice`. When some completed run lacks the
    rule's quantity (runs logged before model/weight_sq_norm existed), the whole problem falls
    back to the lowest full training loss, so that every method is chosen by the same rule,
    and the rule's text says why."""
    if is_classifier(runs):
        return replace(HIGHEST_TEST_ACCURACY, why=_why(problem, choice, classifier=True))
    rule = replace(LOWEST_OF[loss_metric(problem, choice)], why=_why(problem, choice, False))
    completed = runs[runs["status"] == "completed"]
    values = completed.get(rule.column)
    lacking = len(completed) if values is None else int(values.isna().sum())
    if rule.column == LOWEST_TRAINING_LOSS.column or not lacking:
        return rule
    needed = NEEDS.get(rule.metric, rule.metric)
    return replace(
        LOWEST_TRAINING_LOSS,
        why=f"instead of the {rule.text} ({rule.why}): {lacking} of {len(completed)} completed "
        f"runs did not log {needed}",
    )


def selection_rules(runs: pd.DataFrame, choice: LossChoice = "paper") -> dict[str, Rule]:
    """Per problem of `runs`, the rule under `choice` (see the module docstring)."""
    if runs.empty:
        return {}
    return {
        problem: problem_rule(of_problem, problem, choice)
        for problem, of_problem in runs.groupby("problem", sort=True)
    }

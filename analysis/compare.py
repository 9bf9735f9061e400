"""Compare optimizers on one problem: a table, and training loss against epochs and time.

    python -m analysis.compare runs/demo --figure figures/demo.png

Rows of the table are optimizers (medians over seeds): the final and best full training loss,
the best test loss (and accuracy for classifiers), the training time per step, and that time
relative to SGD-m. The ratio is only meaningful between runs of the same sweep on the same
machine (a `-m` multirun trains its jobs one after another in one process).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from analysis.load import load_metrics, load_summaries
from analysis.style import colour, display_name, sort_key

BASELINE = "sgd"
STATUS_COUNTS = ("completed", "diverged", "failed")


def comparison_table(summaries: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer, medians over its runs (seeds), sorted in the papers' order. Losses and
    accuracies leave out diverged and failed runs (their last evaluation is not a result);
    step times use every run that took steps (the cost of a step does not depend on it)."""
    results = {
        "final train loss": "final.train/full_loss",
        "best train loss": "best.train/full_loss",
        "best test loss": "best.test/loss",
        "best test accuracy": "best.test/accuracy",
        "epochs": "epochs",
        "training s": "time.train_s",
    }
    counts = pd.crosstab(summaries["optimizer"], summaries["status"])
    counts = counts.reindex(columns=list(STATUS_COUNTS), fill_value=0)
    counts.insert(0, "runs", summaries.groupby("optimizer").size())
    valid = summaries[~summaries["status"].isin(["diverged", "failed"])].groupby("optimizer")
    table = counts.join(
        pd.DataFrame(
            {name: valid[key].median() for name, key in results.items() if key in summaries}
        )
    )
    if "time.per_step_s" in summaries:
        table["ms / step"] = summaries.groupby("optimizer")["time.per_step_s"].median() * 1000.0
        if BASELINE in table.index and pd.notna(table.loc[BASELINE, "ms / step"]):
            table["step time / SGD-m"] = table["ms / step"] / table.loc[BASELINE, "ms / step"]
    table = table.dropna(axis=1, how="all")
    table = table.loc[sorted(table.index, key=sort_key)]
    table.index = [display_name(name) for name in table.index]
    table.index.name = "optimizer"
    return table


def epoch_curves(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Evaluation records (those holding `metric`) of runs that did not diverge or fail,
    median over seeds per (optimizer, epoch)."""
    records = metrics[~metrics["status"].isin(["diverged", "failed"])].dropna(subset=[metric])
    return (
        records.groupby(["optimizer", "epoch"])[[metric, "time/train_s"]]
        .median()
        .reset_index()
        .sort_values(["optimizer", "epoch"])
    )


def loss_figure(metrics: pd.DataFrame, metric: str = "train/full_loss", title: str = "") -> Figure:
    """Two panels: `metric` (log scale) against epochs and against training seconds."""
    curves = epoch_curves(metrics, metric)
    figure = Figure(figsize=(10, 4), layout="tight")
    by_epoch, by_time = figure.subplots(1, 2, sharey=True)
    for optimizer in sorted(curves["optimizer"].unique(), key=sort_key):
        curve = curves[curves["optimizer"] == optimizer]
        style = {"color": colour(optimizer), "label": display_name(optimizer), "marker": "."}
        by_epoch.plot(curve["epoch"], curve[metric], **style)
        by_time.plot(curve["time/train_s"], curve[metric], **style)
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("training time (s)")
    by_epoch.set_ylabel(metric.replace("train/full_loss", "training loss (full set)"))
    for axes in (by_epoch, by_time):
        axes.set_yscale("log")
        axes.grid(True, which="both", alpha=0.3)
    by_time.legend()
    if title:
        figure.suptitle(title)
    return figure


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="a folder of run directories, e.g. runs/demo")
    parser.add_argument("--figure", type=Path, help="write the loss figure here (.png, .pdf)")
    parser.add_argument("--metric", default="train/full_loss")
    args = parser.parse_args(argv)
    summaries = load_summaries(args.runs)
    if summaries.empty:
        parser.error(f"no run records (summary.json) under {args.runs}")
    print(comparison_table(summaries).to_markdown(floatfmt=".4g"))
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        figure = loss_figure(load_metrics(args.runs), args.metric, title=str(args.runs))
        figure.savefig(args.figure, dpi=120)
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()

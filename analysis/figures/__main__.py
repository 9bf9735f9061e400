"""Draw named figures of a sweep into PNG and PDF files.

    python -m analysis.figures tnt_fig1 --runs runs/
    python -m analysis.figures all --runs wandb:my-team/sobench --out figures/
    python -m analysis.figures tnt_fig1 --runs runs/ --problems tnt_fmnist_ae --band bootstrap
    python -m analysis.figures tnt_fig1 --runs runs/ --loss full --clock wall   # sobench's view

By default each paper figure draws what its paper drew, each method at the setting its
paper's rule chooses (--loss paper, analysis.papers); --loss full draws the full training
loss and chooses by it (--select chooses otherwise). --clock auto draws the papers' process
time where every run drawn trained on the CPU, the wall clock otherwise.

A figure whose problems are partly missing draws what there is and says what is missing
(under the panels and here); one with nothing to draw is reported with the problems it wants
and those the sweep has, and skipped. The exit status is 1 when no figure at all was drawn
(or the source cannot be read), 0 when at least one was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.aggregate import BANDS
from analysis.budgets import budget_warnings
from analysis.figures import FIGURE_NAMES, draw, wanted_problems
from analysis.figures.common import FORMATS, Options, add_view_arguments, save
from analysis.load import load_for_command
from analysis.results import Results
from analysis.tables import parse_targets


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.figures",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"figures: {', '.join(FIGURE_NAMES)}, all",
    )
    parser.add_argument("figures", nargs="+", choices=[*FIGURE_NAMES, "all"], metavar="figure")
    parser.add_argument(
        "--runs",
        default="runs",
        help="folder, wandb:entity/project or wandb-offline:folder (default: runs)",
    )
    parser.add_argument("--out", type=Path, default=Path("figures"), help="default: figures/")
    parser.add_argument("--format", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--band", default="minmax", choices=BANDS)
    add_view_arguments(parser)
    parser.add_argument("--problems", nargs="+", help="draw these problems instead")
    parser.add_argument("--methods", nargs="+", help="draw these methods instead")
    parser.add_argument("--target", nargs="*", default=[], help="problem=value (profile)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sweep = load_for_command(args.runs)
    if sweep is None:
        return 1
    results = Results.of(
        sweep, targets=parse_targets(args.target), select_by=args.select or args.loss
    )
    options = Options(
        band=args.band,
        loss=args.loss,
        clock=args.clock,
        problems=tuple(args.problems) if args.problems else None,
        methods=tuple(args.methods) if args.methods else None,
    )
    names = FIGURE_NAMES if "all" in args.figures else args.figures
    for problem, warning in budget_warnings(results.compared).items():
        print(f"{problem}: {warning}", file=sys.stderr)  # its figures compare unequal tuning
    drawn_any = False
    for name in names:
        drawn = draw(name, results, options)
        if drawn.figure is None:
            print(f"{name}: nothing to draw ({'; '.join(drawn.missing)})")
            print(f"  {problems_note(name, sweep.problems, options)}")
            continue
        drawn_any = True
        paths = save(drawn.figure, args.out, name, args.format)
        print(f"{name}: {', '.join(map(str, paths))}")
        for note in drawn.missing:
            print(f"  missing: {note}")
    if not drawn_any:
        # e.g. tnt_fig1 after `make demo`: a script or make target must not take that for
        # a figure written
        print(f"no figure drawn from {args.runs}", file=sys.stderr)
        return 1
    return 0


def problems_note(name: str, problems: list[str], options: Options) -> str:
    """Which problems the figure wanted and which the sweep has, with the options that draw
    the sweep's problems instead."""
    has = f"the sweep has {', '.join(problems)}"
    wanted = wanted_problems(name, options)
    if wanted is None:
        return f"{has}."
    hint = f"draw those with `{name} --problems {' '.join(problems)}`, or `overview`"
    return f"{name} wants {', '.join(wanted)}; {has} ({hint})."


if __name__ == "__main__":
    sys.exit(main())

"""Named figures of a sweep, as matplotlib Figures (no pyplot state): `draw(name, results)`.

    tnt_fig1 tnt_fig2 kbfgs_fig tengrad_fig tnt_ef   the papers' curve figures
    overview                                         every problem and method of the sweep
    seed_bands                                       each seed, the median and the band
    sensitivity                                      heat maps of the score over the grid
    profile                                          performance profiles of time to target
Command line: python -m analysis.figures <name or all> --runs <source>.
"""

from __future__ import annotations

from collections.abc import Callable

from analysis.figures.common import DEFAULT_OPTIONS, Drawn, Options
from analysis.figures.curves import curve_figure
from analysis.figures.paper import PAPER_FIGURES, overview_spec
from analysis.figures.profile import profile_figure
from analysis.figures.seeds import seed_bands_figure
from analysis.figures.sensitivity import sensitivity_figure
from analysis.results import Results

DRAWERS: dict[str, Callable[[Results, Options], Drawn]] = {
    **{
        name: (lambda results, options, spec=spec: curve_figure(results, spec, options))
        for name, spec in PAPER_FIGURES.items()
    },
    "overview": lambda results, options: curve_figure(results, overview_spec(results), options),
    "seed_bands": seed_bands_figure,
    "sensitivity": sensitivity_figure,
    "profile": profile_figure,
}
FIGURE_NAMES = tuple(DRAWERS)


def wanted_problems(name: str, options: Options = DEFAULT_OPTIONS) -> tuple[str, ...] | None:
    """The problems a named figure draws (a paper's figure, or --problems); None for the
    figures that draw whatever problems the sweep has."""
    if name in PAPER_FIGURES:
        return options.problems or PAPER_FIGURES[name].problems
    return None


def draw(name: str, results: Results, options: Options = DEFAULT_OPTIONS) -> Drawn:
    if name not in DRAWERS:
        raise KeyError(f"unknown figure {name!r}: choose one of {', '.join(FIGURE_NAMES)}")
    return DRAWERS[name](results, options)

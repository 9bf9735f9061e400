"""The benchmark's driver and command line (runners.bench's docstring says what it measures)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from runners.bench.floors import COUNTED_PHASES, LayerShape, layer_shapes, step_macs
from runners.bench.overhead import BASELINE, Overhead, harness_overhead
from runners.bench.problems import PROBLEMS, BenchProblem, build, optimizer_names, paper_schedule
from runners.bench.report import phases_figure, write_markdown
from runners.bench.scaling import run_ranks, scaling_markdown, scaling_tables
from runners.bench.timing import TIMED_PHASES, Contender
from runners.build import resolve_device
from runners.config_schema import Precision
from runners.distributed import SINGLE, World, distributed_world, launch_environment
from runners.environment import collect_environment, flush_denormals
from runners.trainer import AUTOCAST_DTYPES

# A name is conf/optimizer/<name>.yaml, or a variant of one, "<name>:<key>=<value>[:...]"
# (settings of that optimizer, YAML values): Shampoo's matmul-only coupled Newton roots, the
# GPU path, are timed beside its eigendecompositions.
ALL_OPTIMIZERS = (
    "sgd",
    "adam",
    "kfac",
    "shampoo",
    "shampoo:root_method=coupled_newton",
    "tnt",
    "kbfgs",
    "kbfgs_l",
    "tengrad",
)
SCHEDULES = {"paper": None, "every-step": (1, 1)}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchSettings:
    problems: tuple[BenchProblem, ...] = tuple(PROBLEMS.values())
    optimizers: tuple[str, ...] = ALL_OPTIMIZERS
    schedule: tuple[int, int] | None = None  # None: each problem's paper schedule
    rounds: int | None = None  # None: each problem's own (BenchProblem.rounds)
    warmup_steps: int = 1
    device: str = "cpu"
    overhead: bool = True  # measure the harness overhead on the first problem
    overhead_rounds: int = 11
    nproc: int = 1  # > 1: also as that many data-parallel ranks (runners.bench.scaling)
    precision: str = "float32"  # trainer.precision of every step: float32 or bfloat16 autocast
    # (key, YAML value) set on every optimizer that has the key, e.g. matmul_precision
    optimizer_settings: tuple[tuple[str, str], ...] = ()


@dataclass
class BenchResult:
    settings: BenchSettings
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    # per problem: each optimizer's MACs, achieved GFLOP/s and x floor by phase (floors.py)
    floors: dict[str, pd.DataFrame] = field(default_factory=dict)
    schedules: dict[str, tuple[int, int]] = field(default_factory=dict)
    overhead: Overhead | None = None
    environment: dict[str, object] = field(default_factory=dict)


def measure_problem(
    problem: BenchProblem,
    settings: BenchSettings,
    schedule: tuple[int, int] | None,
    world: World = SINGLE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per optimizer (BASELINE first) of the interleaved, schedule-weighted timings
    with the floor ratios, and of the per-phase MACs, GFLOP/s and x floor; `schedule` None:
    each optimizer's paper schedule on the problem (paper_schedule)."""
    names = [BASELINE, *(name for name in settings.optimizers if name != BASELINE)]
    contenders = []
    for name in names:
        base, variant = split_variant(name)
        own = schedule or paper_schedule(problem, base)
        built = build(
            problem, base, own, settings.device, settings.optimizer_settings + variant, world
        )
        epoch = built.batches.epoch(0)
        batches = [epoch.batch(index) for index in range(built.batches.steps_per_epoch)]
        autocast = AUTOCAST_DTYPES[Precision(settings.precision)]
        contenders.append(Contender(name, built, batches, autocast=autocast))
    shapes = problem_shapes(contenders[0])
    for contender in contenders:
        contender.warm_up(settings.warmup_steps)
    for _ in range(settings.rounds or problem.rounds):
        for contender in contenders:
            contender.run_round()
    keep = BASELINE in settings.optimizers
    macs = {
        contender.name: step_macs(contender.built.optimizer, shapes) for contender in contenders
    }
    return results_table(contenders, macs, keep), floors_table(contenders, macs, keep)


def problem_shapes(contender: Contender) -> dict[str, LayerShape]:
    """The layer shapes of the problem's model on its first batch (in eval mode, so that no
    BatchNorm statistics move; the shapes are those of training)."""
    model = contender.built.model
    model.eval()
    try:
        return layer_shapes(model, contender.batches[0][0])
    finally:
        model.train()


def split_variant(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """("shampoo", (("root_method", "coupled_newton"),)) of "shampoo:root_method=coupled_newton";
    (name, ()) of a plain name."""
    base, *settings = name.split(":")
    return base, tuple(key_value(setting) for setting in settings)


def paired_ratio(contender: Contender, baseline: Contender) -> float:
    """The median over rounds of the contender's time per step over the baseline's in the
    same round: pairing the rounds cancels the machine's drifts between them."""
    ratios = [
        sample / reference
        for sample, reference in zip(contender.samples_s, baseline.samples_s, strict=True)
    ]
    return statistics.median(ratios)


def total_macs(macs: dict[str, float] | None) -> float:
    return math.nan if macs is None else sum(macs.values())


def results_table(
    contenders: list[Contender],
    macs: dict[str, dict[str, float] | None],
    keep_baseline: bool = True,
) -> pd.DataFrame:
    """Timings, ratio to SGD-m, the floor's ratio to SGD-m's MACs and the time over the floor
    (the ratio to SGD-m over the floor's: floors.py), phases, kinds of steps and memory."""
    baseline = contenders[0]
    assert baseline.name == BASELINE
    baseline_macs = total_macs(macs[BASELINE])
    rows = []
    for contender in contenders:
        if contender is baseline and not keep_baseline:
            continue
        kinds = contender.kind_medians_s()
        optimizer = contender.built.optimizer
        row: dict[str, object] = {
            "optimizer": contender.name,
            "T1/T2": (
                f"{optimizer.curvature_every}/{optimizer.inverse_every}"
                if hasattr(optimizer, "inverse_every")
                else ""
            ),
            "ms/step": 1e3 * contender.median_s,
            f"x {BASELINE}": paired_ratio(contender, baseline),
            "spread %": 100.0 * contender.spread,
            f"floor x {BASELINE}": total_macs(macs[contender.name]) / baseline_macs,
        }
        row["x floor"] = row[f"x {BASELINE}"] / row[f"floor x {BASELINE}"]
        for phase, seconds in contender.phase_means_s().items():
            row[f"{phase} ms"] = 1e3 * seconds
        for kind in ("refresh", "statistics", "plain"):
            row[f"{kind} step ms"] = 1e3 * kinds[kind] if kind in kinds else float("nan")
        row["state MB"] = contender.state_bytes / 2**20
        row["peak MB"] = contender.peak_bytes / 2**20
        rows.append(row)
    return pd.DataFrame(rows)


def floors_table(
    contenders: list[Contender],
    macs: dict[str, dict[str, float] | None],
    keep_baseline: bool = True,
) -> pd.DataFrame:
    """Per optimizer and counted phase: GMAC per step, the achieved GFLOP/s (2 * MACs over
    the phase's measured seconds per step) and x floor (those seconds over the MACs' time at
    SGD-m's rate, SGD-m's MACs per second of its whole step)."""
    baseline = contenders[0]
    rate = total_macs(macs[BASELINE]) / baseline.median_s
    rows = []
    for contender in contenders:
        if contender is baseline and not keep_baseline:
            continue
        counted = macs[contender.name]
        seconds = contender.phase_means_s()
        row: dict[str, object] = {"optimizer": contender.name}
        for phase in COUNTED_PHASES:
            phase_macs = math.nan if counted is None else counted[phase]
            has_work = phase_macs > 0 and seconds[phase] > 0
            row[f"{phase} GMAC"] = phase_macs / 1e9
            row[f"{phase} GFLOP/s"] = (
                2 * phase_macs / seconds[phase] / 1e9 if has_work else math.nan
            )
            row[f"{phase} x floor"] = seconds[phase] * rate / phase_macs if has_work else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def benchmark(settings: BenchSettings, world: World = SINGLE) -> BenchResult:
    """Every problem of `settings`; as one rank of a data-parallel group when `world` is one
    (each rank on its slice of every global mini-batch)."""
    device = world.device or resolve_device(settings.device)
    result = BenchResult(settings, environment=collect_environment(device))
    for problem in settings.problems:
        schedule = settings.schedule or problem.schedule
        # a problem can take minutes (VGG16-BN's KFAC refresh alone ~13 s on a 2-core CPU):
        # say what runs, so that a long benchmark is never silent
        log.info(
            "benchmark problem %s (%s, schedule %d/%d): %s",
            problem.name,
            problem.describe(),
            *schedule,
            ",".join(settings.optimizers),
        )
        start = time.perf_counter()
        torch.manual_seed(0)
        result.tables[problem.name], result.floors[problem.name] = measure_problem(
            problem, settings, settings.schedule, world
        )
        result.schedules[problem.name] = schedule
        log.info(
            "benchmark problem %s done in %.1f s (%s)",
            problem.name,
            time.perf_counter() - start,
            ",".join(settings.optimizers),
        )
    if settings.overhead and settings.problems and not world.distributed:
        result.overhead = harness_overhead(
            settings.problems[0], settings.device, settings.overhead_rounds
        )
    return result


def write_tables(result: BenchResult, out: Path) -> None:
    """bench.csv (the timings) and floors.csv (MACs, GFLOP/s and x floor by phase)."""
    for name, tables in (("bench.csv", result.tables), ("floors.csv", result.floors)):
        pd.concat(
            [table.assign(problem=problem) for problem, table in tables.items()],
            ignore_index=True,
        ).to_csv(out / name, index=False)


def parse_schedule(text: str) -> tuple[int, int] | None:
    if text in SCHEDULES:
        return SCHEDULES[text]
    try:
        curvature_every, inverse_every = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"schedule {text!r}: paper, every-step or T1/T2 (e.g. 10/100)"
        ) from None
    return curvature_every, inverse_every


def _schedules() -> dict[str, tuple[int, int]]:
    """Each problem's paper schedule (curvature_every, inverse_every)."""
    return {name: problem.schedule for name, problem in PROBLEMS.items()}


def key_value(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


def names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def main(argv: list[str] | None = None) -> None:
    flush_denormals()  # as the runner does (runners.environment), before any parallel work
    defaults = BenchSettings()
    paper_schedules = ", ".join(f"{name} {t1}/{t2}" for name, (t1, t2) in _schedules().items())
    parser = argparse.ArgumentParser(
        prog="python -m runners.bench", description="Cost benchmark of every optimizer."
    )
    parser.add_argument("--problems", type=names, default=tuple(PROBLEMS), help=", ".join(PROBLEMS))
    parser.add_argument(
        "--optimizers",
        type=names,
        default=defaults.optimizers,
        help=f"comma-separated names of conf/optimizer/: {', '.join(optimizer_names())}, or "
        "variants <name>:<key>=<value>[:<key>=<value>...] "
        f"(default: {','.join(defaults.optimizers)}; SGD-m is always measured, as the baseline "
        "of the ratios)",
    )
    parser.add_argument(
        "--schedule",
        type=parse_schedule,
        default=None,
        metavar="{paper,every-step,T1/T2}",
        help=f"paper: each problem's ({paper_schedules}; the default); every-step: 1/1; "
        "T1/T2: curvature_every/inverse_every for every optimizer, e.g. 10/100",
    )
    parser.add_argument("--rounds", type=int, default=None, help="default: each problem's")
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--batch-size", type=int, default=None, help="override every problem's")
    parser.add_argument(
        "--override",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every problem, e.g. model.encoder_sizes=[16,8]",
    )
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--set",
        dest="optimizer_settings",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an optimizer setting for every optimizer that has it, e.g. matmul_precision=bfloat16",
    )
    parser.add_argument(
        "--precision",
        choices=[precision.value for precision in Precision],
        default=defaults.precision,
        help="trainer.precision: the forward pass and loss under bfloat16 autocast, or not",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="also run as this many data-parallel processes at the same global batch "
        "(torchrun; gloo on CPU, one GPU each on CUDA) and report the speed-up and efficiency",
    )
    parser.add_argument("--no-overhead", action="store_true", help="skip the harness overhead")
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    args = parser.parse_args(argv)
    unknown = [name for name in args.problems if name not in PROBLEMS]
    if unknown:
        parser.error(f"unknown problem(s) {', '.join(unknown)}; choose from {', '.join(PROBLEMS)}")
    accepted = optimizer_names()
    try:
        unknown = [name for name in args.optimizers if split_variant(name)[0] not in accepted]
    except argparse.ArgumentTypeError as error:
        parser.error(f"--optimizers: {error}")
    if unknown:
        choices = ", ".join(accepted)
        parser.error(f"unknown optimizer(s) {', '.join(unknown)}; choose from {choices}")
    # the progress of each problem (benchmark's log), unless the caller configured logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    problems = tuple(
        dataclasses.replace(
            PROBLEMS[name],
            batch_size=args.batch_size or PROBLEMS[name].batch_size,
            overrides=PROBLEMS[name].overrides + tuple(args.overrides),
        )
        for name in args.problems
    )
    settings = BenchSettings(
        problems=problems,
        optimizers=args.optimizers,
        schedule=args.schedule,
        rounds=args.rounds,
        warmup_steps=args.warmup_steps,
        device=args.device,
        overhead=not args.no_overhead,
        optimizer_settings=tuple(args.optimizer_settings),
        precision=args.precision,
        nproc=args.nproc,
    )
    given = sys.argv[1:] if argv is None else argv
    args.out.mkdir(parents=True, exist_ok=True)
    launched = launch_environment()
    if launched is not None and launched.world_size > 1:  # one rank of --nproc's run
        with distributed_world(args.device) as world:
            ranks_result = benchmark(settings, world)
            if world.is_main:
                write_tables(ranks_result, args.out)
        return
    result = benchmark(settings)
    if args.nproc > 1:
        scaling = scaling_tables(result.tables, run_ranks(given, args.nproc), args.nproc)
    command = " ".join(["python -m runners.bench", *(shlex.quote(arg) for arg in given)])
    text = write_markdown(result, command, args.out / "bench.md")
    if args.nproc > 1:
        text += "\n" + scaling_markdown(scaling, args.nproc)
        (args.out / "bench.md").write_text(text)
        pd.concat(
            [table.assign(problem=name) for name, table in scaling.items()], ignore_index=True
        ).to_csv(args.out / "scaling.csv", index=False)
    write_tables(result, args.out)
    phases_figure(result, TIMED_PHASES).savefig(args.out / "phases.png", dpi=120)
    print(text)
    written = ", ".join(str(args.out / name) for name in ("bench.md", "bench.csv", "floors.csv"))
    print(f"written: {written}, {args.out / 'phases.png'}")

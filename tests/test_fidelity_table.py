"""docs/fidelity.md says what the configs compose, for every experiment and tuned optimizer.

The page has one table per (experiment, optimizer) under a heading `#### <experiment> /
<optimizer>`, with the rows of ROWS and the columns setting | authors | source | sobench |
verdict. In the sobench column, every code span `key=value` names a value of the config that
`python -m runners.train experiment=<experiment> optimizer=<optimizer>` composes, under its
dotted key (`optimizer.lr=0.0003`, `trainer.max_epochs=null`, `model.encoder_sizes=[1000,
500, 250, 30]`). The tests check:

- every experiment of conf/experiment/ but `demo` has tables, exactly one for each of its
  tuned optimizers (conf/tuned/<experiment>/<optimizer>.yaml), so a new tuned file fails
  until the page has its table;
- every table has exactly the rows of ROWS, in order, every cell filled, and a verdict that
  starts with "same", "differs" or "not published";
- every `key=value` span equals the composed value (numbers numerically, lists element by
  element, strings, booleans and null exactly), so a changed config value fails until its row
  says the new value (and whether the authors did the same);
- every value of the composed optimizer and model, and the data set, budget and schedule
  values that apply, is named by some span of its table, so a new setting cannot go unlisted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR, REPO, compose_config

PAGE = REPO / "docs/fidelity.md"
ROWS = (
    "architecture",
    "loss and reduction",
    "batch size",
    "budget and clock",
    "lr",
    "damping / eps",
    "T1/T2 and schedule",
    "step 0 after the warm start",
    "statistics decay",
    "warm start",
    "momentum convention",
    "weight decay / L2",
    "LR schedule",
    "data preprocessing",
    "selection rule",
    "plotted quantity",
)
# rows that always correspond to config values: their sobench cell must hold a span
ROWS_WITH_VALUES = (
    "architecture",
    "batch size",
    "budget and clock",
    "lr",
    "momentum convention",
    "weight decay / L2",
    "LR schedule",
    "data preprocessing",
)
VERDICTS = ("same", "differs", "not published")
NOT_PAPER_EXPERIMENTS = ("demo",)
COLUMNS = ("setting", "authors", "source", "sobench", "verdict")

HEADING = re.compile(r"^#{2,6}\s+(?P<experiment>[\w-]+) / (?P<optimizer>[\w-]+)\s*$")
ANY_HEADING = re.compile(r"^#{1,6}\s")
CELL_BORDER = re.compile(r"(?<!\\)\|")  # a `|` that is not written `\|`
SEPARATOR = re.compile(r"^\|?\s*:?-{3,}")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
ROOTS = ("optimizer", "trainer", "model", "dataset")
KEY_VALUE = re.compile(
    r"^(?P<key>(?:" + "|".join(ROOTS) + r")(?:\.[A-Za-z_][A-Za-z0-9_]*)+)=(?P<value>\S.*)$"
)


@dataclass
class Row:
    setting: str
    cells: dict[str, str]
    line: int


@dataclass
class Table:
    experiment: str
    optimizer: str
    line: int
    rows: list[Row] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.experiment} / {self.optimizer}"


# ------------------------------------------------------------------------------ parsing
def split_row(line: str) -> list[str]:
    """The cells of a markdown table row (`\\|` stays inside a cell)."""
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|") and not text.endswith("\\|"):
        text = text[:-1]
    return [cell.strip() for cell in CELL_BORDER.split(text)]


def parse_tables(text: str) -> list[Table]:
    """Every table under a `<experiment> / <optimizer>` heading, with its data rows."""
    tables: list[Table] = []
    current: Table | None = None
    header_seen = False
    for number, line in enumerate(text.splitlines(), start=1):
        heading = HEADING.match(line)
        if heading:
            current = Table(heading["experiment"], heading["optimizer"], number)
            tables.append(current)
            header_seen = False
            continue
        if ANY_HEADING.match(line):
            current = None
            continue
        if current is None or not line.lstrip().startswith("|"):
            continue
        if SEPARATOR.match(line.strip()):
            continue
        cells = split_row(line)
        if not header_seen:
            header_seen = True
            assert tuple(cell.lower() for cell in cells) == COLUMNS, (
                f"docs/fidelity.md:{number}: the table of {current.name} must have the columns "
                f"{' | '.join(COLUMNS)}, not {' | '.join(cells)}"
            )
            continue
        assert len(cells) == len(COLUMNS), (
            f"docs/fidelity.md:{number}: {len(cells)} cells instead of {len(COLUMNS)} "
            f"(write a `|` inside a cell as `\\|`)"
        )
        current.rows.append(Row(cells[0], dict(zip(COLUMNS, cells, strict=True)), number))
    return tables


def split_top_level(text: str) -> list[str]:
    """`a, [b, c], d` -> ["a", "[b, c]", "d"]."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def parse_value(text: str) -> Any:
    """A span's value: [a, b] a list, null None, true/false booleans, numbers, else a string."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [parse_value(part) for part in split_top_level(inner)] if inner else []
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def key_values(cell: str) -> tuple[list[tuple[str, Any, str]], list[str]]:
    """The (key, value, span) of every `key=value` span of a cell, and the spans that hold
    a `=` but are not one (a misspelt root or key)."""
    found, malformed = [], []
    for span in CODE_SPAN.findall(cell):
        if "=" not in span:
            continue
        match = KEY_VALUE.match(span)
        if match is None:
            malformed.append(span)
            continue
        found.append((match["key"], parse_value(match["value"]), span))
    return found, malformed


def same_value(expected: Any, actual: Any) -> bool:
    """Numbers numerically, lists element by element, strings, booleans and null exactly."""
    if isinstance(expected, list):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(expected)
            and all(same_value(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if expected is None:
        return actual is None
    if isinstance(expected, bool):
        return isinstance(actual, bool) and actual == expected
    if isinstance(expected, int | float):
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return False
        return math.isclose(expected, actual, rel_tol=1e-12, abs_tol=0.0)
    return isinstance(actual, str) and actual == expected


MISSING = object()


def lookup(config: dict[str, Any], key: str) -> Any:
    """The value under a dotted key of a plain nested dict, or MISSING."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def leaves(node: Any, prefix: str) -> list[str]:
    """The dotted keys of a nested dict's values (a list is one value)."""
    if not isinstance(node, dict):
        return [prefix]
    keys: list[str] = []
    for name, value in node.items():
        keys += leaves(value, f"{prefix}.{name}")
    return keys


def required_keys(config: dict[str, Any]) -> set[str]:
    """What a table must name: the optimizer's and the model's values, the data set's source
    and the normalisation and augmentation it has, the budget, and the schedule and
    warm-start values that apply."""
    keys = set(leaves(config["optimizer"], "optimizer")) - {"optimizer._partial_"}
    keys |= set(leaves(config["model"], "model"))
    dataset = config["dataset"]
    keys.add("dataset.source")
    if dataset.get("normalization") is not None:
        keys |= set(leaves(dataset["normalization"], "dataset.normalization"))
    if dataset.get("augmentation") is not None:
        keys |= {"dataset.augmentation", "dataset.crop_padding"}
    trainer = config["trainer"]
    keys |= {
        f"trainer.{name}" for name in ("batch_size", "max_epochs", "max_time_s", "lr_schedule")
    }
    if trainer["lr_schedule"] == "step":
        keys |= {"trainer.lr_decay_epochs", "trainer.lr_decay_factor"}
    if config["optimizer"].get("warm_start") is True:
        keys.add("trainer.warm_start_batches")
    return keys


# ------------------------------------------------------------------------------ fixtures
@cache
def page_tables() -> tuple[Table, ...]:
    return tuple(parse_tables(PAGE.read_text(encoding="utf-8")))


@cache
def composed(experiment: str, optimizer: str) -> dict[str, Any]:
    """The composed config's optimizer, trainer, model and dataset, as plain values."""
    cfg = compose_config(f"experiment={experiment}", f"optimizer={optimizer}")
    plain = {}
    for root in ROOTS:
        value = OmegaConf.to_container(cfg[root], resolve=True, enum_to_str=True)
        plain[root] = value
    return _no_enums(plain)


def _no_enums(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _no_enums(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_no_enums(value) for value in node]
    return node.name if isinstance(node, Enum) else node


def paper_experiments() -> list[str]:
    names = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
    return [name for name in names if name not in NOT_PAPER_EXPERIMENTS]


def tuned_optimizers(experiment: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / "tuned" / experiment).glob("*.yaml"))


def table_id(table: Table) -> str:
    return f"{table.experiment}/{table.optimizer}"


# ------------------------------------------------------------------------------ the parser
def test_the_parser_reads_tables_spans_and_values() -> None:
    text = (
        "# Page\n\n#### exp_a / opt\n\nline\n\n"
        "| setting | authors | source | sobench | verdict |\n|---|---|---|---|---|\n"
        "| lr | 1e-4 | cell 9 | `optimizer.lr=0.0001` and `time/train_s` | same |\n"
        "| loss | a \\|\\|w\\|\\|^2 | — | `model.sizes=[1, 2, M]` `trainer.max_epochs=null` "
        "| same |\n"
        "\n## Other\n\n| a | b |\n|---|---|\n| x | y |\n"
    )
    tables = parse_tables(text)
    assert [(t.experiment, t.optimizer, len(t.rows)) for t in tables] == [("exp_a", "opt", 2)]
    lr, loss = tables[0].rows
    assert lr.setting == "lr" and loss.cells["authors"] == "a \\|\\|w\\|\\|^2"
    assert key_values(lr.cells["sobench"]) == (
        [("optimizer.lr", 0.0001, "optimizer.lr=0.0001")],
        [],
    )
    spans, malformed = key_values(loss.cells["sobench"] + " `optimiser.lr=1`")
    assert [(key, value) for key, value, _ in spans] == [
        ("model.sizes", [1, 2, "M"]),
        ("trainer.max_epochs", None),
    ]
    assert malformed == ["optimiser.lr=1"]


def test_values_compare_by_kind() -> None:
    assert same_value(500, 500.0) and same_value(1e-5, 1.0e-05) and same_value(0.0003, 3e-4)
    assert not same_value(0.0003, 0.003) and not same_value(1, True) and not same_value(0, None)
    assert same_value([0.4914, 0.4822], [0.4914, 0.4822]) and not same_value([1, 2], [1, 2, 3])
    assert same_value(["M", 64], ["M", 64]) and not same_value([64], ["64"])
    assert same_value(True, True) and not same_value(True, 1) and not same_value(False, None)
    assert same_value(None, None) and not same_value(None, "null")
    assert same_value("coupled_newton", "coupled_newton") and not same_value("eigh", "Eigh")


# ------------------------------------------------------------------------------ the page
def test_every_experiment_and_tuned_optimizer_has_one_table() -> None:
    tables = page_tables()
    assert tables, "docs/fidelity.md has no `#### <experiment> / <optimizer>` tables"
    found = [(t.experiment, t.optimizer) for t in tables]
    duplicates = sorted({pair for pair in found if found.count(pair) > 1})
    assert not duplicates, f"docs/fidelity.md has more than one table for {duplicates}"
    expected = {(e, o) for e in paper_experiments() for o in tuned_optimizers(e)}
    missing = sorted(expected - set(found))
    extra = sorted(set(found) - expected)
    assert not missing, (
        f"docs/fidelity.md has no table for {missing}: add one per tuned file "
        "(conf/tuned/<experiment>/<optimizer>.yaml), with the authors' value of each row"
    )
    assert not extra, f"docs/fidelity.md has tables for what no tuned file configures: {extra}"
    without = sorted(set(paper_experiments()) - {e for e, _ in found})
    assert not without, f"experiments without a table in docs/fidelity.md: {without}"


@pytest.mark.parametrize("table", page_tables(), ids=table_id)
def test_every_table_has_the_rows_and_a_verdict(table: Table) -> None:
    settings = tuple(row.setting for row in table.rows)
    assert settings == ROWS, (
        f"docs/fidelity.md:{table.line} {table.name}: the rows must be {list(ROWS)}, "
        f"found {list(settings)}"
    )
    for row in table.rows:
        empty = [column for column, cell in row.cells.items() if not cell]
        assert not empty, f"docs/fidelity.md:{row.line} {table.name} '{row.setting}': empty {empty}"
        verdict = row.cells["verdict"]
        assert verdict.startswith(VERDICTS), (
            f"docs/fidelity.md:{row.line} {table.name} '{row.setting}': the verdict must start "
            f"with one of {VERDICTS}, not {verdict!r}"
        )
        if row.setting in ROWS_WITH_VALUES:
            spans, _ = key_values(row.cells["sobench"])
            assert spans, (
                f"docs/fidelity.md:{row.line} {table.name} '{row.setting}': the sobench cell "
                "names no config value (`key=value`)"
            )


@pytest.mark.parametrize("table", page_tables(), ids=table_id)
def test_sobench_values_are_the_composed_config(table: Table) -> None:
    config = composed(table.experiment, table.optimizer)
    wrong = []
    for row in table.rows:
        spans, malformed = key_values(row.cells["sobench"])
        for span in malformed:
            wrong.append(
                f"docs/fidelity.md:{row.line} '{row.setting}': `{span}` is not "
                f"<{'|'.join(ROOTS)}>.<key>=<value>"
            )
        for key, value, span in spans:
            actual = lookup(config, key)
            if actual is MISSING:
                wrong.append(
                    f"docs/fidelity.md:{row.line} '{row.setting}': `{span}`, but the composed "
                    f"config has no {key}"
                )
            elif not same_value(value, actual):
                wrong.append(
                    f"docs/fidelity.md:{row.line} '{row.setting}': `{span}`, but the composed "
                    f"config has {key}={actual!r}"
                )
    assert not wrong, (
        f"{table.name} (experiment={table.experiment} optimizer={table.optimizer}): "
        + "; ".join(wrong)
        + ". Update the row (and its verdict against the authors' value)."
    )


@pytest.mark.parametrize("table", page_tables(), ids=table_id)
def test_every_config_value_is_in_its_table(table: Table) -> None:
    config = composed(table.experiment, table.optimizer)
    named = {key for row in table.rows for key, _, _ in key_values(row.cells["sobench"])[0]}
    unnamed = sorted(required_keys(config) - named)
    assert not unnamed, (
        f"docs/fidelity.md:{table.line} {table.name}: no row names "
        + ", ".join(f"{key}={lookup(config, key)!r}" for key in unnamed)
        + ": add each to the row it belongs to, with the authors' value"
    )


def test_the_checks_see_the_page() -> None:
    """Guard against a vacuous pass: the page is there, with tables and spans."""
    assert Path(PAGE).is_file()
    tables = page_tables()
    spans = sum(len(key_values(row.cells["sobench"])[0]) for t in tables for row in t.rows)
    assert len(tables) >= len(paper_experiments()) and spans > 10 * len(tables)

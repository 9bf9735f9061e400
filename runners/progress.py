"""A progress bar per run on stderr (tqdm): step, epoch, loss EMA and training seconds.

Shown when `trainer.progress_bar` is true, or when it is null (the default) and stderr is a
terminal, so that SLURM logs and redirected output stay free of carriage returns. The trainer
updates it between steps, outside the training clock. While it is shown, log lines are
written above it (tqdm's logging redirect) instead of through it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


def bar_wanted(setting: bool | None) -> bool:
    if setting is not None:
        return bool(setting)
    return sys.stderr.isatty()


class ProgressBar:
    """One run's bar; a no-op object when the bar is off."""

    def __init__(self, shown: bool, description: str, total: int | None, initial: int) -> None:
        self.shown, self.description = shown, description
        self._bar = (
            tqdm(
                total=total,
                initial=initial,
                desc=description,
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
                mininterval=0.5,  # a few redraws a second: the bar must cost nothing
            )
            if shown
            else None
        )

    def step(self, epoch: float, loss_ema: float | None, train_s: float) -> None:
        if self._bar is None:
            return
        fields = {"epoch": f"{epoch:.2f}", "loss": "n/a" if loss_ema is None else f"{loss_ema:.4g}"}
        fields["train_s"] = f"{train_s:.1f}"
        self._bar.set_postfix(fields, refresh=False)
        self._bar.update(1)

    def phase(self, text: str | None) -> None:
        """Say what the run does while it takes no steps (warm start, evaluation); None when
        it trains again."""
        if self._bar is not None:
            suffix = f" [{text}]" if text else ""
            self._bar.set_description_str(self.description + suffix, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def progress_bar(
    setting: bool | None, description: str, total: int | None, initial: int
) -> Iterator[ProgressBar]:
    shown = bar_wanted(setting)
    with ExitStack() as stack:
        if shown:
            stack.enter_context(logging_redirect_tqdm())
        bar = ProgressBar(shown, description, total, initial)
        stack.callback(bar.close)
        yield bar

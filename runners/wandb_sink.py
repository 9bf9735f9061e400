"""Mirror of the run records in Weights & Biases.

Mode: `logger.mode=auto` is online when an account is configured (WANDB_API_KEY, or a
`wandb login` entry in ~/.netrc) and offline otherwise, so a run never prompts or hangs;
WANDB_MODE, when set, wins. An online start that fails or takes longer than
`logger.init_timeout_s` (no network on a compute node, say) falls back to offline with a
warning. Offline runs are written under the run directory (<run_dir>/wandb/offline-run-*)
and can be uploaded later with `wandb sync`.

Identity: the W&B run id is the harness's run id (so a resumed run continues its W&B run),
the group hashes the config without the seed (the seeds of a setting are one group), and the
tags are the optimizer, model and data set. Every run is finished before the next starts, so
the jobs of a multirun never merge.

The same rows as metrics.jsonl, whatever happened: W&B writes its offline file in blocks and
uploads online in the background, so a hard kill loses the rows it had not written yet. A
resumed (or restarted) run therefore logs again, from metrics.jsonl, every record that W&B
does not have: offline, the attempt's new offline run gets all of them, and the offline runs
of earlier attempts of the same id, which it replaces, are removed (so `wandb sync` uploads
one complete run); online, the records from the step the server's run stopped at
(`run.starting_step`). Rows of a killed attempt logged after its last checkpoint stay on the
server (W&B keeps the first value logged at a step); on CPU a resumed run computes the same
numbers for them.
"""

from __future__ import annotations

import logging
import netrc
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from contract.records import FINAL_STATUSES
from runners.config_schema import LoggerConfig, WandbMode

DEFAULT_HOST = "https://api.wandb.ai"

log = logging.getLogger(__name__)


def account_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", DEFAULT_HOST)).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(requested: WandbMode) -> str:
    from_environment = os.environ.get("WANDB_MODE")
    if from_environment:
        return from_environment
    if requested == WandbMode.auto:
        return "online" if account_configured() else "offline"
    return requested.value


class WandbSink:
    def __init__(
        self,
        cfg: LoggerConfig,
        run_dir: Path,
        wandb_id: str,
        group: str,
        name: str,
        tags: list[str],
        config: dict[str, Any],
    ) -> None:
        import wandb

        self.mode = resolve_mode(cfg.mode)
        self.run_dir, self.wandb_id = Path(run_dir), wandb_id
        arguments: dict[str, Any] = {
            "project": cfg.project,
            "entity": cfg.entity,
            "dir": str(run_dir),
            "id": wandb_id,
            "resume": "allow",
            "group": group,
            "name": name,
            "tags": tags,
            "config": config,
        }
        settings = wandb.Settings(console="off", silent=True, init_timeout=cfg.init_timeout_s)
        try:
            self.run = wandb.init(**arguments, mode=self.mode, settings=settings)
        except wandb.errors.Error as error:
            if self.mode != "online":
                raise
            log.warning(
                "W&B could not start online (%s); logging offline under %s/wandb instead "
                "(upload later with `wandb sync`)",
                str(error).splitlines()[0],
                run_dir,
            )
            wandb.teardown()  # the service still holds the failed run's id
            self.mode = "offline"
            self.run = wandb.init(**arguments, mode=self.mode, settings=settings)

    def replay(self, records: list[dict[str, Any]]) -> int:
        """Log the records (metrics.jsonl's, up to where this attempt starts) that this W&B
        run does not have; then remove the offline runs of earlier attempts, which this one
        replaces. Returns how many records were logged."""
        have_until = 0 if self.mode == "offline" else int(self.run.starting_step or 0)
        missing = [record for record in records if int(record["step"]) >= have_until]
        for record in missing:
            self.log(record)
        if self.mode == "offline":
            own = Path(self.run.dir).parent.name  # .../offline-run-<time>-<id>/files
            for earlier in self.run_dir.glob(f"wandb/offline-run-*-{self.wandb_id}"):
                if earlier.name != own:
                    shutil.rmtree(earlier, ignore_errors=True)
        return len(missing)

    def log(self, record: dict[str, Any]) -> None:
        values = {key: value for key, value in record.items() if key != "step"}
        self.run.log(values, step=int(record["step"]))

    def close(self, status: str, summary: dict[str, Any]) -> None:
        self.run.summary.update({"status": status, **summary})
        self.run.finish(exit_code=0 if status in FINAL_STATUSES else 1)

"""One process per run directory: the run trains while holding an OS lock on <run_dir>/.lock.

The same command started twice, or a job requeued while its previous attempt still writes
its last checkpoint, would otherwise train the same run twice and interleave the records.
The lock is an fcntl lock (filelock.FileLock), so the kernel releases it when its process
dies, however it dies: a killed run never leaves a stale lock behind. A second process waits
up to `trainer.lock_wait_s` seconds for it (long enough for a preempted attempt to
checkpoint and exit), then leaves the run alone with RunDirectoryBusy, which names the
holder (pid, host, start time, written to .lock.owner).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

from runners.records import RecordsWriteError, write_atomically

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
OWNER_FILE = ".lock.owner"


class RunDirectoryBusy(RuntimeError):
    """Another process holds the run directory's lock."""


def _owner_text(run_dir: Path) -> str:
    try:
        owner = json.loads((run_dir / OWNER_FILE).read_text())
        return f"pid {owner['pid']} on {owner['host']} since {owner['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def run_directory_lock(run_dir: Path, wait_s: float) -> Iterator[None]:
    """Hold the run directory for the duration of the block, waiting up to wait_s for it."""
    run_dir = Path(run_dir)
    lock = FileLock(run_dir / LOCK_FILE)
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info(
                "%s is in use by %s: waiting up to %g s", run_dir, _owner_text(run_dir), wait_s
            )
            lock.acquire(timeout=max(wait_s, 0.0))
    except Timeout:  # (an OSError itself: before the next clause)
        raise RunDirectoryBusy(
            f"{run_dir} is in use by {_owner_text(run_dir)} (waited {wait_s:g} s; "
            "trainer.lock_wait_s): the same run is training in another process. Rerun this "
            "command when that one has ended: a completed run is skipped, another resumes."
        ) from None
    except OSError as error:  # the lock file cannot be created: read-only or full
        raise RecordsWriteError(run_dir / LOCK_FILE, error) from error
    try:
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_atomically(run_dir / OWNER_FILE, json.dumps(owner).encode())
        yield
    finally:
        with suppress(OSError):
            (run_dir / OWNER_FILE).unlink(missing_ok=True)
        lock.release()

"""A run's progress, published to `<db>/progress.json` for other processes to read (the
web server's library page): counts as the run goes, then how it ended and what failed.
Written whole and renamed into place, at most about once a second, so a reader never
sees half a file and a run never spends its time on it."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from photon_index.store.atomic import write_atomic

if TYPE_CHECKING:
    from photon_index.ingest.run import IndexReport

PROGRESS_FILE = "progress.json"
MAX_FAILURES = 1_000  # listed; the count covers them all
_INTERVAL = 1.0  # seconds between two writes while running


@dataclass(frozen=True)
class Failure:
    path: str
    error: str


@dataclass(frozen=True)
class RunProgress:
    state: str  # "running", "finished", "interrupted" or "failed", as the run last wrote it
    pid: int
    started_at: datetime  # UTC
    updated_at: datetime
    discovered: int
    done: int  # files dealt with: indexed, reused, skipped or failed
    indexed: int
    reused: int
    skipped: int
    failed: int
    failures: list[Failure] = field(default_factory=list)  # the first MAX_FAILURES
    error: str | None = None  # failed: why the run stopped
    # state is "running" and its process is alive: a run killed with -9 never wrote its
    # end, so its state stays "running" but this turns false.
    running: bool = False


class ProgressFile:
    """Publishes one run's progress. update() takes the run's report as it grows (and
    keeps it, for end()); both swallow write errors, since a run must not fail for the
    sake of a progress display (a full disk stops it at its next commit anyway)."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path / PROGRESS_FILE
        self.started_at = _now()
        self._report: IndexReport | None = None
        self._written = float("-inf")

    def update(self, report: IndexReport, *, now: bool = False) -> None:
        self._report = report
        if now or time.monotonic() - self._written >= _INTERVAL:
            self._write("running")

    def end(self, state: str, error: str | None = None) -> None:
        self._write(state, error)

    def _write(self, state: str, error: str | None = None) -> None:
        from photon_index.ingest.run import IndexReport  # here: run.py imports this module

        self._written = time.monotonic()
        report = self._report or IndexReport()  # a run that failed before it began
        progress = RunProgress(
            state=state,
            pid=os.getpid(),
            started_at=self.started_at,
            updated_at=_now(),
            discovered=report.discovered,
            done=report.indexed + report.reused + report.skipped + report.failed,
            indexed=report.indexed,
            reused=report.reused,
            skipped=report.skipped,
            failed=report.failed,
            failures=report.failures[:MAX_FAILURES],
            error=error,
        )
        data = asdict(progress)
        del data["running"]  # a reader's judgement, not the run's
        # ASCII: a path that is not valid UTF-8 holds surrogates, which \u-escapes keep.
        text = json.dumps(data, default=_iso)
        with contextlib.suppress(OSError):
            write_atomic(self.path, lambda f: f.write(text.encode()))


def read_progress(db_path: Path) -> RunProgress | None:
    """The last run's progress, or None when no run published one (or its file cannot
    be read: it is only a display, never worth an error)."""
    try:
        data = json.loads((db_path / PROGRESS_FILE).read_text("utf-8"))
        data["started_at"] = datetime.fromisoformat(data["started_at"])
        data["updated_at"] = datetime.fromisoformat(data["updated_at"])
        data["failures"] = [Failure(**f) for f in data["failures"]]
        progress = RunProgress(**data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return replace(progress, running=progress.state == "running" and _alive(progress.pid))


def _alive(pid: int) -> bool:
    if os.name == "nt":
        return True  # os.kill(pid, 0) would send CTRL_C_EVENT there; no cheap check
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)

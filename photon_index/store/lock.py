"""One writer per database. The indexer appends rows for paths that were not in the table
when its run began, so two runs at once would both store the same new paths.

The lock is an flock on a file in the database folder: the kernel drops it when its
process ends, so a killed run never leaves a stale lock behind. Readers (searches) do
not take it: they read the last committed version.

A database on object storage (store/location.py) is locked the same way, by a file in
this machine's folder for it: two runs on one machine are refused. Object storage has
no lock that a killed process gives back, so two machines writing the same s3://
database at once are not refused: Lance's commits stay atomic there (each is a
conditional write that fails and retries if another commit landed first, so no commit
is lost and no reader sees half of one), but both runs could append the same new path.
Run one indexer per database; any number of machines may search it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from photon_index.errors import DatabaseError, UsageError

try:
    import fcntl
except ImportError:  # Windows: no flock; one run at a time is then up to the user
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "photon-writer.lock"


class WriterBusy(UsageError):
    """Another process holds the writer lock (photon watch waits for it instead)."""


@contextmanager
def write_lock(db_path: Path) -> Iterator[None]:
    try:
        db_path.mkdir(parents=True, exist_ok=True)
        handle = open(db_path / LOCK_FILE, "a")  # noqa: SIM115 (held for the whole block)
    except OSError as e:
        raise DatabaseError(f"cannot write to the database at {db_path}: {e}") from e
    with handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WriterBusy(
                    f"another photon process is writing to {db_path}; "
                    "wait for it to finish, or use --db for another index"
                ) from None
        yield


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on path for a short read-modify-write of a small file in the
    database folder (dismissed.json); waits for another holder instead of failing, and
    is separate from the writer lock, which an index run holds for hours."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115 (held for the whole block)
    except OSError as e:
        raise DatabaseError(f"cannot write to the database at {path.parent}: {e}") from e
    with handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield

"""The drives and shares mounted at or under the indexed folders, remembered in the
database folder, so that one which is not mounted keeps its pictures in the index.

An unmounted share's mount point is an ordinary folder: empty, or holding a marker file
or whatever a backup script wrote there while the share was away. By its content alone
it looks like a folder whose pictures were deleted, and pruning it would mean
re-reading and re-embedding the whole share when it comes back. So every index run
records the mount points at or under its roots, and a recorded one that is not mounted
now keeps the rows under it (until `--forget-missing`).

Mount points are read from /proc/self/mountinfo. Where there is none (not Linux), a root
that is itself a mount point is recorded; macOS removes a volume's folder when it is
unmounted, which the missing-root rule covers.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from photon_index.errors import DatabaseError
from photon_index.store.atomic import write_json_record

MOUNTS_FILE = "mounts.json"
MOUNTINFO = Path("/proc/self/mountinfo")


def mount_points() -> set[str] | None:
    """The folders something is mounted on now; None where the system does not say."""
    try:
        lines = MOUNTINFO.read_bytes().splitlines()
    except OSError:
        return None
    # Field 5 is the mount point, with space, tab, newline and backslash as octal escapes.
    unescape = re.compile(rb"\\([0-7]{3})")
    return {
        os.fsdecode(unescape.sub(lambda m: bytes([int(m[1], 8)]), line.split(b" ")[4]))
        for line in lines
        if len(line.split(b" ")) > 4
    }


def read_mounts(db_path: Path) -> list[str]:
    path = db_path / MOUNTS_FILE
    try:
        mounts = json.loads(path.read_text("utf-8"))["mounts"]
        if not all(isinstance(m, str) for m in mounts):
            raise ValueError("a mount point that is not a string")
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatabaseError(
            f"cannot read {path} ({e}): move it away, then run `photon index` with your "
            "drives mounted to record them again"
        ) from e
    return mounts


def unmounted(db_path: Path) -> list[str]:
    """The recorded mount points that are not mounted now."""
    now = mount_points()
    return [m for m in read_mounts(db_path) if not _mounted(m, now)]


def record_mounts(db_path: Path, roots: Iterable[Path], *, forget_missing: bool) -> None:
    """Record the mount points at or under roots, keeping those recorded under other
    roots, and the ones not mounted now unless forget_missing. The caller holds the
    writer lock."""
    roots = [str(r) for r in roots]
    now = mount_points()
    if now is None:
        now = {r for r in roots if os.path.ismount(r)}
    old = read_mounts(db_path)
    kept = [
        m
        for m in old
        if not any(_under(m, r) for r in roots) or not (forget_missing or _mounted(m, now))
    ]
    found = sorted(m for m in now if any(_under(m, r) for r in roots))
    mounts = list(dict.fromkeys([*kept, *found]))
    if mounts != old:
        write_json_record(db_path / MOUNTS_FILE, {"mounts": mounts})


def _mounted(folder: str, now: set[str] | None) -> bool:
    return folder in now if now is not None else os.path.ismount(folder)


def _under(path: str, scope: str) -> bool:
    return path == scope or path.startswith(scope.rstrip(os.sep) + os.sep)

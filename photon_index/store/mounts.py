"""The drives and shares that hold indexed pictures, remembered in the database folder,
so that one which is not mounted keeps its pictures in the index.

An unmounted share's mount point is an ordinary folder: empty, or holding a marker file
or whatever a backup script wrote there while the share was away. By its content alone
it looks like a folder whose pictures were deleted, and pruning it would mean
re-reading and re-embedding the whole share when it comes back. So every index run
records the mount points that hold indexed pictures, by real path (a library reached
through a symlink, or a symlink inside it to a share, is recorded too), and a recorded
one that is not mounted now keeps the rows under it (until `--forget-missing`), and
`photon dedupe --undo` waits for it rather than put files back into its bare folder.

Mount points are read from /proc/self/mountinfo. Where there is none (not Linux), a root
that is itself a mount point is recorded; macOS removes a volume's folder when it is
unmounted, which the missing-root rule covers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from photon_index.files import file_of
from photon_index.store.atomic import read_json_strings, write_json_record
from photon_index.store.location import is_remote

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
    advice = "move it away, then run `photon index` with your drives mounted to record them"
    return read_json_strings(db_path / MOUNTS_FILE, "mounts", advice)


def unmounted(db_path: Path) -> list[str]:
    """The recorded mount points that are not mounted now."""
    now = mount_points()
    return [m for m in read_mounts(db_path) if not _mounted(m, now)]


def record_mounts(
    db_path: Path, paths: Iterable[str], roots: Iterable[Path], *, forget_missing: bool
) -> None:
    """Record the mount points holding any of paths (the table's), keeping the recorded
    ones not mounted now unless forget_missing. The caller holds the writer lock."""
    now = mount_points()
    mounted = now if now is not None else {os.path.realpath(r) for r in roots if os.path.ismount(r)}
    holding = _holding(paths, mounted - {os.sep})
    old = read_mounts(db_path)
    away = [m for m in old if not forget_missing and not _mounted(m, now)]
    mounts = list(dict.fromkeys([*away, *sorted(holding)]))
    if mounts != old:
        write_json_record(db_path / MOUNTS_FILE, {"mounts": mounts})


def mount_of(path: str, mounts: Sequence[str], real: Callable[[str], str]) -> str | None:
    """The mount among mounts that holds path (a local file's path), by its real folder
    (real: os.path.realpath, or a cached one)."""
    folder = real(os.path.dirname(path))
    return next((m for m in mounts if _under(folder, m)), None)


def _holding(paths: Iterable[str], mounted: set[str]) -> set[str]:
    """The innermost mount of mounted holding each of paths, by real folder."""
    holding: set[str] = set()
    for folder in {os.path.dirname(file_of(p)) for p in paths if not is_remote(p)}:
        real = os.path.realpath(folder)
        while real not in mounted and real != os.path.dirname(real):
            real = os.path.dirname(real)
        if real in mounted:
            holding.add(real)
    return holding


def _mounted(folder: str, now: set[str] | None) -> bool:
    return folder in now if now is not None else os.path.ismount(folder)


def _under(path: str, scope: str) -> bool:
    return path == scope or path.startswith(scope.rstrip(os.sep) + os.sep)

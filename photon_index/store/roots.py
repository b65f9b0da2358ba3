"""The folders (and files) `photon index` was run on, remembered in the database folder.

`photon dedupe --move-to` refuses a folder inside, equal to or above any of them: the
next `photon index` would bring the moved copies back, and a later dedupe could keep a
moved copy and remove the original. The folders holding indexed files do not tell a
root that holds only subfolders. A database indexed before roots were recorded has no
file here; its roots are added by its next index run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from photon_index.store.atomic import read_json_strings, write_json_record

ROOTS_FILE = "roots.json"


def read_roots(db_path: Path) -> list[Path]:
    """The recorded roots, absolute; none for a database that recorded none."""
    advice = "move it away, then run `photon index` on your folders to record them again"
    return [Path(r) for r in read_json_strings(db_path / ROOTS_FILE, "roots", advice)]


def add_roots(db_path: Path, roots: Iterable[Path]) -> None:
    """Record roots (absolute paths) with those recorded before. The caller holds the
    writer lock, so no other process rewrites the file meanwhile."""
    known = read_roots(db_path)
    new = [r for r in dict.fromkeys(roots) if r not in known]
    if not new:
        return
    write_json_record(db_path / ROOTS_FILE, {"roots": [str(r) for r in [*known, *new]]})


def as_recorded(path: Path, db_path: Path) -> Path:
    """path as the index spells it: a folder reached through another spelling of a
    recorded root (a symlink to it, or the folder a symlinked root points to) is
    rewritten under that root, so one library is not indexed twice under two names
    (Fedora Atomic's /home is a link to /var/home). path is absolute."""
    recorded = read_roots(db_path)
    if any(_under(path, root) for root in recorded):
        return path
    real = Path(os.path.realpath(path))
    for root in recorded:
        target = Path(os.path.realpath(root))
        if _under(real, target):
            return root / real.relative_to(target)
    return path


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents

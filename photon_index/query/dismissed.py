"""Duplicate groups the user said are not duplicates, remembered in the database folder
so dedupe never shows them again. A group is kept as the set of its pictures' content
hashes, not paths: a moved or re-indexed picture stays dismissed, while a group that
gains a picture outside the set comes back, since nobody has judged that one."""

from __future__ import annotations

import json
from pathlib import Path

from photon_index.errors import DatabaseError
from photon_index.store.atomic import write_json_record
from photon_index.store.lock import file_lock

DISMISSED_FILE = "dismissed.json"
_LOCK_FILE = "dismissed.lock"


def read_dismissed(db_path: Path) -> list[frozenset[str]]:
    """The dismissed sets of content hashes."""
    path = db_path / DISMISSED_FILE
    try:
        groups = json.loads(path.read_text("utf-8"))["groups"]
        sets = [frozenset(hashes) for hashes in groups]
        if not all(isinstance(h, str) for hashes in sets for h in hashes):
            raise ValueError("a content hash that is not a string")
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatabaseError(
            f"cannot read {path} ({e}): move it away to forget the dismissed duplicate groups"
        ) from e
    return sets


def dismiss(db_path: Path, hashes: frozenset[str]) -> None:
    """Remember that pictures with these hashes are not duplicates of each other. Under
    its own lock, not the writer's: a dismissal must work while `photon index` runs."""
    with file_lock(db_path / _LOCK_FILE):
        sets = read_dismissed(db_path)
        if any(hashes <= known for known in sets):
            return
        sets = [known for known in sets if not known <= hashes] + [hashes]
        write_json_record(db_path / DISMISSED_FILE, {"groups": [sorted(s) for s in sets]})

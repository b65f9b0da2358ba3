"""`photon dedupe --undo`: put the last batch back, files and table rows.

Moved files go back from the destination and trashed ones from the trash (found by
their .trashinfo on Linux; on macOS and Windows they are restored from the system
trash by hand). Their rows, saved in the journal, return to the table without
re-indexing. A file is never put back over one that took its place. Permanent
deletions cannot be undone. A file that could not be put back for a reason that may
pass (the destination's drive not mounted, a full disk) keeps the batch open: running
it again retries those files. Otherwise running it again undoes the batch before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from photon_index.actions.files import move_file
from photon_index.actions.journal import Batch, Entry, Journal
from photon_index.actions.recover import restore_rows
from photon_index.actions.trash import FREEDESKTOP, Trashed, locate, restore
from photon_index.errors import UsageError
from photon_index.store.mounts import mount_of, unmounted
from photon_index.store.table import ImageTable


@dataclass(frozen=True)
class UndoReport:
    batch: str
    kind: str  # "move" | "trash"
    restored: list[tuple[str, str]]  # (from, back to)
    failed: list[tuple[str, str]]  # (path, why it was not put back)
    retry: bool = False  # some may be put back by running it again


def undo_last(journal: Journal, table: ImageTable) -> UndoReport:
    batch = journal.last_to_undo()
    if batch is None:
        raise UsageError("nothing to undo: no dedupe action has moved or trashed files here")
    if batch.kind == "delete":
        count = sum(e.status == "done" for e in batch.entries)
        batch.mark_undone()  # so that the next --undo reaches the batch before it
        raise UsageError(
            f"the last dedupe (batch {batch.name}, {batch.started}) deleted {count} files "
            "permanently: they cannot be restored; --undo again undoes the batch before it"
        )
    restored: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    back: list[Entry] = []
    retry = False
    away = unmounted(journal.folder.parent)
    for entry in reversed([e for e in batch.entries if e.status == "done"]):
        try:
            _on_a_mounted_drive(entry.source, away)
            origin = _put_back(batch, entry)
        except OSError as e:
            failed.append((entry.source, f"{e.strerror or e}: fix that and undo again"))
            retry = True
            continue
        except _NotBack as e:
            failed.append((entry.source, str(e)))
            retry |= e.retry
            continue
        restored.append((origin, entry.source))
        back.append(entry)
    restore_rows(table, [row for entry in back for row in entry.rows])
    for entry in back:
        batch.returned(entry)
    batch.flush()
    if not retry:
        batch.mark_undone()
    return UndoReport(batch.name, batch.kind, restored[::-1], failed[::-1], retry)


class _NotBack(Exception):
    """Why one file cannot be put back; retry: it may be, by a later --undo."""

    def __init__(self, why: str, *, retry: bool = False) -> None:
        super().__init__(why)
        self.retry = retry


def _on_a_mounted_drive(source: str, away: list[str]) -> None:
    """Put back into a share that is not mounted, a file would go into its bare mount
    point and be hidden when the share is back; one trashed to the share's own trash
    is out of reach meanwhile."""
    mount = mount_of(source, away, os.path.realpath) if away else None
    if mount is not None:
        raise _NotBack(
            f"its place is on {mount}, which is not mounted: mount it and undo again", retry=True
        )


def _put_back(batch: Batch, entry: Entry) -> str:
    """Put one file back; where it came from."""
    source = Path(entry.source)
    if batch.kind == "move":
        assert entry.target is not None
        target = Path(entry.target)
        if os.path.lexists(source):
            if not os.path.lexists(target):
                return entry.target  # put back already, by an undo that was interrupted
            raise _NotBack(f"another file is at its place now; the copy stays at {target}")
        if not os.path.isdir(target.parent):
            raise _NotBack(
                f"its folder {target.parent} is not there (a drive not mounted?): "
                "bring it back and undo again",
                retry=True,
            )
        if not os.path.lexists(target):
            raise _NotBack(f"it is no longer at {target}")
        move_file(target, source)
        return entry.target
    trashed = _in_trash(entry)
    if os.path.lexists(source):
        if trashed is None:
            return "the trash"  # put back already, by an undo that was interrupted
        raise _NotBack(f"another file is at its place now; it stays in the trash ({trashed.file})")
    if trashed is None:
        where = "" if FREEDESKTOP else " (restore it from the system trash)"
        raise _NotBack(f"it is not in the trash any more{where}")
    restore(trashed, source)
    return trashed.file


def _in_trash(entry: Entry) -> Trashed | None:
    if entry.where and entry.info and os.path.lexists(entry.where):
        return Trashed(entry.where, entry.info)
    return locate(Path(entry.source))

"""Bringing an interrupted batch to a consistent end, before any other action.

The rule: a file that has left its place is done (its rows stay out of the table); any
other file is put back as it was (a half-made link or partial copy at the destination is
removed, and its rows return to the table). Files are never lost: a source is removed
only once its target is complete, so a file is always at its place, its target, or in
the trash.
"""

from __future__ import annotations

import os
from pathlib import Path

from photon_index.actions.files import partial_name
from photon_index.actions.journal import Batch, Entry, Journal
from photon_index.actions.trash import FREEDESKTOP, locate
from photon_index.store.schema import ImageRow
from photon_index.store.table import ImageTable


def finish_interrupted(journal: Journal, table: ImageTable) -> list[str]:
    """Finish every batch that was interrupted; their names."""
    batches = journal.unfinished()
    for batch in batches:
        finish(batch, table)
    return [b.name for b in batches]


def finish(batch: Batch, table: ImageTable) -> None:
    gone: list[str] = []
    back: list[ImageRow] = []
    for entry in batch.entries:
        if entry.status == "done" or _left(batch, entry):
            gone += [entry.source, *(r.path for r in entry.rows)]
        else:
            back += entry.rows
    batch.flush()
    table.delete_paths(set(gone))
    restore_rows(table, back)
    batch.end()


def restore_rows(table: ImageTable, rows: list[ImageRow]) -> None:
    """Put rows back, one per path, for the paths the table lacks and that exist."""
    present = set(table.paths()) if rows else set()
    missing: dict[str, ImageRow] = {}
    for row in rows:
        if row.path not in present and os.path.exists(row.path):
            missing.setdefault(row.path, row)
    table.add(list(missing.values()))


def _left(batch: Batch, entry: Entry) -> bool:
    """Whether the file of an entry not known to be done has left its place; if not, any
    trace of the action is undone."""
    source = Path(entry.source)
    if os.path.lexists(source):
        if batch.kind == "move" and entry.target:
            _remove_half_move(source, Path(entry.target))
        return False
    # Neither here nor there: the user moved or deleted it since; not ours to undo.
    if batch.kind == "trash":
        trashed = locate(source)
        if trashed is None and FREEDESKTOP:  # elsewhere the trash cannot be searched
            batch.failed(entry, "gone from its place, but not to the trash")
        else:
            batch.done(entry, trashed and trashed.file, trashed and trashed.info)
    elif batch.kind == "move" and entry.target and not os.path.lexists(entry.target):
        batch.failed(entry, "gone from its place, but not to the destination")
    else:
        batch.done(entry, entry.target)
    return True


def _remove_half_move(source: Path, target: Path) -> None:
    partial_name(target).unlink(missing_ok=True)
    if os.path.realpath(target) == os.path.realpath(source):
        return  # the source itself, under another name: never remove it
    try:
        if os.path.samefile(source, target) and not target.is_symlink():
            target.unlink()  # a hard link the move had made: the source still holds it
    except OSError:
        pass  # no target: the move had not started

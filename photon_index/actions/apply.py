"""Acting on duplicate groups: move, trash or delete every duplicate that is still safe
to remove, journaled so that an interruption loses nothing and can be undone.

Each duplicate is checked just before it goes, a chunk at a time:
- the keeper and the duplicate are still what the table says (size and mtime), and for
  an exact copy both files re-hashed now still have the same bytes;
- the duplicate is not the keeper of any group in the batch, nor another path to its
  keeper or to any other keeper (a hard link, a symlinked folder): removing it would
  remove the picture itself. So every file removed leaves its keeper in place, even
  when groups overlap or one group comes twice with two keepers;
- a real file is not removed for a keeper that is a symbolic link, which would keep
  nothing once its target goes;
- a `similar` picture is not a copy: it is trashed or deleted only when asked for.
Then, per chunk: the intents are journaled (fsync), the rows leave the table, the files
move (each only while its keeper is still there), and what became of each is journaled.
A search may briefly miss a file that is still in place, but never lists one that is
gone. Ctrl-C finishes the batch as it stands (recover.finish) and says what had gone
before the stop.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from photon_index.actions.destination import check_destination, target_for
from photon_index.actions.files import move_file
from photon_index.actions.journal import Batch, Entry, Journal
from photon_index.actions.recover import finish, restore_rows
from photon_index.actions.trash import trash
from photon_index.errors import PhotonError
from photon_index.hashing import file_hash
from photon_index.query.dedupe import TIERS, DuplicateGroup
from photon_index.query.search import printable
from photon_index.store.roots import read_roots
from photon_index.store.schema import ImageRow, arrow_to_rows
from photon_index.store.table import ImageTable, sql_quote

# Files per journal chunk: one fsync of intents and one table commit per chunk.
CHUNK = 64
_DONE = {"move": "moved to {}", "trash": "sent to the trash", "delete": "deleted for good"}


class Interrupted(PhotonError):
    """The user stopped a batch (Ctrl-C): what had gone before the stop stays gone and
    journaled, the rest is in place."""

    exit_code = 130


@dataclass(frozen=True)
class Action:
    kind: str  # "move" | "trash" | "delete" (permanent)
    destination: str | os.PathLike[str] | None = None  # move: where to
    similar: bool = False  # trash or delete the similar tier's pictures too


@dataclass(frozen=True)
class ActionReport:
    moved: list[tuple[str, str]]  # (from, to)
    trashed: list[str]
    deleted: list[str]  # for good
    failed: list[tuple[str, str]]  # (path, why it was left alone)
    batch: str | None = None  # the journal batch, which `photon dedupe --undo` puts back


def act(
    groups: Iterable[DuplicateGroup], table: ImageTable, journal: Journal, action: Action
) -> ActionReport:
    """Do action to every group's duplicates that pass the checks; drop their rows.
    Interrupted if the user stops it."""
    groups = sorted(groups, key=lambda g: TIERS.index(g.tier))
    destination = None
    if action.kind == "move":
        assert action.destination is not None
        moving = [p for g in groups for p in g.duplicates]
        roots = read_roots(table.db_path)
        destination = check_destination(
            action.destination, roots, table.paths(), moving, table.db_path
        )
    checks = _Checks(groups, table, action, destination)
    batch = journal.begin(action.kind, destination)
    report = ActionReport([], [], [], [])
    try:
        for chunk in _chunks(((g, p) for g in groups for p in g.duplicates), CHUNK):
            _chunk(chunk, checks, batch, table, report)
        batch.end()
    except KeyboardInterrupt:
        finish(batch, table)  # done stays done, the rest goes back
        raise Interrupted(_stopped(batch, destination)) from None
    except BaseException:
        finish(batch, table)  # a failing table or disk: as for Ctrl-C
        raise
    return ActionReport(report.moved, report.trashed, report.deleted, report.failed, batch.name)


def _stopped(batch: Batch, destination: Path | None) -> str:
    """What an interrupted batch did, once finished, for the person who stopped it."""
    done = sum(e.status == "done" for e in batch.entries)
    what = _DONE[batch.kind].format(printable(str(destination)))
    files = "1 file was" if done == 1 else f"{done} files were"
    undo = "; `photon dedupe --undo` puts them back" if done and batch.kind != "delete" else ""
    return f"interrupted: {files} {what} before the stop (journaled), the others are in place{undo}"


def _chunk(
    chunk: list[tuple[DuplicateGroup, str]],
    checks: _Checks,
    batch: Batch,
    table: ImageTable,
    report: ActionReport,
) -> None:
    planned: list[tuple[DuplicateGroup, str]] = []
    for group, path in chunk:
        problem = checks.problem(group, path)
        if problem is None:
            planned.append((group, path))
        else:
            report.failed.append((path, problem))
    if not planned:
        return
    leaving = {path: _same_entries(path, group.aliases) for group, path in planned}
    rows = _rows_of(table, [p for paths in leaving.values() for p in paths])
    start = len(batch.entries)
    entries = [
        Entry(
            n=start + i,
            source=path,
            target=str(target_for(checks.destination, Path(path))) if checks.destination else None,
            rows=[r for p in leaving[path] for r in rows.get(p, [])],
        )
        for i, (_, path) in enumerate(planned)
    ]
    batch.intend(entries)
    table.delete_paths([p for paths in leaving.values() for p in paths])
    back: list[ImageRow] = []
    for entry, (group, _) in zip(entries, planned, strict=True):
        gone = checks.keeper_gone(group.keep)
        if gone:  # removed behind photon's back since the chunk was checked
            batch.failed(entry, gone)
            report.failed.append((entry.source, gone))
            back += entry.rows
            continue
        try:
            where, info = _do(batch.kind, entry)
        except OSError as e:
            batch.failed(entry, _os_reason(e))
            report.failed.append((entry.source, _os_reason(e)))
            back += entry.rows
            continue
        batch.done(entry, where, info)
        if batch.kind == "move":
            report.moved.append((entry.source, str(entry.target)))
        elif batch.kind == "trash":
            report.trashed.append(entry.source)
        else:
            report.deleted.append(entry.source)
    batch.flush()
    restore_rows(table, back)


def _do(kind: str, entry: Entry) -> tuple[str | None, str | None]:
    """Act on one file; where it lies now and, in the trash, its .trashinfo."""
    source = Path(entry.source)
    if kind == "move":
        assert entry.target is not None
        move_file(source, Path(entry.target))
        return entry.target, None
    if kind == "trash":
        trashed = trash(source)
        return (trashed.file, trashed.info) if trashed else (None, None)
    source.unlink()
    return None, None


class _Checks:
    """Why a duplicate must be left alone, or None; see the module's docstring."""

    def __init__(
        self,
        groups: list[DuplicateGroup],
        table: ImageTable,
        action: Action,
        destination: Path | None,
    ) -> None:
        data = table.columns(["path", "content_hash", "file_size", "mtime_ns"]).to_pydict()
        self.stored_hash = dict(zip(data["path"], data["content_hash"], strict=True))
        sizes = zip(data["file_size"], data["mtime_ns"], strict=True)
        self.stamps = dict(zip(data["path"], sizes, strict=True))
        self.action = action
        self.destination = destination
        self.kept = {group.keep for group in groups}
        self.keepers: dict[tuple[int, int], str] = {}
        for group in groups:
            identity = _identity(group.keep)
            if identity is not None:
                self.keepers.setdefault(identity, group.keep)
        self.taken: dict[tuple[int, int], str] = {}  # files this batch removes
        self.hashes: dict[str, str | None] = {}

    def problem(self, group: DuplicateGroup, path: str) -> str | None:
        if group.tier == "similar" and self.action.kind != "move" and not self.action.similar:
            return "a similar picture, not a copy: add --delete-similar to remove it too"
        keeper = self._changed(group.keep) or self._rewritten(group.keep)
        if keeper:
            return f"its keeper {group.keep} {keeper}"
        if path == group.keep:
            return "it is its own keeper (one path, two rows): run `photon index` first"
        if path in self.kept:
            return "it is the keeper of another group in this batch: kept"
        changed = self._changed(path)
        if changed:
            return f"it {changed}"
        identity = _identity(path)
        if identity is None:
            return "it cannot be checked"
        if identity == _identity(group.keep):
            return f"it is the same file as its keeper {group.keep} (another path to it)"
        if os.path.islink(group.keep) and not os.path.islink(path):
            return f"its keeper {group.keep} is a symbolic link: keep a real file instead"
        other = self.keepers.get(identity)
        if other is not None:
            return f"it is the same file as {other}, which is kept (another path to it)"
        if identity in self.taken:
            return f"it is the same file as {self.taken[identity]}, already removed"
        rewritten = self._rewritten(path)
        if rewritten:
            return f"it {rewritten}"
        if group.tier == "exact" and self._hash(path) != self._hash(group.keep):
            return "its bytes differ from its keeper's now: run `photon index` first"
        if self.destination is not None:
            target = target_for(self.destination, Path(path))
            if os.path.lexists(target):
                return f"{target} already exists; not overwritten"
        self.taken[identity] = path
        return None

    def keeper_gone(self, keeper: str) -> str | None:
        """Why a duplicate must stay after all, its keeper gone since the check, or None."""
        changed = self._changed(keeper)
        return f"its keeper {keeper} {changed}" if changed else None

    def _changed(self, path: str) -> str | None:
        """Why the file no longer is what the table says, or None."""
        try:
            stat = os.stat(path)  # through symlinks, as the indexer stamped it
        except FileNotFoundError:
            return "no longer exists"
        except OSError as e:
            return f"cannot be checked: {_os_reason(e)}"
        if self.stamps.get(path) != (stat.st_size, stat.st_mtime_ns):
            return "changed since it was indexed: run `photon index` first"
        return None

    def _rewritten(self, path: str) -> str | None:
        """Why the file's bytes are not those indexed, or None. Size and time can be kept
        by an edit (a tool that restores the time): the bytes are read, in every tier."""
        if self._hash(path) != self.stored_hash.get(path):
            return "is not the picture indexed (its bytes changed): run `photon index` first"
        return None

    def _hash(self, path: str) -> str | None:
        """The bytes' content hash now; a keeper's is read once per batch."""
        if path not in self.hashes:
            try:
                self.hashes[path] = file_hash(Path(path))
            except OSError:
                self.hashes[path] = None
        return self.hashes[path]


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _same_entries(path: str, aliases: list[str]) -> list[str]:
    """path and its aliases that lead to its directory entry (through a symlinked folder,
    or a symbolic link to it): they leave with it. A hard link is an entry of its own,
    and stays; so does the file a symbolic link leads to, when the link is what goes.
    Only path's folders are resolved, never its own name, which may itself be a link."""
    entry = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    return [path, *(a for a in aliases if a != path and os.path.realpath(a) == entry)]


def _rows_of(table: ImageTable, paths: list[str]) -> dict[str, list[ImageRow]]:
    names = [f.name for f in table.schema]
    found: dict[str, list[ImageRow]] = {}
    unique = sorted(set(paths))
    for start in range(0, len(unique), 500):
        where = "path IN (" + ", ".join(sql_quote(p) for p in unique[start : start + 500]) + ")"
        for row in arrow_to_rows(table.columns(names, where)):
            found.setdefault(row.path, []).append(row)
    return found


def _chunks(items: Iterator[tuple[DuplicateGroup, str]], size: int) -> Iterator[list]:
    chunk: list[tuple[DuplicateGroup, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _os_reason(e: OSError) -> str:
    if isinstance(e, FileExistsError):
        return f"{e.filename2 or e.filename} already exists; not overwritten"
    return e.strerror or str(e)

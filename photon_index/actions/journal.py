"""The write-ahead journal of dedupe's actions, one file per batch in the database folder.

A batch is one `photon dedupe --move-to/--delete` run. Before a file is touched, an
`intent` line naming it, where it goes and the table rows it takes with it is written
and fsynced; once it has gone, a `done` line says where it now lies (a trashed file's
place is only known afterwards). `end` says the table is in step with the files,
`returned` that `photon dedupe --undo` has put one file back, and `undone` that it is
done with the batch (a file it could not put back for a reason that may pass, a drive
not mounted or a full disk, keeps the batch open for the next --undo). A batch without
`end` was interrupted (kill -9, power loss): the next action finishes or rolls it back
first (photon_index.actions.recover). The rows are stored whole, embedding included, so an
undo puts them back without re-indexing.

JSON lines, appended only: a kill can tear at most the last line, which is ignored.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from photon_index.actions.files import sync_folder
from photon_index.errors import DatabaseError
from photon_index.store.schema import HASH_COLUMNS, ImageRow

JOURNAL_DIR = "journal"
KINDS = ("move", "trash", "delete")


@dataclass
class Entry:
    """One file of a batch: what was intended and, once known, what became of it."""

    n: int
    source: str
    target: str | None  # move: where it goes
    rows: list[ImageRow]  # the table rows that leave with it
    status: str | None = None  # "done" | "failed" | "returned" (undone) | None: unknown
    where: str | None = None  # done: where the file lies now (moved to, or in the trash)
    info: str | None = None  # trashed: its .trashinfo file


@dataclass
class Batch:
    path: Path
    kind: str  # one of KINDS
    started: str
    entries: list[Entry] = field(default_factory=list)
    ended: bool = False
    undone: bool = False
    # done and failed lines not yet written: they are flushed a chunk at a time, as
    # recovery can tell from the files what became of an entry; intents never wait.
    pending: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem

    def append(self, *records: dict[str, Any]) -> None:
        """Write the pending records and these, and fsync them: they are on disk before
        the caller goes on."""
        records = (*self.pending, *records)
        self.pending = []
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise DatabaseError(
                f"cannot write the dedupe journal {self.path}: {e.strerror or e}; "
                "free some space or make the database folder writable"
            ) from e

    def intend(self, entries: list[Entry]) -> None:
        self.entries.extend(entries)
        self.append(*(_intent(e) for e in entries))

    def done(self, entry: Entry, where: str | None, info: str | None = None) -> None:
        entry.status, entry.where, entry.info = "done", where, info
        self.pending.append({"type": "done", "n": entry.n, "where": where, "info": info})

    def failed(self, entry: Entry, why: str) -> None:
        entry.status = "failed"
        self.pending.append({"type": "failed", "n": entry.n, "why": why})

    def returned(self, entry: Entry) -> None:
        entry.status = "returned"
        self.pending.append({"type": "returned", "n": entry.n})

    def flush(self) -> None:
        if self.pending:
            self.append()

    def end(self) -> None:
        self.ended = True
        self.append({"type": "end", "at": _now()})

    def mark_undone(self) -> None:
        self.undone = True
        self.append({"type": "undone", "at": _now()})


class Journal:
    """The batches of one database, oldest first."""

    def __init__(self, db_path: Path) -> None:
        self.folder = db_path / JOURNAL_DIR

    def begin(self, kind: str, destination: Path | None = None) -> Batch:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseError(f"cannot create the dedupe journal in {self.folder}: {e}") from e
        names = [p.stem for p in self.folder.glob("*.jsonl")]
        number = max((int(n) for n in names if n.isdigit()), default=0) + 1
        batch = Batch(self.folder / f"{number:06d}.jsonl", kind, _now())
        header = {"type": "batch", "kind": kind, "started": batch.started}
        batch.append({**header, "destination": str(destination) if destination else None})
        sync_folder(self.folder)  # the new file's name is on disk too
        return batch

    def batches(self) -> list[Batch]:
        return [b for b in map(_read, self._paths()) if b is not None]

    def unfinished(self) -> list[Batch]:
        """The batches without an end. Only the newest can be one: every action finishes
        an interrupted batch before it begins its own. Reading only it keeps a long
        journal from slowing every dedupe down."""
        paths = self._paths()
        last = _read(paths[-1]) if paths else None
        return [last] if last is not None and not last.ended else []

    def last_to_undo(self) -> Batch | None:
        for path in reversed(self._paths()):
            batch = _read(path)
            # A batch that removed nothing (all left alone) has nothing to put back.
            done = batch is not None and any(e.status == "done" for e in batch.entries)
            if batch is not None and done and not batch.undone:
                return batch
        return None

    def _paths(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*.jsonl") if p.stem.isdigit())


def _read(path: Path) -> Batch | None:
    batch: Batch | None = None
    by_number: dict[int, Entry] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by a kill: only ever the last one
        kind = record.get("type")
        if kind == "batch":
            batch = Batch(path, record["kind"], record["started"])
        elif batch is None:
            continue
        elif kind == "intent":
            entry = _entry(record)
            by_number[entry.n] = entry
            batch.entries.append(entry)
        elif kind in ("done", "failed") and record["n"] in by_number:
            entry = by_number[record["n"]]
            entry.status = kind
            entry.where, entry.info = record.get("where"), record.get("info")
        elif kind == "returned" and record["n"] in by_number:
            by_number[record["n"]].status = "returned"
        elif kind == "end":
            batch.ended = True
        elif kind == "undone":
            batch.undone = True
    return batch


def _intent(entry: Entry) -> dict[str, Any]:
    return {
        "type": "intent",
        "n": entry.n,
        "source": entry.source,
        "target": entry.target,
        "rows": [row_to_json(r) for r in entry.rows],
    }


def _entry(record: dict[str, Any]) -> Entry:
    rows = [row_from_json(r) for r in record["rows"]]
    return Entry(record["n"], record["source"], record["target"], rows)


def row_to_json(row: ImageRow) -> dict[str, Any]:
    data = {f.name: getattr(row, f.name) for f in fields(ImageRow)}
    for name in HASH_COLUMNS:
        value = getattr(row, name)
        data[name] = None if value is None else value.hex()
    # base64 of the float32 bytes: a quarter of the size of a list of numbers, and exact.
    vector = np.asarray(row.embedding, dtype="<f4").tobytes()
    data["embedding"] = base64.b64encode(vector).decode("ascii")
    data["taken_at"] = row.taken_at.isoformat() if row.taken_at else None
    data["indexed_at"] = row.indexed_at.isoformat()
    return data


def row_from_json(data: dict[str, Any]) -> ImageRow:
    values = dict(data)
    for name in HASH_COLUMNS:  # a journal written before a hash existed lacks it
        value = data.get(name)
        values[name] = None if value is None else bytes.fromhex(value)
    values["embedding"] = np.frombuffer(base64.b64decode(data["embedding"]), dtype="<f4").copy()
    values["taken_at"] = datetime.fromisoformat(data["taken_at"]) if data["taken_at"] else None
    values["indexed_at"] = datetime.fromisoformat(data["indexed_at"])
    return ImageRow(**values)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

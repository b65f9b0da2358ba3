"""What each file found needs: nothing (unchanged since the last run), a copy of a row
whose bytes are the same (a moved, renamed or copied file), or the model.

The planner's map from content hash to row covers rows the run has made but not yet
committed as well as the table, so a copy that turns up before its original's row is
committed reuses that row instead of looking for it in a table that lacks it.

Files share rows when both their bytes and their reader (files.reader) are the same: a
JPEG's bytes under a .CR2 name fail in rawpy, and must not fail the JPEG with them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from photon_index.discover import FoundFile
from photon_index.embed.workers import Embedded, Failed, Frames
from photon_index.files import file_of, reader, rebase
from photon_index.store.schema import ImageRow
from photon_index.store.table import ImageTable

# Copies of committed rows are looked up in the table this many at a time at most.
_LOOKUP_BATCH = 1_000

# content hash, files.reader: which files can share their rows
Key = tuple[str, str]


@dataclass(frozen=True)
class Outcome:
    """What the planner made of a file or a result: rows to write, paths for the model,
    and files that failed (path, why)."""

    rows: list[ImageRow]
    embed: list[str]
    failed: list[tuple[str, str]]


class Planner:
    def __init__(self, table: ImageTable, model: str) -> None:
        self.table = table
        self.model = model
        stamps = table.file_stamps()
        self._paths = set(stamps)
        # By file: a video's frames are rows of their own, with the video's stamp.
        self._stamps = {file_of(path): stamp for path, stamp in stamps.items()}
        self._stored = table.content_hashes()  # committed, as far as this run knows
        # the rows of a file (a video's frames) not committed yet
        self._fresh: dict[Key, list[ImageRow]] = {}
        self._waiting: dict[Key, list[FoundFile]] = {}  # files awaiting the model
        self._key_of: dict[str, Key] = {}  # path sent to the model -> its key
        self._lookups: list[tuple[FoundFile, str]] = []  # copies of committed rows

    @property
    def indexed_paths(self) -> set[str]:
        """Paths that had a row when the run began."""
        return self._paths

    @property
    def stored_hashes(self) -> set[str]:
        """Content hashes committed, as far as this run knows."""
        return self._stored

    def unchanged(self, found: FoundFile) -> bool:
        return self._stamps.get(str(found.path)) == (found.size, found.mtime_ns)

    def place(self, found: FoundFile, digest: str) -> Outcome:
        """Plan a new or changed file whose content hash is digest."""
        key = (digest, reader(found.path))
        if digest in self._stored and key not in self._fresh and key not in self._waiting:
            self._lookups.append((found, digest))
            return self.resolve() if len(self._lookups) >= _LOOKUP_BATCH else _NOTHING
        return self._plan(found, key)

    def _plan(self, found: FoundFile, key: Key) -> Outcome:
        if key in self._fresh:
            return Outcome([_copy(row, found) for row in self._fresh[key]], [], [])
        if key in self._waiting:  # its bytes are on their way to the model already
            self._waiting[key].append(found)
            return Outcome([], [], [])
        return self._send(found, key)

    def resolve(self) -> Outcome:
        """Copy the committed rows that copies wait for. A row replaced since (its file
        was edited in this run) is gone: those copies go to the model instead."""
        if not self._lookups:
            return _NOTHING
        lookups, self._lookups = self._lookups, []
        stored = _by_key(self.table.rows_with_hashes(digest for _, digest in lookups))
        hashes = {digest for digest, _ in stored}
        rows, embed = [], []
        for found, digest in lookups:
            key = (digest, reader(found.path))
            if key in stored:
                rows += [_copy(row, found) for row in stored[key]]
            else:  # replaced since, or only stored under another reader
                if digest not in hashes:
                    self._stored.discard(digest)
                planned = self._plan(found, key)
                rows += planned.rows
                embed += planned.embed
        return Outcome(rows, embed, [])

    def embedded(self, result: Embedded | Frames | Failed) -> Outcome:
        """The rows of the file the model saw and of every copy that waited for it."""
        key = self._key_of.pop(result.path)
        files = self._waiting.pop(key)
        if isinstance(result, Failed):
            return Outcome([], [], [(str(f.path), result.error) for f in files])
        embedded = result.frames if isinstance(result, Frames) else [result]
        first = [self._row(e, files[0], key[0]) for e in embedded]
        self._fresh[key] = first
        copies = [_copy(row, f) for f in files[1:] for row in first]
        return Outcome([*first, *copies], [], [])

    def committed(self, rows: list[ImageRow]) -> None:
        """These rows are in the table now: copies can be found there."""
        for row in rows:
            self._stored.add(row.content_hash)
            self._fresh.pop(_key(row), None)

    def _send(self, found: FoundFile, key: Key) -> Outcome:
        path = str(found.path)
        self._waiting[key] = [found]
        self._key_of[path] = key
        return Outcome([], [path], [])

    def _row(self, result: Embedded, found: FoundFile, digest: str) -> ImageRow:
        info = result.info
        return ImageRow(
            path=result.path,
            content_hash=digest,
            phash=result.hashes.phash,
            phash_trimmed=result.hashes.phash_trimmed,
            dhash=result.hashes.dhash,
            dhash_whole=result.hashes.dhash_whole,
            file_size=found.size,
            mtime_ns=found.mtime_ns,
            width=info.width,
            height=info.height,
            format=info.format,
            taken_at=info.taken_at,
            camera=info.camera,
            latitude=info.latitude,
            longitude=info.longitude,
            model=self.model,
            embedding=result.embedding,
            indexed_at=datetime.now(timezone.utc),
        )


_NOTHING = Outcome([], [], [])


def _key(row: ImageRow) -> Key:
    return row.content_hash, reader(file_of(row.path))


def _by_key(rows: list[ImageRow]) -> dict[Key, list[ImageRow]]:
    """The rows of one file (a picture's row, a video's frames) for each key."""
    first: dict[Key, str] = {}
    found: dict[Key, list[ImageRow]] = {}
    for row in rows:
        key, file = _key(row), file_of(row.path)
        if first.setdefault(key, file) == file:
            found.setdefault(key, []).append(row)
    return found


def _copy(row: ImageRow, found: FoundFile) -> ImageRow:
    """row for another file with the same bytes."""
    return replace(
        row,
        path=rebase(row.path, str(found.path)),
        file_size=found.size,
        mtime_ns=found.mtime_ns,
        indexed_at=datetime.now(timezone.utc),
    )

"""What each file found needs: nothing (unchanged since the last run), a copy of a row
whose bytes are the same (a moved, renamed or copied file), or the model.

The planner's map from content hash to row covers rows the run has made but not yet
committed as well as the table, so a copy that turns up before its original's row is
committed reuses that row instead of looking for it in a table that lacks it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from photon_index.discover import FoundFile
from photon_index.embed.workers import Embedded, Failed, Frames
from photon_index.files import file_of, is_video, rebase
from photon_index.store.schema import ImageRow
from photon_index.store.table import ImageTable

# Copies of committed rows are looked up in the table this many at a time at most.
_LOOKUP_BATCH = 1_000


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
        # content hash -> the rows of a file (a video's frames) not committed yet
        self._fresh: dict[str, list[ImageRow]] = {}
        self._waiting: dict[str, list[FoundFile]] = {}  # hash -> files awaiting the model
        self._hash_of: dict[str, str] = {}  # path sent to the model -> its content hash
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
        if digest in self._fresh:
            return Outcome([_copy(row, found) for row in self._fresh[digest]], [], [])
        if digest in self._waiting:  # its bytes are on their way to the model already
            self._waiting[digest].append(found)
            return Outcome([], [], [])
        # A video's frames are not looked up by hash (that finds one row per hash): a
        # copy of a committed video is embedded again.
        if digest in self._stored and not is_video(found.path):
            self._lookups.append((found, digest))
            return self.resolve() if len(self._lookups) >= _LOOKUP_BATCH else _NOTHING
        return self._send(found, digest)

    def resolve(self) -> Outcome:
        """Copy the committed rows that copies wait for. A row replaced since (its file
        was edited in this run) is gone: those copies go to the model instead."""
        if not self._lookups:
            return _NOTHING
        lookups, self._lookups = self._lookups, []
        stored = self.table.rows_by_hash(digest for _, digest in lookups)
        rows, embed = [], []
        for found, digest in lookups:
            if digest in stored:
                rows.append(_copy(stored[digest], found))
            else:
                self._stored.discard(digest)
                planned = self.place(found, digest)
                rows += planned.rows
                embed += planned.embed
        return Outcome(rows, embed, [])

    def embedded(self, result: Embedded | Frames | Failed) -> Outcome:
        """The rows of the file the model saw and of every copy that waited for it."""
        digest = self._hash_of.pop(result.path)
        files = self._waiting.pop(digest)
        if isinstance(result, Failed):
            return Outcome([], [], [(str(f.path), result.error) for f in files])
        embedded = result.frames if isinstance(result, Frames) else [result]
        first = [self._row(e, files[0], digest) for e in embedded]
        self._fresh[digest] = first
        copies = [_copy(row, f) for f in files[1:] for row in first]
        return Outcome([*first, *copies], [], [])

    def committed(self, rows: list[ImageRow]) -> None:
        """These rows are in the table now: copies can be found there."""
        for row in rows:
            self._stored.add(row.content_hash)
            self._fresh.pop(row.content_hash, None)

    def _send(self, found: FoundFile, digest: str) -> Outcome:
        path = str(found.path)
        self._waiting[digest] = [found]
        self._hash_of[path] = digest
        return Outcome([], [path], [])

    def _row(self, result: Embedded, found: FoundFile, digest: str) -> ImageRow:
        info = result.info
        return ImageRow(
            path=result.path,
            content_hash=digest,
            phash=result.hashes.phash,
            phash_trimmed=result.hashes.phash_trimmed,
            dhash=result.hashes.dhash,
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


def _copy(row: ImageRow, found: FoundFile) -> ImageRow:
    """row for another file with the same bytes."""
    return replace(
        row,
        path=rebase(row.path, str(found.path)),
        file_size=found.size,
        mtime_ns=found.mtime_ns,
        indexed_at=datetime.now(timezone.utc),
    )

"""Rows on their way to the table: buffered, committed every few seconds, and the table
compacted every so many commits.

A commit takes the buffer before it writes, so whatever happens during the write, the
same rows are never written twice (a retried append would store a path twice)."""

from __future__ import annotations

import time
from collections.abc import Collection

from photon_index.files import split_frame
from photon_index.store.schema import ImageRow
from photon_index.store.table import ImageTable

# Every commit adds a fragment and a version, and Lance's per-commit cost and memory grow
# with their number: 3,000 commits of 3 rows took 315 s and grew a process to 2 GB,
# against 50 s and under 550 MB when compacted every 100 (benchmarks/commits.py). A slow
# model commits a few rows every couple of seconds, so a long run compacts as it goes.
COMPACT_EVERY = 100  # commits


class Writer:
    def __init__(self, table: ImageTable, indexed: Collection[str], interval: float) -> None:
        self.table = table
        self.interval = interval
        self._indexed = indexed  # paths in the table before the run: these are replaced
        self._frames = _frames_by_video(indexed)
        self._rows: list[ImageRow] = []
        self._last = time.monotonic()
        self.commits = 0

    def add(self, rows: list[ImageRow]) -> None:
        self._rows += rows

    @property
    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval

    def commit(self) -> list[ImageRow]:
        """Write the buffered rows as one version; the rows written."""
        rows, self._rows = self._rows, []
        self._last = time.monotonic()
        if not rows:
            return rows
        # A video embedded again (it changed) may have other frames now: its old ones
        # go first, so a crash in between leaves the video to be embedded again.
        stale = self._stale_frames(rows)
        if stale:
            self.table.delete_paths(stale)
        # Appending is cheaper than an upsert, which reads the table: only paths indexed
        # before this run need replacing (a path comes once a run).
        self.append([r for r in rows if r.path not in self._indexed])
        self.table.upsert([r for r in rows if r.path in self._indexed])
        self.commits += 1
        if self.commits % COMPACT_EVERY == 0:
            self.table.compact()
        return rows

    def append(self, rows: list[ImageRow]) -> None:
        """Write rows of new paths (the Ray engine writes them its own way)."""
        self.table.add(rows)

    def _stale_frames(self, rows: list[ImageRow]) -> list[str]:
        """Frames indexed before the run of the videos these rows are frames of, that
        are not among them."""
        paths = {r.path for r in rows}
        videos = {split_frame(p)[0] for p in paths if "#t=" in p}
        return [f for v in videos for f in self._frames.pop(v, []) if f not in paths]


def _frames_by_video(paths: Collection[str]) -> dict[str, list[str]]:
    frames: dict[str, list[str]] = {}
    for path in paths:
        if "#t=" in path:  # a cheap test first: most paths are pictures
            video, at = split_frame(path)
            if at is not None:
                frames.setdefault(video, []).append(path)
    return frames

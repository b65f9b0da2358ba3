"""Rows on their way to the table: buffered, committed every few seconds, and the table
compacted every so many commits.

A commit takes the buffer before it writes, so whatever happens during the write, the
same rows are never written twice (a retried append would store a path twice)."""

from __future__ import annotations

import time
from collections.abc import Collection

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
        # Appending is cheaper than an upsert, which reads the table: only paths indexed
        # before this run need replacing (a path comes once a run).
        self.table.add([r for r in rows if r.path not in self._indexed])
        self.table.upsert([r for r in rows if r.path in self._indexed])
        self.commits += 1
        if self.commits % COMPACT_EVERY == 0:
            self.table.compact()
        return rows

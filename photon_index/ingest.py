"""One indexing run: discover files, skip the unchanged, reuse the embeddings of moved or
copied ones, embed the rest in worker processes, commit rows every few seconds, and
prune files that disappeared. Memory stays flat: files stream from the walk, at most
a few batches are in flight, and rows are written as they come."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from photon_index.config import Settings
from photon_index.decode import read_bytes
from photon_index.discover import FoundFile, WalkError, discover, display
from photon_index.embed.workers import Embedded, EmbedPool, Failed, WorkerConfig
from photon_index.errors import ImageError
from photon_index.hashing import content_hash
from photon_index.models import ModelFiles
from photon_index.store.schema import ImageRow
from photon_index.store.table import ImageTable

# Every commit adds a fragment and a version, and Lance's per-commit cost and memory grow
# with their number: 3,000 commits of 3 rows took 315 s and grew a process to 2 GB,
# against 50 s and under 550 MB when compacted every 100 (benchmarks/commits.py). A slow
# model commits a few rows every couple of seconds, so a long run compacts as it goes.
_COMPACT_EVERY = 100  # commits


@dataclass(frozen=True)
class Failure:
    path: str
    error: str


@dataclass
class IndexReport:
    discovered: int = 0
    indexed: int = 0  # embedded by the model in this run
    reused: int = 0  # moved or copied: the stored embedding of the same bytes was reused
    skipped: int = 0  # unchanged since the last run: not even read
    removed: int = 0
    failed: int = 0
    elapsed: float = 0.0
    images_per_second: float = 0.0  # embedded images per second of wall time
    device: str = ""
    failures: list[Failure] = field(default_factory=list)


class Ingest:
    def __init__(
        self, table: ImageTable, model: ModelFiles, settings: Settings, *, progress: bool
    ) -> None:
        self.table = table
        self.model = model
        self.settings = settings.index
        self.device = settings.model.device
        self.threads = settings.model.threads
        self.progress = progress
        self.report = IndexReport()
        self._stamps = table.file_stamps()
        self._known = table.content_hashes()
        self._pool: EmbedPool | None = None
        self._batch: list[str] = []
        self._waiting: dict[str, list[FoundFile]] = {}  # content hash -> files awaiting it
        self._hash_of: dict[str, str] = {}  # path in flight -> its content hash
        self._rows: list[ImageRow] = []
        self._reuse: list[tuple[FoundFile, str]] = []
        self._last_commit = time.monotonic()
        self._commits = 0
        self._bar: tqdm | None = None

    def run(self, roots: Sequence[Path]) -> IndexReport:
        started = time.monotonic()
        seen: set[str] = set()
        unreadable: list[str] = []
        total = self._count(roots) if self.progress else None
        self._bar = tqdm(total=total, unit="img", disable=not self.progress, dynamic_ncols=True)
        try:
            for item in self._walk(roots):
                if isinstance(item, WalkError):
                    unreadable.append(str(item.path))
                    self._fail(display(item.path), item.reason)
                    continue
                seen.add(str(item.path))
                self._take(item)
                self._collect(wait=False)
            self._submit()
            self._drain()
        finally:
            self._commit()
            if self._pool:
                self._pool.close()
            self._bar.close()
        if self.settings.prune:
            self._prune(roots, seen, unreadable)
        self.table.optimize()
        self.report.elapsed = round(time.monotonic() - started, 3)
        self.report.images_per_second = round(self.report.indexed / self.report.elapsed, 2)
        return self.report

    def _walk(self, roots: Sequence[Path]) -> Iterator[FoundFile | WalkError]:
        return discover(
            roots, exclude=self.settings.exclude, include_hidden=self.settings.include_hidden
        )

    def _count(self, roots: Sequence[Path]) -> int:
        """A stat-only first pass, so the progress bar can show an ETA."""
        return sum(1 for _ in self._walk(roots))

    def _take(self, found: FoundFile) -> None:
        path = str(found.path)
        self.report.discovered += 1
        if self._stamps.get(path) == (found.size, found.mtime_ns):
            self.report.skipped += 1
            self._bar.update()
            return
        try:
            digest = content_hash(read_bytes(found.path))
        except ImageError as e:
            self._fail(path, str(e))
            return
        if digest in self._known:
            self._reuse.append((found, digest))
        elif digest in self._waiting:  # a copy of a file already on its way to the model
            self._waiting[digest].append(found)
        else:
            self._waiting[digest] = [found]
            self._hash_of[path] = digest
            self._batch.append(path)
            if len(self._batch) >= self.settings.batch_size:
                self._submit()

    def _submit(self) -> None:
        if not self._batch:
            return
        pool = self._start_pool()
        while pool.in_flight >= pool.capacity:
            self._collect(wait=True)
        pool.submit(self._batch)
        self._batch = []

    def _start_pool(self) -> EmbedPool:
        """Started on first need, so a run with nothing new never loads the model."""
        if self._pool is None:
            workers = self.settings.workers or os.cpu_count() or 1
            threads = self.threads or max(1, (os.cpu_count() or 1) // workers)
            config = WorkerConfig(self.model, self.device, threads, self.settings.max_pixels)
            self._pool = EmbedPool(config, workers=workers, timeout=self.settings.image_timeout)
            self.report.device = self._pool.device
        return self._pool

    def _collect(self, wait: bool) -> None:
        if self._pool is not None:
            for result in self._pool.results(wait=wait):
                self._receive(result)
        if time.monotonic() - self._last_commit >= self.settings.commit_interval:
            self._commit()

    def _drain(self) -> None:
        while self._pool is not None and self._pool.in_flight:
            self._collect(wait=True)

    def _receive(self, result: Embedded | Failed) -> None:
        digest = self._hash_of.pop(result.path)
        files = self._waiting.pop(digest)
        if isinstance(result, Failed):
            for found in files:
                self._fail(str(found.path), result.error)
            return
        now = datetime.now(timezone.utc)
        info = result.info
        first = ImageRow(
            path=result.path,
            content_hash=digest,
            phash=result.phash,
            file_size=files[0].size,
            mtime_ns=files[0].mtime_ns,
            width=info.width,
            height=info.height,
            format=info.format,
            taken_at=info.taken_at,
            camera=info.camera,
            latitude=info.latitude,
            longitude=info.longitude,
            model=self.model.name,
            embedding=result.embedding,
            indexed_at=now,
        )
        self._rows.append(first)
        self.report.indexed += 1
        for copy in files[1:]:
            self._rows.append(_moved(first, copy, now))
            self.report.reused += 1
        self._known.add(digest)
        self._bar.update(len(files))

    def _commit(self) -> None:
        if self._reuse:
            stored = self.table.rows_by_hash(digest for _, digest in self._reuse)
            now = datetime.now(timezone.utc)
            for found, digest in self._reuse:
                self._rows.append(_moved(stored[digest], found, now))
            self.report.reused += len(self._reuse)
            self._bar.update(len(self._reuse))
            self._reuse = []
        if self._rows:
            # Appending is cheaper than an upsert, which reads the table: only paths
            # already indexed before this run need replacing (each path comes once a run).
            self.table.add([r for r in self._rows if r.path not in self._stamps])
            self.table.upsert([r for r in self._rows if r.path in self._stamps])
            self._commits += 1
            if self._commits % _COMPACT_EVERY == 0:
                self.table.compact()
        self._rows = []
        self._last_commit = time.monotonic()

    def _prune(self, roots: Sequence[Path], seen: set[str], unreadable: list[str]) -> None:
        """Drop rows of files gone from under an indexed root; keep rows under folders
        that could not be read this time, which may only be unmounted or locked."""
        scopes = [str(Path(os.path.abspath(r))) for r in roots]
        keep = tuple(u.rstrip(os.sep) + os.sep for u in unreadable)
        gone = [
            p
            for p in self.table.paths()
            if p not in seen and any(_under(p, s) for s in scopes) and not p.startswith(keep)
        ]
        self.table.delete_paths(gone)
        self.report.removed = len(gone)

    def _fail(self, path: str, error: str) -> None:
        self.report.failed += 1
        self.report.failures.append(Failure(path, error))
        if self._bar is not None:
            self._bar.update()


def _moved(row: ImageRow, found: FoundFile, now: datetime) -> ImageRow:
    return replace(
        row,
        path=str(found.path),
        file_size=found.size,
        mtime_ns=found.mtime_ns,
        indexed_at=now,
    )


def _under(path: str, scope: str) -> bool:
    return path == scope or path.startswith(scope.rstrip(os.sep) + os.sep)

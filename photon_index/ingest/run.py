"""One indexing run: walk the roots, skip the unchanged, hash the rest, let the planner
decide what each needs, embed in worker processes, commit through the writer, and prune
files that disappeared. Memory stays flat: files stream from the walk, at most a few
batches are in flight, and rows are written as they come. The counts are published as
they grow (progress.py)."""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

from photon_index.config import Settings
from photon_index.decode import read_error
from photon_index.discover import FoundFile, WalkError, discover, display
from photon_index.embed.workers import EmbedPool, WorkerConfig
from photon_index.errors import PhotonError, UsageError
from photon_index.files import Extra, extra_for, file_of
from photon_index.ingest.planner import Outcome, Planner
from photon_index.ingest.progress import Failure, ProgressFile
from photon_index.ingest.writer import Writer
from photon_index.models import ModelFiles
from photon_index.query.search import printable
from photon_index.sources import list_objects, prefix_exists, source_hash, vanished
from photon_index.store.location import Storage, is_remote
from photon_index.store.mounts import mount_of
from photon_index.store.roots import as_recorded
from photon_index.store.table import ImageTable

# A folder or file, or an s3:// prefix or object (sources.py).
Root = Path | str


class Interrupted(PhotonError):
    """The user stopped the run (Ctrl-C); what was committed is kept, and report says
    what the run had done by then."""

    exit_code = 130

    def __init__(self, message: str, report: IndexReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class IndexReport:
    discovered: int = 0
    indexed: int = 0  # embedded by the model in this run
    reused: int = 0  # moved or copied: the stored embedding of the same bytes was reused
    skipped: int = 0  # unchanged since the last run: not even read
    removed: int = 0
    failed: int = 0
    tagged: int = 0  # pictures given tags at the end of the run (README, "Tags")
    # older pictures given the dedupe hashes added since they were indexed (rehash.py)
    rehashed: int = 0
    rehash_elapsed: float = 0.0  # seconds, not in elapsed: the indexing's own rate
    elapsed: float = 0.0
    images_per_second: float = 0.0  # embedded images per second of wall time
    device: str = ""
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_roots(
    roots: Sequence[Root],
    table: ImageTable | None,
    *,
    forget_missing: bool,
    storage: Storage | None = None,
) -> tuple[list[Root], list[str]]:
    """The roots that exist, and a warning for each missing one the index holds rows
    under (an unmounted drive: its rows are kept). A missing root the index knows
    nothing of is a typo: UsageError. An s3:// prefix is missing when no object lies
    at or under it (object storage has no folders), asked of `storage` when given."""
    nameless = [str(r) for r in roots if is_remote(r) and not urlparse(str(r)).netloc]
    if nameless:
        raise UsageError(f"{nameless[0]} names no bucket: use s3://BUCKET/PREFIX")
    db_path = table.db_path if table is not None else None
    absolute = [
        str(r).rstrip("/") if is_remote(r) else _local_root(Path(r), db_path) for r in roots
    ]
    present = [
        r
        for r in absolute
        if _present(r) and (storage is None or not isinstance(r, str) or prefix_exists(r, storage))
    ]
    missing = [r for r in absolute if r not in present]
    indexed = _rows_under(table, missing)
    unknown = [r for r in missing if not indexed[r] and not forget_missing]
    remote = [r for r in unknown if isinstance(r, str)]
    if remote:
        raise UsageError(f"no object at or under {remote[0]}: check the bucket and prefix")
    if unknown:
        raise UsageError(f"no such file or folder: {', '.join(map(display, unknown))}")
    if forget_missing:
        return present + missing, []
    return present, [_kept(r, indexed[r], "is missing") for r in missing]


def moved_roots(table: ImageTable, recorded: Sequence[Path], roots: Sequence[Root]) -> list[str]:
    """A warning for each folder indexed before, not named now, that is gone while every
    picture under it is indexed under another path: the library was moved, and its old
    paths would show in search until forgotten."""
    named = {str(r) for r in roots}
    gone = [r for r in recorded if str(r) not in named and not os.path.lexists(r)]
    if not gone:
        return []
    rows = table.columns(["path", "content_hash"]).to_pydict()
    pairs = list(zip(rows["path"], rows["content_hash"], strict=True))
    warnings = []
    for root in gone:
        under = {h for p, h in pairs if _under(file_of(p), str(root))}
        elsewhere = {h for p, h in pairs if not _under(file_of(p), str(root))}
        if under and under <= elsewhere:
            name = printable(str(root))
            warnings.append(
                f"{name} is gone and its pictures are indexed elsewhere now (moved?): "
                f"`photon index {shlex.quote(name)} --forget-missing` removes its old paths"
            )
    return warnings


class Ingest:
    def __init__(
        self,
        table: ImageTable,
        model: ModelFiles,
        settings: Settings,
        *,
        progress: bool,
        forget_missing: bool = False,
        unmounted: Sequence[str] = (),
        thumbnails: bool = False,
        publish: ProgressFile | None = None,
        pool: Callable[[], EmbedPool] | None = None,
    ) -> None:
        """progress: show a progress bar; unmounted: mount points whose rows are kept
        (store/mounts.py); thumbnails: cache the thumbnail of every picture the model
        sees; publish: where the counts go as they grow; pool: where the workers come
        from when the caller keeps them warm between runs (photon watch), which then
        also closes them."""
        self.table = table
        self.model = model
        self.settings = settings.index
        self._all_settings = settings  # the workers' model and device settings too
        self.storage = Storage.from_settings(settings)  # for s3:// roots
        self.progress = progress
        self.forget_missing = forget_missing
        self.unmounted = unmounted
        self.thumbnails = thumbnails
        self.publish = publish
        self.report = IndexReport()
        self.planner = Planner(table, model.name)
        self.writer = Writer(table, self.planner.indexed_paths, self.settings.commit_interval)
        self._pool: EmbedPool | None = None
        self._warm = pool
        self._batch: list[str] = []
        self._bar: tqdm | None = None
        self._needs: Counter[Extra] = Counter()  # files left for an extra not installed

    def run(self, roots: Sequence[Root]) -> IndexReport:
        """Index the files under roots (which check_roots found present)."""
        started = time.monotonic()
        if self.publish is not None:
            self.publish.update(self.report, now=True)
        walk = _Walked()
        total = self._count(roots) if self.progress else None
        self._bar = tqdm(total=total, unit="img", disable=not self.progress, dynamic_ncols=True)
        try:
            self._index(roots, walk)
        except KeyboardInterrupt:
            self._close_pool()
            with contextlib.suppress(PhotonError):  # keep what is complete, if we can
                self._commit()
            raise Interrupted(
                f"interrupted: the index keeps {self._kept()} pictures; "
                "run `photon index` again to continue",
                self.report,
            ) from None
        finally:
            self._close_pool()
            self._bar.close()
        if self.settings.prune:
            self._prune(roots, walk)
        self.report.warnings += [_needs(extra, n) for extra, n in self._needs.items()]
        self.table.optimize()
        self.report.elapsed = round(time.monotonic() - started, 3)
        self.report.images_per_second = round(self.report.indexed / self.report.elapsed, 2)
        return self.report

    def _index(self, roots: Sequence[Root], walk: _Walked) -> None:
        present = [r for r in roots if _present(r)]
        for item in self._walk(present):
            if isinstance(item, WalkError):
                walk.unreadable.append(str(item.path))
                self._fail(display(item.path), item.reason)
                continue
            walk.seen.add(str(item.path))
            walk.found[item.root] += 1
            self._take(item)
            self._collect(wait=False)
        self._apply(self.planner.resolve())
        self._submit()
        while self._pool is not None and self._pool.in_flight:
            self._collect(wait=True)
        self._apply(self.planner.resolve())  # copies found while the last rows committed
        self._commit()

    def _walk(self, roots: Sequence[Root]) -> Iterator[FoundFile | WalkError]:
        options = {"exclude": self.settings.exclude, "include_hidden": self.settings.include_hidden}
        local = [r for r in roots if isinstance(r, Path)]
        # The database's folder may be under a root: its thumbnails are not the library.
        skip = [self.table.db_path] if self.table.db_path is not None else []
        yield from discover(local, **options, skip=skip) if local else ()
        for root in roots:
            if isinstance(root, str):
                yield from list_objects(root, self.storage, **options)

    def _count(self, roots: Sequence[Root]) -> int:
        """A stat-only first pass, so the progress bar can show an ETA."""
        present = [r for r in roots if _present(r)]
        return sum(1 for _ in self._walk(present))

    def _take(self, found: FoundFile) -> None:
        if not self._admit(found):
            return
        path = str(found.path)
        try:
            # Streamed: memory does not grow with the file.
            digest = source_hash(found.path, self.storage)
        except OSError as e:
            self._fail(path, str(read_error(e)))
            return
        self._apply(self.planner.place(found, digest))

    def _admit(self, found: FoundFile) -> bool:
        """Count a file found; whether it needs reading (not unchanged, not too large)."""
        self.report.discovered += 1
        if self.planner.unchanged(found):
            self.report.skipped += 1
            self._bar.update()
            return False
        extra = extra_for(found.path)
        if extra is not None:  # one line for them all, not a failure each
            self._needs[extra] += 1
            self._bar.update()
            return False
        if found.size > self.settings.max_file_size:
            self._fail(
                str(found.path),
                f"file is {found.size:,} bytes, above the limit of "
                f"{self.settings.max_file_size:,} (index.max_file_size)",
            )
            return False
        return True

    def _apply(self, outcome: Outcome, *, embedded: bool = False) -> None:
        """Carry out what the planner decided; embedded: the first row came from the model."""
        if outcome.rows:
            self.report.indexed += embedded
            # Counted by file: a video's frames are rows of one file.
            files = len({file_of(row.path) for row in outcome.rows})
            self.report.reused += files - embedded
            self.writer.add(outcome.rows)
            self._bar.update(files)
        for path, error in outcome.failed:
            self._fail(path, error)
        for path in outcome.embed:
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
            if self._warm is not None:
                self._pool = self._warm()
            else:
                thumbnails_of = self.table.db_path if self.thumbnails else None
                self._pool = start_pool(self.model, self._all_settings, thumbnails_of)
            self.report.device = self._pool.device
        return self._pool

    def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if self._warm is None:
                pool.close()

    def _collect(self, wait: bool) -> None:
        if self._pool is not None:
            for result in self._pool.results(wait=wait):
                self._apply(self.planner.embedded(result), embedded=True)
        if self.writer.due:
            self._commit()
        if self.publish is not None:
            self.publish.update(self.report)

    def _kept(self) -> str:
        # Counted, not tallied, at the latest version: a Ctrl-C may land after a write
        # and before the bookkeeping that follows it.
        try:
            self.table.dataset.checkout_latest()
            return f"{self.table.count():,}"
        except (PhotonError, OSError):
            return "every committed"

    def _commit(self) -> None:
        self._apply(self.planner.resolve())
        rows = self.writer.commit()
        self.planner.committed(rows)

    def _prune(self, roots: Sequence[Root], walk: _Walked) -> None:
        """Drop rows of files gone from under an indexed root. Rows are kept under
        folders that could not be read this time, and under a root that is missing or
        has no pictures now while the index holds some: both may only be unmounted."""
        scopes = [str(r) for r in roots]
        if not self.forget_missing:
            empty = [r for r in roots if not walk.found[r] and _present(r)]
            indexed = _rows_under(self.table, empty)
            for root in empty:
                if indexed[root]:
                    scopes.remove(str(root))
                    self.report.warnings.append(_kept(root, indexed[root], "has no pictures now"))
        keep = tuple(u.rstrip(os.sep) + os.sep for u in walk.unreadable)
        # A file seen by the walk may have gone since (deleted during the run), or have
        # changed and failed: its row describes bytes that are no longer there.
        failed = {f.path for f in self.report.failures}
        # A row is in scope when it is a scope or under a folder one: a set and one
        # startswith, as a watch batch passes thousands of files as roots.
        exact = set(scopes)
        folders = tuple(s.rstrip(os.sep) + os.sep for s in scopes if not os.path.isfile(s))
        # A video's frames are rows of the video's file.
        gone = [
            p
            for p, f in ((p, file_of(p)) for p in self.table.paths())
            if (f in walk.seen and (f in failed or vanished(f, self.storage)))
            or (
                f not in walk.seen
                and (f in exact or f.startswith(folders))
                and not f.startswith(keep)
            )
        ]
        gone = self._unless_unmounted(gone)
        self.table.delete_paths(gone)
        self.report.removed = len({file_of(p) for p in gone})  # files, as indexed counts

    def _unless_unmounted(self, gone: list[str]) -> list[str]:
        """The rows of gone, less those on a drive or share that holds indexed pictures
        and is not mounted now (store/mounts.py), with a warning for each."""
        if not self.unmounted:
            return gone
        real = functools.lru_cache(maxsize=None)(os.path.realpath)
        kept: dict[str, set[str]] = {}
        for path in gone:
            mount = None if is_remote(path) else mount_of(file_of(path), self.unmounted, real)
            if mount is not None:
                kept.setdefault(mount, set()).add(path)
        for mount, paths in sorted(kept.items()):
            files = len({file_of(p) for p in paths})  # a video's frames are one file
            self.report.warnings.append(_kept(Path(mount), files, "is not mounted"))
        keep = set().union(*kept.values())
        return [p for p in gone if p not in keep]

    def _fail(self, path: str, error: str) -> None:
        self.report.failed += 1
        self.report.failures.append(Failure(path, error))
        if self._bar is not None:
            self._bar.update()


def start_pool(model: ModelFiles, settings: Settings, thumbnails_of: Path | None) -> EmbedPool:
    """Worker processes with the model loaded; thumbnails_of: a database folder whose
    thumbnail cache they fill."""
    workers = settings.index.workers or os.cpu_count() or 1
    threads = settings.model.threads or max(1, (os.cpu_count() or 1) // workers)
    config = WorkerConfig(
        model,
        settings.model.device,
        threads,
        settings.index.max_pixels,
        thumbnails_of,
        video_timeout=settings.index.image_timeout,
    )
    return EmbedPool(config, workers=workers, timeout=settings.index.image_timeout)


@dataclass
class _Walked:
    """What the walk met: paths found, per-root counts, folders it could not read."""

    seen: set[str] = field(default_factory=set)
    found: Counter[Root] = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)


def _local_root(root: Path, db_path: Path | None) -> Path:
    absolute = Path(os.path.abspath(root.expanduser()))
    return absolute if db_path is None else as_recorded(absolute, db_path)


def _rows_under(table: ImageTable | None, roots: Sequence[Root]) -> Counter[Root]:
    counts: Counter[Root] = Counter()
    if table is None or not roots:
        return counts
    for path in table.paths():
        for root in roots:
            if _under(file_of(path), str(root)):
                counts[root] += 1
    return counts


def _needs(extra: Extra, count: int) -> str:
    files = "file" if count == 1 else "files"
    return f"{count} {extra.kind} {files} skipped: pip install 'photon-index[{extra.extra}]'"


def _kept(root: Root, rows: int, why: str) -> str:
    return (
        f"{printable(str(root))} {why}: its {rows} indexed pictures are kept "
        "(an unmounted drive?); "
        "to remove them from the index, run again with --forget-missing"
    )


def _present(root: Root) -> bool:
    return isinstance(root, str) or os.path.lexists(root)


def _under(path: str, scope: str) -> bool:
    return path == scope or path.startswith(scope.rstrip(os.sep) + os.sep)

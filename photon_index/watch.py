"""`photon watch`: keep the index in step with folders as they change.

watchfiles (Rust's notify: inotify, FSEvents, ReadDirectoryChangesW) reports the paths
that changed, in debounced batches. Each batch goes through `photon index`'s own
pipeline (ingest/run.py), over just those paths, so its rules hold: an unchanged file is
skipped, a moved or copied one reuses its stored embedding, a deleted one leaves the
index. The embedding workers stay loaded between batches; the writer lock is held only
while a batch is written, so `photon index` and `photon dedupe` still run beside it
(a batch that finds the lock taken waits for it).

A root that disappears (an unmounted drive) pauses: nothing under it is pruned and its
events are ignored (notify follows a folder renamed away by its inode, so they would
name paths that are not there). The watch restarts whenever a root goes, comes back or
is replaced (another drive mounted there), and every present root is then caught up by
a whole `photon index` pass: a restarted watch may have missed changes, and a root that
came back may have changed while it was away.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from photon_index.discover import IMAGE_SUFFIXES, display, is_utf8
from photon_index.errors import PhotonError, UsageError
from photon_index.ingest import IndexReport, Ingest, Interrupted, check_roots
from photon_index.ingest.run import start_pool
from photon_index.store.lock import WriterBusy, write_lock
from photon_index.store.malloc import cap_arenas
from photon_index.store.mounts import record_mounts, unmounted
from photon_index.store.roots import add_roots, as_recorded

if TYPE_CHECKING:
    from photon_index.embed.workers import EmbedPool
    from photon_index.index import Index
    from photon_index.models import ModelFiles
    from photon_index.store.table import ImageTable

INSTALL_HINT = "photon watch needs the watchfiles package: pip install 'photon-index[watch]'"
ATTEMPTS = 3  # a batch that fails this often is given up (the next catch-up redoes it)
RETRY_SECONDS = 5.0
STOP_SECONDS = 30.0  # how long a server's shutdown waits for a batch to finish

EventKind = Literal["watching", "indexed", "paused", "resumed", "waiting", "failed"]
_Identity = tuple[int, int]  # (st_dev, st_ino) of a root: a drive mounted there changes it


@dataclass(frozen=True)
class WatchEvent:
    """What the watcher did or met: a batch indexed (report), a root that went
    (paused) or came back (resumed), the writer lock taken by another process
    (waiting), a batch that failed."""

    kind: EventKind
    message: str = ""
    report: IndexReport | None = None

    def lines(self) -> list[str]:
        """The event as lines for a terminal."""
        if self.report is None:
            prefix = "warning: " if self.kind in ("paused", "failed") else ""
            return [f"{prefix}{self.message}"]
        r = self.report
        lines = [f"failed: {f.path}: {f.error}" for f in r.failures]
        lines += [f"warning: {w}" for w in r.warnings]
        when = datetime.now().strftime("%H:%M:%S")
        lines.append(
            f"{when} {r.indexed} indexed, {r.reused} reused, {r.skipped} unchanged, "
            f"{r.removed} removed, {r.failed} failed, {r.tagged} tagged in {r.elapsed:.1f} s"
        )
        return lines


@dataclass
class WatchReport:
    """What a watch did from start to stop."""

    batches: int = 0
    indexed: int = 0
    reused: int = 0
    removed: int = 0
    failed: int = 0
    elapsed: float = 0.0
    device: str = ""


@dataclass
class _Pending:
    """Changes not yet indexed: whole roots to catch up, and paths under present roots."""

    roots: set[Path] = field(default_factory=set)
    paths: set[Path] = field(default_factory=set)
    attempts: int = 0
    retry_at: float = 0.0

    def drop_under(self, root: Path) -> None:
        self.roots.discard(root)
        self.paths = {p for p in self.paths if not _under(p, root)}

    def clear(self) -> None:
        self.roots, self.paths, self.attempts = set(), set(), 0


class Watcher:
    """Watches roots for an Index until stop is set or Ctrl-C (index.watch())."""

    def __init__(
        self,
        index: Index,
        roots: Sequence[Path | str],
        *,
        model: str | None = None,
        stop: threading.Event | None = None,
        on_event: Callable[[WatchEvent], None] | None = None,
    ) -> None:
        remote = [str(r) for r in roots if "://" in str(r)]
        if remote:
            raise UsageError(f"photon watch follows local folders only, not {remote[0]}")
        self.index = index
        self.settings = index.settings
        self.roots = list(dict.fromkeys(Path(os.path.abspath(Path(r).expanduser())) for r in roots))
        self.model_ref = model
        self.stop = stop or threading.Event()
        self.on_event = on_event or (lambda event: None)
        self.report = WatchReport()
        self._loaded: ModelFiles | None = None
        self._pool: EmbedPool | None = None
        self._pending = _Pending()
        self._waiting = False

    def prepare(self) -> None:
        """Check what can be checked before watching: the roots (one the index has never
        seen that does not exist is a typo), watchfiles, the model and the index's own."""
        if self._loaded is not None:
            return
        from photon_index.embed.encoder import preferred_device

        if not self.roots:
            raise UsageError("name at least one folder to watch")
        for root in self.roots:
            if not is_utf8(str(root)):
                raise UsageError(
                    f"{display(root)}: its name is not UTF-8, and the file watcher takes "
                    "UTF-8 names only; rename it, or index it with `photon index`"
                )
        _watchfiles()
        # Another spelling of an indexed folder (a symlink) watches it under its own.
        self.roots = list(dict.fromkeys(as_recorded(r, self.index.db_path) for r in self.roots))
        table = self.index.table()
        present, _warnings = check_roots(self.roots, table, forget_missing=False)
        loaded = self.index.load_model(self.model_ref)
        preferred_device(self.settings.model.device)  # a bad --device, before any write
        if table is not None:
            self.index._table_for(loaded, self.model_ref)  # another model's index: refused
        self._loaded = loaded
        for root in self.roots:
            if root not in present:
                self._emit("paused", _paused(root))

    def run(self) -> WatchReport:
        """Watch until stop is set or Ctrl-C; what was committed is kept either way."""
        self.prepare()
        cap_arenas()  # before Lance's threads start allocating
        started = time.monotonic()
        try:
            self._loop(_watchfiles())
        except (KeyboardInterrupt, Interrupted):
            pass  # Ctrl-C is how a watch ends: a batch it stopped committed what it had
        finally:
            self._close_pool()
            self.report.elapsed = round(time.monotonic() - started, 3)
        return self.report

    def _loop(self, watch: Callable[..., Iterator[set[tuple[Any, str]]]]) -> None:
        settings = self.settings.watch
        states: dict[Path, _Identity | None] | None = None
        while not self.stop.is_set():
            now = self._states()
            if states is None:
                self._emit("watching", _watching(self.roots))
            else:
                self._changed(states, now)
            states = now
            present = [r for r in self.roots if now[r] is not None]
            self._pending.roots.update(present)  # a watch (re)started: catch up
            if not present:
                self.stop.wait(settings.poll)
                continue
            changes = watch(
                *present,
                watch_filter=None,
                debounce=_ms(settings.debounce),
                step=_ms(settings.quiet),
                stop_event=self.stop,
                rust_timeout=_ms(settings.poll),
                yield_on_timeout=True,  # so roots that went or came are noticed
                ignore_permission_denied=True,
            )
            try:
                for batch in changes:
                    self._note(batch, states)
                    if self._states() != states:
                        break  # restart the watch on the roots there now
                    self._flush()
            except FileNotFoundError:
                self.stop.wait(settings.poll)  # a root went between the check and the watch
                continue
            except OSError as e:
                raise UsageError(
                    f"cannot watch {', '.join(display(r) for r in present)}: {e} "
                    "(on Linux, a large tree may need a higher fs.inotify.max_user_watches)"
                ) from e

    def _states(self) -> dict[Path, _Identity | None]:
        return {root: _identity(root) for root in self.roots}

    def _changed(
        self, before: dict[Path, _Identity | None], now: dict[Path, _Identity | None]
    ) -> None:
        for root in self.roots:
            if before[root] == now[root]:
                continue
            self._pending.drop_under(root)  # events of what was there, or of nothing
            if now[root] is None:
                self._emit("paused", _paused(root))
            else:
                self._emit("resumed", f"{display(root)} is back: catching up")

    def _note(self, changes: Iterable[tuple[Any, str]], states: dict[Path, Any]) -> None:
        """Queue the paths worth a look: images, folders, and whatever was deleted."""
        db = str(self.index.db_path)
        for _change, name in changes:
            path = Path(name)
            root = self._root_of(path)
            if root is None or states[root] is None or _under(path, Path(db)):
                continue
            if path == root:
                self._pending.roots.add(root)
            elif self._wanted(path, root):
                self._pending.paths.add(path)

    def _root_of(self, path: Path) -> Path | None:
        holders = [r for r in self.roots if _under(path, r)]
        return max(holders, key=lambda r: len(r.parts)) if holders else None

    def _wanted(self, path: Path, root: Path) -> bool:
        """Whether the walk of `photon index` would take path (or, gone, whatever it
        held): not hidden or excluded, a folder or a picture, not a link to something
        the walk meets under its own path."""
        if not is_utf8(str(path)) or self._left_out(path.relative_to(root).parts):
            return False
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return True  # deleted: its rows, if any, go
        except OSError:
            return False
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(path)
            if any(_under(Path(target), Path(os.path.realpath(r))) for r in self.roots):
                return False
            try:
                st = os.stat(path)
            except OSError:
                return False
        return stat.S_ISDIR(st.st_mode) or path.suffix.lower() in IMAGE_SUFFIXES

    def _left_out(self, parts: Sequence[str]) -> bool:
        """discover()'s rule: a hidden name, or a glob matching a name or its path
        relative to the root, at any level."""
        index = self.settings.index
        rel = ""
        for name in parts:
            rel += name
            if name.startswith(".") and not index.include_hidden:
                return True
            if any(fnmatch(rel, g) or fnmatch(name, g) for g in index.exclude):
                return True
            rel += "/"
        return False

    def _flush(self) -> None:
        """Index what is pending, under the writer lock; wait if another process holds
        it, retry a batch that failed."""
        pending = self._pending
        if not (pending.roots or pending.paths) or time.monotonic() < pending.retry_at:
            return
        roots = sorted(pending.roots)
        paths = _outermost(p for p in pending.paths if not any(_under(p, r) for r in roots))
        try:
            with write_lock(self.index.db_path):
                report = self._write(roots, paths)
        except WriterBusy as e:
            if not self._waiting:
                self._emit("waiting", f"{e}: the changes are indexed once it has finished")
            self._waiting = True
            return
        except Interrupted as e:
            if e.report is not None:  # what the cut batch committed counts too
                self._count(e.report)
            raise
        except PhotonError as e:
            self._failed(str(e))
            return
        self._waiting = False
        pending.clear()
        self._count(report)
        self._emit("indexed", report=report)

    def _write(self, roots: list[Path], paths: list[Path]) -> IndexReport:
        assert self._loaded is not None
        index = self.index
        table = index._table_for(self._loaded, self.model_ref)
        index._finish_actions(table)  # an interrupted dedupe action first, as index does
        reports = []
        if roots:  # whole roots: a missing or empty one keeps its rows, as in photon index
            reports.append(self._ingest(table, roots, forget_missing=False))
            add_roots(index.db_path, roots)
            record_mounts(index.db_path, table.paths(), roots, forget_missing=False)
        if paths:  # under a present root: a path gone or emptied is gone
            reports.append(self._ingest(table, paths, forget_missing=True))
        report = _merged(reports)
        index._finish_run(table, report)
        return report

    def _ingest(
        self, table: ImageTable, scopes: list[Path], *, forget_missing: bool
    ) -> IndexReport:
        assert self._loaded is not None
        ingest = Ingest(
            table,
            self._loaded,
            self.settings,
            progress=False,
            forget_missing=forget_missing,
            unmounted=unmounted(self.index.db_path),
            pool=self._warm_pool,
        )
        return ingest.run(scopes)

    def _warm_pool(self) -> EmbedPool:
        if self._pool is None:
            assert self._loaded is not None
            self._pool = start_pool(self._loaded, self.settings, None)
            self.report.device = self._pool.device
        return self._pool

    def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()

    def _failed(self, error: str) -> None:
        self._close_pool()  # it may hold the failed batch's jobs
        pending = self._pending
        pending.attempts += 1
        if pending.attempts >= ATTEMPTS:
            pending.clear()
            self._emit(
                "failed",
                f"{error}; gave up on these changes after {ATTEMPTS} tries: run "
                "`photon index` on the folders once the problem is fixed",
            )
            return
        pending.retry_at = time.monotonic() + RETRY_SECONDS
        self._emit("failed", f"{error}; trying again in {RETRY_SECONDS:.0f} s")

    def _count(self, report: IndexReport) -> None:
        total = self.report
        total.batches += 1
        total.indexed += report.indexed
        total.reused += report.reused
        total.removed += report.removed
        total.failed += report.failed

    def _emit(self, kind: EventKind, message: str = "", report: IndexReport | None = None) -> None:
        self.on_event(WatchEvent(kind, message, report))


@contextmanager
def watching(
    index: Index,
    roots: Sequence[Path | str],
    on_event: Callable[[WatchEvent], None],
    *,
    model: str | None = None,
) -> Iterator[Watcher]:
    """Watch roots in a thread while the block runs (photon serve --watch). What can be
    checked is checked first, here; a failure later is an event and ends the watch."""
    stop = threading.Event()
    watcher = Watcher(index, roots, model=model, stop=stop, on_event=on_event)
    watcher.prepare()

    def main() -> None:
        try:
            watcher.run()
        except PhotonError as e:
            on_event(WatchEvent("failed", f"{e}; watching stopped"))

    thread = threading.Thread(target=main, name="photon-watch", daemon=True)
    thread.start()
    try:
        yield watcher
    finally:
        stop.set()
        # A batch is not stopped midway: one still running at exit ends with the
        # process, and keeps what it committed.
        thread.join(timeout=STOP_SECONDS)


def _watchfiles() -> Callable[..., Iterator[set[tuple[Any, str]]]]:
    try:
        from watchfiles import watch
    except ModuleNotFoundError as e:
        raise UsageError(f"{INSTALL_HINT} ({e.name} is missing)") from e
    return watch


def _identity(root: Path) -> _Identity | None:
    try:
        st = os.stat(root)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _merged(reports: list[IndexReport]) -> IndexReport:
    total = IndexReport()
    for r in reports:
        total.discovered += r.discovered
        total.indexed += r.indexed
        total.reused += r.reused
        total.skipped += r.skipped
        total.removed += r.removed
        total.failed += r.failed
        total.elapsed = round(total.elapsed + r.elapsed, 3)
        total.device = r.device or total.device
        total.failures += r.failures
        total.warnings += r.warnings
    return total


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """paths without those under another of them (a folder's walk covers them)."""
    kept: list[Path] = []
    for path in sorted(paths, key=lambda p: p.parts):
        if not (kept and _under(path, kept[-1])):
            kept.append(path)
    return kept


def _under(path: Path, scope: Path) -> bool:
    return path == scope or scope in path.parents


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _paused(root: Path) -> str:
    return (
        f"{display(root)} is missing: watching it paused, its indexed pictures are kept "
        "(an unmounted drive?); it resumes when the folder is back"
    )


def _watching(roots: Sequence[Path]) -> str:
    names = ", ".join(display(r) for r in roots)
    return f"watching {names} for changes (Ctrl-C stops)"

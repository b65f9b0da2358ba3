"""Walk folder trees and stream the image files found in them, one at a time."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from PIL import features

from photon_index.errors import UsageError
from photon_index.files import HEIF_SUFFIXES, RAW_SUFFIXES, VIDEO_SUFFIXES

_PILLOW_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
# AVIF is read by Pillow itself when it is built with libavif (its wheels are, since
# 11.3); pillow-heif no longer reads AVIF.
_AVIF_SUFFIXES = {".avif"} if features.check("avif") else set()

# HEIC, RAW and video files are found whether or not the extra that reads them is
# installed: the indexer counts those it cannot read and says what to install.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    _PILLOW_SUFFIXES | _AVIF_SUFFIXES | HEIF_SUFFIXES | RAW_SUFFIXES | VIDEO_SUFFIXES
)


@dataclass(frozen=True)
class FoundFile:
    path: Path  # absolute, as reached under root: not resolved through symlinks
    root: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class WalkError:
    path: Path
    reason: str


# A folder to enter next: its path and its path relative to the root, ending in "/".
_Folder = tuple[Path, str]


def display(path: Path) -> str:
    """The path as printable text, even when its name is not valid UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def discover(
    roots: Sequence[Path],
    *,
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
    skip: Sequence[Path] = (),
) -> Iterator[FoundFile | WalkError]:
    """Image files under roots, depth first in name order; problems come as WalkError.
    skip: folders never entered (the database's own, whose thumbnails are pictures).

    The roots are checked at once, not on first iteration: UsageError for a bad one.
    """
    absolute = [Path(os.path.abspath(root)) for root in roots]
    stats = [(root, _stat_root(root)) for root in absolute]
    walk = _Walk(exclude, include_hidden, [os.path.realpath(root) for root in absolute])
    for folder in skip:
        with contextlib.suppress(OSError):  # not made yet: nothing to skip
            _first_visit(walk.seen_dirs, folder.stat())  # as if entered already
    return walk.roots(stats)


def _stat_root(root: Path) -> os.stat_result:
    if not is_utf8(str(root)):
        raise UsageError(f"{display(root)} is not valid UTF-8; rename it to index it")
    try:
        return root.stat()
    except FileNotFoundError:
        raise UsageError(f"{display(root)} does not exist; check the path") from None
    except OSError as e:
        raise UsageError(f"cannot read {display(root)}: {e.strerror or e}") from None


class _Walk:
    """One walk's state: what was visited, so nothing is entered or yielded twice."""

    def __init__(self, exclude: Sequence[str], include_hidden: bool, inside: list[str]) -> None:
        self.exclude = exclude
        self.include_hidden = include_hidden
        self.inside = inside  # the roots, resolved
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files: set[tuple[int, int]] = set()

    def roots(self, roots: list[tuple[Path, os.stat_result]]) -> Iterator[FoundFile | WalkError]:
        for root, st in roots:
            if stat.S_ISDIR(st.st_mode):
                yield from self._tree(root, st)
            elif stat.S_ISREG(st.st_mode) and _is_image(root.name):
                yield from self._file(root, root, st)

    def _tree(self, root: Path, st: os.stat_result) -> Iterator[FoundFile | WalkError]:
        if not _first_visit(self.seen_dirs, st):
            return
        # A stack of open listings rather than recursion: files and folders come out
        # interleaved in name order, and depth is not limited by Python's stack.
        stack = [self._listing(root, root, "")]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
            elif isinstance(item, tuple):
                stack.append(self._listing(root, *item))
            else:
                yield item

    def _listing(
        self, root: Path, folder: Path, rel: str
    ) -> Iterator[FoundFile | WalkError | _Folder]:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            yield WalkError(folder, f"cannot read folder: {e.strerror or e}")
            return
        for entry in entries:
            if not self._skipped(entry.name, rel + entry.name):
                yield from self._entry(root, entry, rel)

    def _skipped(self, name: str, rel: str) -> bool:
        if name.startswith(".") and not self.include_hidden:
            return True
        return any(fnmatch(rel, pattern) or fnmatch(name, pattern) for pattern in self.exclude)

    def _entry(
        self, root: Path, entry: os.DirEntry[str], rel: str
    ) -> Iterator[FoundFile | WalkError | _Folder]:
        path = Path(entry.path)
        try:
            if not _is_image(entry.name) and entry.is_file(follow_symlinks=False):
                return  # the common case, decided without a stat call
            if entry.is_symlink() and self._leads_inside(path):
                return
            st = entry.stat()
        except OSError as e:
            yield WalkError(path, _stat_reason(path, e))
            return
        if stat.S_ISDIR(st.st_mode):
            if not _first_visit(self.seen_dirs, st):
                return
            if not is_utf8(entry.name):
                yield WalkError(path, "folder name is not valid UTF-8; rename it to index it")
                return
            yield path, f"{rel}{entry.name}/"
        elif stat.S_ISREG(st.st_mode) and _is_image(entry.name):
            yield from self._file(root, path, st)

    def _leads_inside(self, link: Path) -> bool:
        """A link to a file or folder under a root: the walk meets the target under its
        own path, which is the one to keep (a link sorting first would otherwise take
        the real file's place, and lose it when the link goes)."""
        target = os.path.realpath(link)
        if not os.path.exists(target):
            return False  # broken: reported as such
        return any(target == r or target.startswith(r.rstrip(os.sep) + os.sep) for r in self.inside)

    def _file(self, root: Path, path: Path, st: os.stat_result) -> Iterator[FoundFile | WalkError]:
        if not _first_visit(self.seen_files, st):
            return
        if not is_utf8(path.name):
            yield WalkError(path, "file name is not valid UTF-8; rename it to index it")
            return
        yield FoundFile(path, root, st.st_size, st.st_mtime_ns)


def _first_visit(seen: set[tuple[int, int]], st: os.stat_result) -> bool:
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def is_utf8(text: str) -> bool:
    # os.fsdecode turns bytes that are not UTF-8 into lone surrogates, which can't encode.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _stat_reason(path: Path, error: OSError) -> str:
    if os.path.islink(path) and isinstance(error, FileNotFoundError):
        return "broken symbolic link: its target does not exist"
    return f"cannot read: {error.strerror or error}"

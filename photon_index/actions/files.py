"""Moving one file without ever losing it: the target is complete and identical before
the source goes, and an existing target is never overwritten."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from photon_index.hashing import file_hash


def move_file(source: Path, target: Path) -> None:
    """Move source to target. A hard link then an unlink, or across filesystems a copy to
    a hidden partial file, checked byte for byte, then a rename, then an unlink. An
    existing target, even the source itself under another name, raises FileExistsError:
    never "finish" a move by deleting a source that is its own target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target, follow_symlinks=False)  # atomic; refuses an existing target
    except FileExistsError:
        raise
    except OSError:
        _copy(source, target)  # another filesystem, or one without hard links
    sync_folder(target.parent)  # the new name is on disk before the old one goes
    source.unlink()


def _copy(source: Path, target: Path) -> None:
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    partial = partial_name(target)
    try:
        shutil.copy2(source, partial, follow_symlinks=False)
        if not partial.is_symlink():
            with open(partial, "rb") as f:
                os.fsync(f.fileno())  # on disk before the source is deleted
            if file_hash(partial) != file_hash(source):
                raise OSError(errno.EIO, f"the copy at {partial} differs from {source}")
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
        os.rename(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def partial_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.partial")


def sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open a folder
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

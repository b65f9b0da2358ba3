"""Checking a `--move-to` folder before anything moves.

The indexed folders are the roots `photon index` recorded (store/roots.py) and the
folders that hold the table's files (all a database indexed before roots were recorded
can tell): the destination may not be one of them, inside one (the next `photon index`
would bring the copies back, and a later dedupe could keep a moved copy and remove the
original), or above one (the root `/`, or $DIR/ with DIR unset, is above everything).
Nor may it be empty (`--move-to "$DIR"`, DIR unset, would mean the current folder), or
inside the database folder or a trash folder (emptying the trash, or managing the index,
would lose the copies). It must be a folder (made if missing) that photon can write to,
with room for every file that cannot be hard-linked. A name the journal cannot record
(a NUL, bytes that are not UTF-8, an unknown ~user) is refused before the batch begins.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

from photon_index.actions.trash import trash_folders
from photon_index.errors import UsageError
from photon_index.query.search import printable
from photon_index.sizes import human_size

# Room kept beyond the copies' bytes, for the folders the moves make.
_MARGIN = 1 << 20


def target_for(destination: Path, source: Path) -> Path:
    """Where source goes: its whole absolute path below destination, anchor removed, so
    files from anywhere never collide and are easy to put back."""
    return destination.joinpath(*Path(os.path.abspath(source)).parts[1:])


def check_destination(
    destination: str | PathLike[str],
    roots: Iterable[Path],
    table_paths: Iterable[str],
    moving: Iterable[str],
    db: Path,
) -> Path:
    """The destination as an absolute folder, made if missing; UsageError if it is unsafe
    or unusable for moving the files `moving` out of the library indexed from roots into
    the database db."""
    destination = _absolute(destination)
    shown = printable(str(destination))
    real = Path(os.path.realpath(destination))
    kept = [(Path(os.path.realpath(db)), "the index's database folder")]
    kept += [(Path(os.path.realpath(t)), "a trash folder") for t in trash_folders(destination)]
    for folder, what in kept:
        if real == folder or folder in real.parents:
            raise UsageError(
                f"--move-to {shown} is inside {what} {printable(str(folder))}: choose a "
                "folder of its own"
            )
    if real == Path(real.anchor) or destination == Path(destination.anchor):
        raise UsageError(f"--move-to {shown} is the root folder: choose a folder of its own")
    if os.path.lexists(destination) and not destination.is_dir():
        raise UsageError(f"--move-to {shown} is not a folder: choose a folder")
    folders = {Path(os.path.realpath(os.path.dirname(p))) for p in table_paths}
    folders |= {Path(os.path.realpath(root)) for root in roots}
    for folder in sorted(folders):
        indexed = printable(str(folder))
        if real == folder or folder in real.parents:
            raise UsageError(
                f"--move-to {shown} is inside the indexed folder {indexed}: the next "
                "`photon index` would add the copies back; choose a folder outside it"
            )
        if real in folder.parents:
            raise UsageError(
                f"--move-to {shown} holds the indexed folder {indexed}: choose a "
                "folder outside your pictures"
            )
    try:
        destination.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=destination):
            pass  # permissions, read-only mounts and ACLs all say no here
    except OSError as e:
        raise UsageError(
            f"cannot write to --move-to {shown} ({e.strerror or e}): choose a writable folder"
        ) from e
    _check_room(destination, moving)
    return destination


def _absolute(destination: str | PathLike[str]) -> Path:
    """destination as an absolute path the journal can record, else UsageError."""
    text = os.fspath(destination)
    if not text.strip():
        raise UsageError("--move-to is empty (an unset variable?): name the folder to move to")
    if "\0" in text:
        raise UsageError(f"--move-to {printable(text)} holds a NUL character: name a folder")
    try:
        text.encode("utf-8")
        return Path(os.path.abspath(Path(text).expanduser()))
    except UnicodeEncodeError:
        raise UsageError(
            f"--move-to {printable(text)} is not valid UTF-8: choose a folder with a plain name"
        ) from None
    except RuntimeError:  # ~name of no user
        raise UsageError(f"--move-to {printable(text)}: no such user's home folder") from None


def _check_room(destination: Path, moving: Iterable[str]) -> None:
    """Files on the destination's device are hard-linked and take no room; the others
    are copied."""
    device = os.stat(destination).st_dev
    needed = 0
    for path in moving:
        try:
            stat = os.lstat(path)
        except OSError:
            continue  # the action's own checks will leave it alone
        if stat.st_dev != device:
            needed += stat.st_size
    free = shutil.disk_usage(destination).free
    if needed + _MARGIN > free:
        raise UsageError(
            f"--move-to {printable(str(destination))} has {human_size(free)} free but the "
            f"copies need {human_size(needed)}: free some space or choose another folder"
        )

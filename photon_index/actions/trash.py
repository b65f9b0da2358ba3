"""The system trash: send2trash puts a file there, and on Linux (the freedesktop trash)
photon finds it again by its .trashinfo, so `photon dedupe --undo` can put it back.

send2trash moves a file on the home device to $XDG_DATA_HOME/Trash (default
~/.local/share/Trash) and one on another device to `$topdir/.Trash/$uid` or
`$topdir/.Trash-$uid` at the top of its mount; each trashed file is `files/NAME` with
`info/NAME.trashinfo` saying where it came from. On macOS and Windows the place is the
system's business: trashed files are restored from the system's trash there.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from photon_index.actions.files import move_file

FREEDESKTOP = sys.platform not in ("darwin", "win32")


@dataclass(frozen=True)
class Trashed:
    file: str  # the file in the trash
    info: str  # its .trashinfo


def trash(path: Path) -> Trashed | None:
    """Send path to the trash; where it now lies, or None where that can't be known."""
    from send2trash import send2trash

    inode = os.lstat(path).st_ino
    send2trash(str(path))
    return locate(path, inode)


def locate(original: Path, inode: int | None = None) -> Trashed | None:
    """The trashed file that came from original: the one with that inode if given (a
    rename keeps it), else the latest trashed from there."""
    if not FREEDESKTOP:
        return None
    found: list[tuple[bool, float, Trashed]] = []
    wanted = os.path.abspath(original)
    stem, ext = os.path.splitext(original.name)
    for trash_dir, topdir in _trash_dirs(original):
        # send2trash names it NAME, or "STEM N.EXT" when NAME is taken.
        for info in (trash_dir / "info").glob(f"{_glob_escape(stem)}*.trashinfo"):
            file = trash_dir / "files" / info.name[: -len(".trashinfo")]
            if not file.name.endswith(ext) or _origin(info, topdir) != wanted:
                continue
            try:
                same = inode is not None and os.lstat(file).st_ino == inode
                found.append((same, info.stat().st_mtime, Trashed(str(file), str(info))))
            except OSError:
                continue  # its file is gone: restored or emptied
    return max(found, key=lambda f: f[:2])[2] if found else None


def restore(trashed: Trashed, original: Path) -> None:
    """Put a trashed file back where it came from (never over an existing file)."""
    move_file(Path(trashed.file), original)
    Path(trashed.info).unlink(missing_ok=True)


def trash_folders(place: Path) -> list[Path]:
    """The trash folders a file in the folder place may be sent to."""
    return [folder for folder, _ in _trash_dirs(place / "file")]


def _trash_dirs(original: Path) -> list[tuple[Path, Path]]:
    """(trash folder, the folder its .trashinfo paths are relative to) that send2trash
    may have used for original."""
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    homes = [data_home.expanduser()]
    loaded = sys.modules.get("send2trash.plat_other")
    if loaded is not None:  # it reads XDG_DATA_HOME once, at import
        homes.append(Path(os.fsdecode(loaded.XDG_DATA_HOME)))
    dirs = [(home / "Trash", home) for home in dict.fromkeys(homes)]
    top = _mount_point(original.parent)
    uid = str(os.getuid()) if hasattr(os, "getuid") else ""
    dirs += [(top / ".Trash" / uid, top), (top / f".Trash-{uid}", top)]
    return dirs


def _mount_point(folder: Path) -> Path:
    path = Path(os.path.realpath(folder))
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _origin(info: Path, topdir: Path) -> str | None:
    try:
        lines = info.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    value = next((line[5:] for line in lines if line.startswith("Path=")), None)
    if value is None:
        return None
    return os.path.abspath(os.path.join(topdir, unquote(value)))  # join keeps an absolute one


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)

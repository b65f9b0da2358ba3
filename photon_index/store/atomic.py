"""Small files in the database folder that other processes read while they change
(progress.json, dismissed.json, thumbnails): written whole, then renamed into place."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from photon_index.errors import DatabaseError


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Make path with write(file), through a temp file in the same folder renamed over
    it: a reader sees the old file or the new one, never part of one, and a process
    killed mid-write leaves only a stray temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of our own, opened with O_EXCL: threads and processes writing the same path
    # never share a temp file. Not mkstemp, whose 0600 would hide the file from a web
    # server running as another user; this one gets the umask's mode like any other.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_record(path: Path, value: object) -> None:
    """A database folder's small JSON file, written atomically; DatabaseError if not."""
    text = json.dumps(value, indent=1) + "\n"
    try:
        write_atomic(path, lambda f: f.write(text.encode()))
    except OSError as e:
        raise DatabaseError(
            f"cannot write {path}: {e.strerror or e}; "
            "free some space or make the database folder writable"
        ) from e


def read_json_strings(path: Path, key: str, advice: str) -> list[str]:
    """The list of strings under key in a database folder's small JSON file; none when
    there is no file. One that cannot be read is a DatabaseError ending with advice."""
    try:
        values = json.loads(path.read_text("utf-8"))[key]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{key} is not a list of strings")
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatabaseError(f"cannot read {path} ({e}): {advice}") from e
    return values

"""Pictures on object storage: the objects under an s3:// prefix, listed, stat'ed and
read through pyarrow's S3 filesystem with the storage settings (store/location.py).
A picture's path is then its URI, s3://bucket/key; local paths go on to the files.

An object's size and its last-modified time (to the second, as S3 keeps it) stand
in for a file's size and mtime: an object rewritten with other bytes gets a new
last-modified time, so an unchanged object is skipped without being read."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from fnmatch import fnmatch
from functools import cache
from pathlib import Path

from photon_index.decode import read_bytes, read_error
from photon_index.discover import IMAGE_SUFFIXES, FoundFile, WalkError
from photon_index.hashing import file_hash
from photon_index.store.location import SCHEME, Storage, is_remote

_CHUNK = 1 << 20


def list_objects(
    root: str, storage: Storage, *, exclude: Sequence[str] = (), include_hidden: bool = False
) -> Iterator[FoundFile | WalkError]:
    """The pictures under root (an s3:// prefix, or one object), in key order. Hidden
    names (a part starting with ".") and exclude globs are left out as discover() does."""
    from pyarrow.fs import FileSelector, FileType

    fs, prefix = storage.filesystem(), root.removeprefix(SCHEME).rstrip("/")
    try:
        single = fs.get_file_info(prefix)
        if single.type == FileType.File:
            infos = [single]
        else:
            infos = fs.get_file_info(FileSelector(prefix, recursive=True, allow_not_found=True))
    except OSError as e:
        # The URI as given: a Path would fold its "//".
        yield WalkError(root, f"cannot list objects: {_reason(e)}")  # type: ignore[arg-type]
        return
    for info in sorted(infos, key=lambda i: i.path):
        rel = info.path[len(prefix) :].lstrip("/") or info.base_name
        if info.type != FileType.File or not _wanted(rel, exclude, include_hidden):
            continue
        yield FoundFile(SCHEME + info.path, root, info.size, info.mtime_ns)  # type: ignore[arg-type]


def prefix_exists(root: str, storage: Storage) -> bool:
    """Whether an object lies at or under root (an s3:// URI): a misspelled bucket or
    prefix has none. True when the storage cannot be asked: the listing says why."""
    from pyarrow.fs import FileType

    try:
        info = storage.filesystem().get_file_info(root.removeprefix(SCHEME).rstrip("/"))
    except OSError:
        return True
    return info.type != FileType.NotFound


def _wanted(rel: str, exclude: Sequence[str], include_hidden: bool) -> bool:
    parts = rel.split("/")
    if not include_hidden and any(p.startswith(".") for p in parts):
        return False
    if any(fnmatch(rel, pattern) or fnmatch(parts[-1], pattern) for pattern in exclude):
        return False
    return os.path.splitext(parts[-1])[1].lower() in IMAGE_SUFFIXES


def read_source(path: str, storage: Storage | None = None) -> bytes:
    """A picture's bytes: a local file's, or an s3:// object's (storage: default_storage()
    when not given). ImageError when it cannot be read."""
    if not is_remote(path):
        return read_bytes(Path(path))
    fs = (storage or default_storage()).filesystem()
    try:
        with fs.open_input_stream(path.removeprefix(SCHEME)) as f:
            return f.read()
    except OSError as e:
        raise read_error(e) from None


def source_hash(path: Path | str, storage: Storage | None = None) -> str:
    """content_hash of a file or object, streamed: memory stays flat however large."""
    if not is_remote(path):
        return file_hash(Path(path))
    digest = hashlib.blake2b(digest_size=16)
    fs = (storage or default_storage()).filesystem()
    with fs.open_input_stream(str(path).removeprefix(SCHEME)) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def stamp(path: str, storage: Storage | None = None) -> tuple[int, int]:
    """(size, mtime_ns) of a file or object, as the index records them; OSError
    (FileNotFoundError when it is gone) when it cannot be read."""
    if not is_remote(path):
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    from pyarrow.fs import FileType

    info = (storage or default_storage()).filesystem().get_file_info(path[len(SCHEME) :])
    if info.type == FileType.NotFound:
        raise FileNotFoundError(path)
    return info.size, info.mtime_ns


def vanished(path: str, storage: Storage | None = None) -> bool:
    """Whether a picture is gone (unreadable is not gone)."""
    if not is_remote(path):
        try:
            os.lstat(path)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return False
    from pyarrow.fs import FileType

    try:
        info = (storage or default_storage()).filesystem().get_file_info(path[len(SCHEME) :])
    except OSError:
        return False
    return info.type == FileType.NotFound


@cache
def default_storage() -> Storage:
    """The storage settings of this process's configuration (worker processes read
    them as the indexer did: same environment, same config file)."""
    from photon_index.config import Settings

    return Storage.from_settings(Settings.load())


def _reason(e: OSError) -> str:
    return " ".join(str(e).split())[:200]

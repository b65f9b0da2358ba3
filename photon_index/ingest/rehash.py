"""Filling in the hashes a row lacks because it was indexed before they existed (the
schema migration of dedupe's second hashes): each such file is read and decoded once
and hashed, and only its hash columns are written. Nothing is embedded again.

Resumable: every batch is committed, and a run after an interruption takes up the rows
still lacking them. A file that changed since it was indexed is left to the indexer
(its row is replaced with fresh hashes); one that cannot be read or decoded keeps its
nulls, so dedupe pairs it by pHash alone, and the next run tries again."""

from __future__ import annotations

import os
from collections.abc import Callable

import pyarrow as pa

from photon_index.decode import decode_file
from photon_index.errors import PhotonError
from photon_index.files import split_frame
from photon_index.hashing import perceptual_hashes
from photon_index.sources import read_source
from photon_index.store.schema import PHASH_BYTES, SECOND_HASHES
from photon_index.store.table import ImageTable

_BATCH = 256  # files hashed per commit
LACKING = " OR ".join(f"{name} IS NULL" for name in SECOND_HASHES)


def fill_hashes(
    table: ImageTable,
    *,
    max_pixels: int,
    draft: tuple[int, int],
    done: Callable[[int], None] = lambda n: None,
) -> int:
    """Hash the files of the rows lacking any of the SECOND_HASHES; returns how many
    rows got them. done(n) is called after each committed batch of n."""
    table.add_missing_columns()
    lacking = table.columns(["path", "file_size", "mtime_ns"], LACKING).to_pylist()
    # A video's frames are hashed when the video is indexed; dedupe leaves them out.
    lacking = [r for r in lacking if split_frame(r["path"])[1] is None]
    filled = 0
    for start in range(0, len(lacking), _BATCH):
        hashed = [_hashes(row, max_pixels, draft) for row in lacking[start : start + _BATCH]]
        found = [h for h in hashed if h is not None]
        if found:
            table.update_columns(_as_table(found))
            filled += len(found)
            done(len(found))
    return filled


def _hashes(row: dict, max_pixels: int, draft: tuple[int, int]) -> dict | None:
    path = row["path"]
    try:
        stat = os.stat(path)
        if (stat.st_size, stat.st_mtime_ns) != (row["file_size"], row["mtime_ns"]):
            return None
        image = decode_file(path, read_source(path), max_pixels=max_pixels, draft=draft)
    except (OSError, PhotonError):
        return None
    hashes = perceptual_hashes(image.image)
    return {"path": path, **{name: getattr(hashes, name) for name in SECOND_HASHES}}


def _as_table(rows: list[dict]) -> pa.Table:
    hash_type = pa.list_(pa.uint8(), PHASH_BYTES)
    return pa.table(
        {
            "path": pa.array([r["path"] for r in rows], pa.string()),
            **{name: pa.array([list(r[name]) for r in rows], hash_type) for name in SECOND_HASHES},
        }
    )

"""Finding a row by image id. An id is a hash of the path (schema.image_id), which the
table cannot be filtered by, so a map from id to row id is built from one read of the
paths per table version: about 0.2 s at 200,000 rows, then each look-up is a binary
search and one row read, well under a millisecond, against 11 ms for a scan filtered by
path (which would still need the map to find the path)."""

from __future__ import annotations

import hashlib
import re

import numpy as np

from photon_index.store.table import ImageTable

_ID = re.compile(r"[0-9a-f]{16}")  # as image_id writes it; int() would take "0x..." too


class ImageIds:
    """The ids of one version of the table. 64-bit keys in sorted numpy arrays, not a
    dict of strings: 16 bytes a row, so a million pictures take 16 MB."""

    def __init__(self, table: ImageTable) -> None:
        self.version = table.version
        data = table.with_row_ids(["path"])
        paths = data.column("path").to_pylist()
        keys = np.fromiter((_key(p) for p in paths), dtype=np.uint64, count=len(paths))
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._rows = data.column("_rowid").to_numpy()[order]

    def row_id(self, image_id: str) -> int | None:
        """The row id of the picture with this id, or None."""
        if not _ID.fullmatch(image_id):
            return None
        key = np.uint64(int(image_id, 16))
        i = int(np.searchsorted(self._keys, key))
        if i < len(self._keys) and self._keys[i] == key:
            return int(self._rows[i])
        return None

    def row_ids(self, paths: list[str]) -> np.ndarray:
        """The row id of each path, in their order; -1 for a path not in this version."""
        keys = np.fromiter((_key(p) for p in paths), dtype=np.uint64, count=len(paths))
        if not len(self._keys):
            return np.full(len(keys), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return np.where(self._keys[at] == keys, self._rows[at].astype(np.int64), -1)


def _key(path: str) -> int:
    """image_id(path) as an integer (its first 8 bytes), without the hex round trip."""
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big")

"""The one definition of the images table: its columns, and the row record the
pipeline writes. Everything that reads or writes the table goes through here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd

TABLE_NAME = "images"
MODEL_KEY = b"photon.model"  # registry name of the model the embeddings come from
MODEL_REF_KEY = b"photon.model_ref"  # what was passed as --model, to load it again
PHASH_BYTES = 8


@dataclass(frozen=True)
class ImageRow:
    path: str
    content_hash: str
    phash: bytes  # 64-bit pHash as 8 bytes, so LanceDB can search it by Hamming distance
    file_size: int
    mtime_ns: int
    width: int
    height: int
    format: str
    taken_at: datetime | None
    camera: str | None
    latitude: float | None
    longitude: float | None
    model: str
    embedding: np.ndarray
    indexed_at: datetime
    # dedupe's second look (hashing.PerceptualHashes); None in rows indexed before them,
    # until `photon index` fills them in (fill_hashes)
    phash_trimmed: bytes | None = None
    dhash: bytes | None = None
    dhash_whole: bytes | None = None


# The hash columns as bytes in ImageRow, lists of bytes in the table.
HASH_COLUMNS = ("phash", "phash_trimmed", "dhash", "dhash_whole")
# The ones added after the first release, filled in for older rows (ingest/rehash.py).
SECOND_HASHES = ("phash_trimmed", "dhash", "dhash_whole")


@dataclass(frozen=True)
class ImageRecord:
    """One indexed picture as the library API shows it: its row without the hashes and
    embedding the queries use, and with its id."""

    id: str
    path: str
    content_hash: str
    file_size: int
    mtime: datetime  # UTC
    width: int
    height: int
    format: str
    taken_at: datetime | None  # naive local time, as cameras record it
    camera: str | None
    latitude: float | None
    longitude: float | None
    indexed_at: datetime


# The columns an ImageRecord is made from.
RECORD_COLUMNS = [
    "path",
    "content_hash",
    "file_size",
    "mtime_ns",
    "width",
    "height",
    "format",
    "taken_at",
    "camera",
    "latitude",
    "longitude",
    "indexed_at",
]


def image_id(path: str) -> str:
    """A picture's id: the first 16 hex digits of the SHA-256 of its path. Stable across
    runs and opaque, so a URL can carry it without exposing or escaping the path; a name
    that is not valid UTF-8 is hashed by the bytes the file system gave."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def record_from_row(row: dict[str, Any]) -> ImageRecord:
    """An ImageRecord from a dict of RECORD_COLUMNS."""
    values = {name: row[name] for name in RECORD_COLUMNS if name != "mtime_ns"}
    mtime = datetime.fromtimestamp(row["mtime_ns"] / 1e9, timezone.utc)
    return ImageRecord(id=image_id(row["path"]), mtime=mtime, **values)


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """table as a pandas DataFrame; pandas is not a dependency of photon."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise ImportError("to_pandas() needs pandas: pip install pandas") from None
    return table.to_pandas()


def image_schema(dim: int, model: str, model_ref: str) -> pa.Schema:
    return pa.schema(
        [
            pa.field("path", pa.string(), nullable=False),
            pa.field("content_hash", pa.string(), nullable=False),
            pa.field("phash", pa.list_(pa.uint8(), PHASH_BYTES), nullable=False),
            pa.field("file_size", pa.int64(), nullable=False),
            pa.field("mtime_ns", pa.int64(), nullable=False),
            pa.field("width", pa.int32(), nullable=False),
            pa.field("height", pa.int32(), nullable=False),
            pa.field("format", pa.string(), nullable=False),
            pa.field("taken_at", pa.timestamp("us")),
            pa.field("camera", pa.string()),
            pa.field("latitude", pa.float64()),
            pa.field("longitude", pa.float64()),
            pa.field("model", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("indexed_at", pa.timestamp("us", tz="UTC"), nullable=False),
            # Columns added after the first release are nullable: opening an older table
            # adds them, all null (ImageTable.open).
            pa.field("phash_trimmed", pa.list_(pa.uint8(), PHASH_BYTES)),
            pa.field("dhash", pa.list_(pa.uint8(), PHASH_BYTES)),
            pa.field("dhash_whole", pa.list_(pa.uint8(), PHASH_BYTES)),
        ],
        metadata={MODEL_KEY: model.encode(), MODEL_REF_KEY: model_ref.encode()},
    )


def embedding_dim(schema: pa.Schema) -> int:
    return schema.field("embedding").type.list_size


def rows_to_arrow(rows: list[ImageRow], schema: pa.Schema) -> pa.Table:
    columns = {f.name: [getattr(row, f.name) for row in rows] for f in schema}
    for name in set(HASH_COLUMNS) & set(columns):
        columns[name] = [None if h is None else list(h) for h in columns[name]]
    dim = embedding_dim(schema)
    flat = np.asarray(np.stack(columns.pop("embedding")), dtype=np.float32).reshape(-1)
    arrays = {
        name: pa.array(values, type=schema.field(name).type) for name, values in columns.items()
    }
    arrays["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
    return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)


def arrow_to_rows(table: pa.Table) -> list[ImageRow]:
    names = [f.name for f in fields(ImageRow) if f.name in table.column_names]
    data = table.select(names).to_pylist()
    for row in data:
        for name in set(HASH_COLUMNS) & set(names):
            row[name] = None if row[name] is None else bytes(row[name])
        row["embedding"] = np.asarray(row["embedding"], dtype=np.float32)
    return [ImageRow(**row) for row in data]

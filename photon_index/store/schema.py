"""The one definition of the images table: its columns, and the row record the
pipeline writes. Everything that reads or writes the table goes through here."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

import numpy as np
import pyarrow as pa

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
        ],
        metadata={MODEL_KEY: model.encode(), MODEL_REF_KEY: model_ref.encode()},
    )


def embedding_dim(schema: pa.Schema) -> int:
    return schema.field("embedding").type.list_size


def rows_to_arrow(rows: list[ImageRow], schema: pa.Schema) -> pa.Table:
    columns = {f.name: [getattr(row, f.name) for row in rows] for f in fields(ImageRow)}
    columns["phash"] = [list(h) for h in columns["phash"]]
    dim = embedding_dim(schema)
    flat = np.asarray(np.stack(columns.pop("embedding")), dtype=np.float32).reshape(-1)
    arrays = {
        name: pa.array(values, type=schema.field(name).type) for name, values in columns.items()
    }
    arrays["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), dim)
    return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)


def arrow_to_rows(table: pa.Table) -> list[ImageRow]:
    data = table.select([f.name for f in fields(ImageRow)]).to_pylist()
    for row in data:
        row["phash"] = bytes(row["phash"])
        row["embedding"] = np.asarray(row["embedding"], dtype=np.float32)
    return [ImageRow(**row) for row in data]

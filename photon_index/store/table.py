"""The LanceDB images table: opening it, the reads the indexer needs, and batched
upserts keyed by path. LanceDB commits each write atomically as a new version, so a
killed run leaves the last committed version intact and readers never see half a batch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import lancedb
import pyarrow as pa
from lancedb.index import IvfPq

from photon_index.errors import DatabaseError
from photon_index.store.schema import (
    MODEL_KEY,
    MODEL_REF_KEY,
    TABLE_NAME,
    ImageRow,
    arrow_to_rows,
    embedding_dim,
    image_schema,
    rows_to_arrow,
)

# Readers (a search during an index run) hold a version for well under this long.
_KEEP_OLD_VERSIONS = timedelta(minutes=1)
_IN_CHUNK = 500  # values per SQL IN (...) list


class ImageTable:
    def __init__(self, table: lancedb.table.Table, db_path: Path) -> None:
        self.table = table
        self.db_path = db_path
        self.schema = table.schema

    @classmethod
    def open(cls, db_path: Path) -> ImageTable | None:
        """The table at db_path, or None when nothing was indexed there yet."""
        if not db_path.exists():
            return None
        db = _connect(db_path)
        try:
            return cls(db.open_table(TABLE_NAME), db_path)
        except (ValueError, FileNotFoundError):
            return None
        except OSError as e:
            raise DatabaseError(f"cannot open the database at {db_path}: {e}") from e

    @classmethod
    def create(cls, db_path: Path, dim: int, model: str, model_ref: str) -> ImageTable:
        try:
            db_path.mkdir(parents=True, exist_ok=True)
            db = _connect(db_path)
            schema = image_schema(dim, model, model_ref)
            return cls(db.create_table(TABLE_NAME, schema=schema, exist_ok=True), db_path)
        except OSError as e:
            raise DatabaseError(f"cannot create a database at {db_path}: {e}") from e

    @property
    def model(self) -> str:
        return self.schema.metadata[MODEL_KEY].decode()

    @property
    def model_ref(self) -> str:
        meta = self.schema.metadata
        return (meta.get(MODEL_REF_KEY) or meta[MODEL_KEY]).decode()

    @property
    def dim(self) -> int:
        return embedding_dim(self.schema)

    def count(self) -> int:
        return self.table.count_rows()

    def columns(self, names: list[str], where: str | None = None) -> pa.Table:
        query = self.table.search().select(names)
        if where:
            query = query.where(where)
        return query.limit(None).to_arrow()

    def file_stamps(self) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns), to skip unchanged files without reading them."""
        data = self.columns(["path", "file_size", "mtime_ns"]).to_pydict()
        return dict(
            zip(data["path"], zip(data["file_size"], data["mtime_ns"], strict=True), strict=True)
        )

    def content_hashes(self) -> set[str]:
        return set(self.columns(["content_hash"]).column("content_hash").to_pylist())

    def rows_by_hash(self, hashes: Iterable[str]) -> dict[str, ImageRow]:
        """One stored row per content hash: what a moved or copied file can reuse."""
        found: dict[str, ImageRow] = {}
        for chunk in _chunks(sorted(set(hashes))):
            where = f"content_hash IN ({_sql_list(chunk)})"
            for row in arrow_to_rows(self.columns([f.name for f in self.schema], where)):
                found.setdefault(row.content_hash, row)
        return found

    def upsert(self, rows: list[ImageRow]) -> None:
        if not rows:
            return
        data = rows_to_arrow(rows, self.schema)
        try:
            (
                self.table.merge_insert("path")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )
        except OSError as e:
            raise DatabaseError(f"cannot write to the database at {self.db_path}: {e}") from e

    def delete_paths(self, paths: Iterable[str]) -> None:
        for chunk in _chunks(sorted(paths)):
            self.table.delete(f"path IN ({_sql_list(chunk)})")

    def paths(self) -> Iterator[str]:
        yield from self.columns(["path"]).column("path").to_pylist()

    def vector_index(self) -> str | None:
        """Name of the ANN index on the embeddings, if one was built."""
        return next((i.name for i in self.table.list_indices() if "embedding" in i.columns), None)

    def build_vector_index(self, rows_per_partition: int) -> None:
        """(Re)train the ANN index. Cosine, IVF partitions of about rows_per_partition
        rows each, product quantisation into 8-dimension sub-vectors; searches re-rank
        refine_factor times more candidates exactly, so recall stays high."""
        rows = self.count()
        config = IvfPq(
            distance_type="cosine",
            num_partitions=max(1, rows // rows_per_partition),
            num_sub_vectors=max(1, self.dim // 8),
        )
        self.table.create_index("embedding", config=config, replace=True)

    def optimize(self) -> None:
        """Merge the many small commits of a run and drop versions no reader needs."""
        self.table.optimize(cleanup_older_than=_KEEP_OLD_VERSIONS)


def _connect(db_path: Path) -> lancedb.DBConnection:
    try:
        return lancedb.connect(str(db_path))
    except (OSError, ValueError) as e:
        raise DatabaseError(f"cannot open the database at {db_path}: {e}") from e


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_list(values: list[str]) -> str:
    return ", ".join(sql_quote(v) for v in values)

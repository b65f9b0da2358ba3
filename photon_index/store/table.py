"""The images table: opening it, the reads the indexer and the queries need, and
batched writes keyed by path. Each write is committed atomically as a new version, so
a killed run leaves the last committed version intact and readers never see half a batch.

Writes go through lancedb; reads and compaction go through pylance, the Lance format
library that lancedb is built on, on the same files. Reads, for start-up time: `import
lancedb` builds its namespace REST client at import (about 1 s on a 2-core machine),
which would dominate every `photon search`; `import lance` takes about 0.2 s.
Compaction, because lancedb's optimize() cannot bound what it rewrites (FRAGMENT_ROWS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import lance
import numpy as np
import pyarrow as pa

from photon_index.errors import DatabaseError, UsageError
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

if TYPE_CHECKING:
    import lancedb

# Readers (a search during an index run) hold a version for well under this long.
_KEEP_OLD_VERSIONS = timedelta(minutes=1)
_IN_CHUNK = 500  # values per SQL IN (...) list
# Compaction merges fragments smaller than this and leaves larger ones alone, so what it
# rewrites is bounded by this, not by the library. With Lance's default (a million rows)
# each compaction, every 100 commits of a run and at its end, rewrote the whole table:
# 2.6 s against 0.24 s at 200,000 rows (benchmarks/commits.py).
FRAGMENT_ROWS = 20_000


@dataclass(frozen=True)
class Nearest:
    """How an embedding search runs: IVF partitions probed, and how many times more
    candidates than asked for are re-ranked by exact distance (ignored without an index)."""

    nprobes: int
    refine_factor: int


class ImageTable:
    def __init__(self, dataset: lance.LanceDataset, db_path: Path) -> None:
        self.dataset = dataset
        self.db_path = db_path
        self._writer: lancedb.table.Table | None = None

    @classmethod
    def open(cls, db_path: Path) -> ImageTable | None:
        """The table at db_path, or None when nothing was indexed there yet."""
        uri = _uri(db_path)
        if not uri.is_dir():
            return None
        try:
            return cls(lance.dataset(str(uri)), db_path)
        except (ValueError, FileNotFoundError):
            return None
        except OSError as e:
            raise DatabaseError(f"cannot open the database at {db_path}: {e}") from e

    @classmethod
    def create(cls, db_path: Path, dim: int, model: str, model_ref: str) -> ImageTable:
        try:
            db_path.mkdir(parents=True, exist_ok=True)
            schema = image_schema(dim, model, model_ref)
            _connect(db_path).create_table(TABLE_NAME, schema=schema, exist_ok=True)
        except OSError as e:
            raise DatabaseError(f"cannot create a database at {db_path}: {e}") from e
        table = cls.open(db_path)
        if table is None:
            raise DatabaseError(f"cannot create a database at {db_path}")
        return table

    @property
    def writer(self) -> lancedb.table.Table:
        """The lancedb table, opened on the first write."""
        if self._writer is None:
            self._writer = _connect(self.db_path).open_table(TABLE_NAME)
        return self._writer

    @property
    def schema(self) -> pa.Schema:
        return self.dataset.schema

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

    @property
    def version(self) -> int:
        return self.dataset.version

    def count(self) -> int:
        return self.dataset.count_rows()

    def columns(self, names: list[str], where: str | None = None) -> pa.Table:
        return self.dataset.to_table(columns=names, filter=where)

    def nearest(
        self,
        vector: np.ndarray,
        limit: int,
        how: Nearest,
        columns: list[str],
        where: str | None = None,
    ) -> pa.Table:
        """The rows whose embeddings are closest by cosine distance (column `_distance`),
        among those that pass where (a filter applied before the search, not after)."""
        query = {
            "column": "embedding",
            "q": vector,
            "k": limit,
            "metric": "cosine",
            "nprobes": how.nprobes,
            "refine_factor": how.refine_factor,
        }
        try:
            return self.dataset.to_table(
                columns=[*columns, "_distance"], nearest=query, filter=where, prefilter=True
            )
        except OSError as e:
            raise DatabaseError(f"cannot read the database at {self.db_path}: {e}") from e
        except (ValueError, RuntimeError) as e:
            if where is None:
                raise  # not the user's filter: a bug
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UsageError(f"the search filter was rejected: {message}") from e

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

    def add(self, rows: list[ImageRow]) -> None:
        """Append rows whose paths are not in the table. Unlike upsert it reads nothing,
        so a commit costs the same however large the library: 3 ms against 33 ms for 3
        rows into 200,000 (benchmarks/commits.py)."""
        if rows:
            self._write(self.writer.add, rows)

    def upsert(self, rows: list[ImageRow]) -> None:
        """Insert rows, or replace those whose path is already in the table."""
        if rows:
            self._write(
                lambda data: (
                    self.writer.merge_insert("path")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(data)
                ),
                rows,
            )

    def _write(self, commit: Callable[[pa.Table], object], rows: list[ImageRow]) -> None:
        data = rows_to_arrow(rows, self.schema)
        try:
            commit(data)
        except OSError as e:
            raise DatabaseError(f"cannot write to the database at {self.db_path}: {e}") from e
        self.dataset.checkout_latest()

    def delete_paths(self, paths: Iterable[str]) -> None:
        for chunk in _chunks(sorted(paths)):
            self.writer.delete(f"path IN ({_sql_list(chunk)})")
        self.dataset.checkout_latest()

    def paths(self) -> Iterator[str]:
        yield from self.columns(["path"]).column("path").to_pylist()

    def indices(self) -> list[str]:
        return [index.name for index in self.dataset.describe_indices()]

    def vector_index(self) -> str | None:
        """Name of the ANN index on the embeddings, if one was built."""
        described = self.dataset.describe_indices()
        return next((i.name for i in described if "embedding" in i.field_names), None)

    def build_vector_index(self, rows_per_partition: int) -> None:
        """(Re)train the ANN index. Cosine, IVF partitions of about rows_per_partition
        rows each, product quantisation into 8-dimension sub-vectors; searches re-rank
        refine_factor times more candidates exactly, so recall stays high."""
        rows = self.count()
        from lancedb.index import IvfPq

        config = IvfPq(
            distance_type="cosine",
            num_partitions=max(1, rows // rows_per_partition),
            num_sub_vectors=max(1, self.dim // 8),
        )
        self.writer.create_index("embedding", config=config, replace=True)
        self.dataset.checkout_latest()

    def compact(self) -> None:
        """Merge the small fragments that commits leave, and drop versions no reader
        needs. New rows stay out of the vector index: Lance never merges fragments the
        index covers with ones it does not, so indexing them at every compaction of a
        run would leave one more small fragment each time."""
        self._maintain(index=False)

    def optimize(self) -> None:
        """Compact, and add the rows new since the last time to the vector index."""
        self._maintain(index=True)

    def _maintain(self, index: bool) -> None:
        try:
            self.dataset.optimize.compact_files(target_rows_per_fragment=FRAGMENT_ROWS)
            if index:
                self.dataset.optimize.optimize_indices()
            self.dataset.cleanup_old_versions(older_than=_KEEP_OLD_VERSIONS)
        except OSError as e:
            raise DatabaseError(f"cannot write to the database at {self.db_path}: {e}") from e
        # Both handles keep state for every version they have seen, which grows through
        # a long run of small commits (benchmarks/commits.py): start them afresh.
        self._writer = None
        self.dataset = lance.dataset(str(_uri(self.db_path)))


def _uri(db_path: Path) -> Path:
    return db_path / f"{TABLE_NAME}.lance"


def _connect(db_path: Path) -> lancedb.DBConnection:
    import lancedb

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

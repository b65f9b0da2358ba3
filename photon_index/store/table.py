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

import errno
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import lance
import numpy as np
import pyarrow as pa

from photon_index.errors import DatabaseError, UsageError
from photon_index.store.location import Database, Remote, local_folder
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
# The engine raises a failure of the files themselves (missing, truncated, unwritable,
# disk full) as the same ValueError or RuntimeError as a bad filter or a bug; its message
# is what tells them apart. OSError is always the files.
_IO_MARKERS = ("LanceError(IO)", "(os error", "Not found:")
_ENGINE_ERRORS = (OSError, RuntimeError, ValueError)


@dataclass(frozen=True)
class Nearest:
    """How an embedding search runs: IVF partitions probed, and how many times more
    candidates than asked for are re-ranked by exact distance (ignored without an index)."""

    nprobes: int
    refine_factor: int
    # A filtered search keeping fewer rows than this is exact (see ImageTable._probing).
    exact_below: int = 0


class ImageTable:
    def __init__(self, dataset: lance.LanceDataset, db: Database) -> None:
        self.dataset = dataset
        self.db = db
        self.db_path = local_folder(db)  # the database's files that stay on this machine
        self._writer: lancedb.table.Table | None = None

    @classmethod
    def open(cls, db: Database) -> ImageTable | None:
        """The table at db, or None when nothing was indexed there yet. A table
        folder that exists but cannot be opened is damaged, never "no index yet": that
        would let the next run create a new table over the user's index."""
        uri = table_uri(db)
        if not _exists(db, uri):
            return None
        # A table being created has its folder a moment before its first version: a
        # reader then waits that moment rather than call it damaged.
        for wait in (0.05, 0.1, 0.2, 0.4, 0.8, None):
            try:
                dataset = lance.dataset(uri, storage_options=storage_options(db))
                break
            except _ENGINE_ERRORS as e:
                if wait is None or isinstance(db, Remote) or _has_versions(uri):
                    raise DatabaseError(_damaged(db, e)) from e
                time.sleep(wait)
        if MODEL_KEY not in (dataset.schema.metadata or {}):
            raise DatabaseError(
                f"{uri} is not a photon index (it records no model): use --db for another folder"
            )
        return cls(dataset, db)

    @classmethod
    def create(cls, db: Database, dim: int, model: str, model_ref: str) -> ImageTable:
        try:
            local_folder(db).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseError(f"cannot create a database at {db}: {e}") from e
        try:
            schema = image_schema(dim, model, model_ref)
            _connect(db).create_table(TABLE_NAME, schema=schema, exist_ok=True)
        except _ENGINE_ERRORS as e:
            if not _is_io_error(e):
                raise  # a bug, not the files
            raise _write_failed(db, "create", e) from e
        table = cls.open(db)
        if table is None:
            raise DatabaseError(f"cannot create a database at {db}")
        return table

    @property
    def uri(self) -> str:
        return table_uri(self.db)

    @property
    def writer(self) -> lancedb.table.Table:
        """The lancedb table, opened on the first write."""
        if self._writer is None:
            self._writer = _connect(self.db).open_table(TABLE_NAME)
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
        with self._reading():
            return self.dataset.count_rows()

    def columns(self, names: list[str], where: str | None = None) -> pa.Table:
        with self._reading():
            return self.dataset.to_table(columns=names, filter=where)

    def with_row_ids(self, names: list[str]) -> pa.Table:
        """The columns and each row's id (column `_rowid`), valid for this version."""
        with self._reading():
            return self.dataset.to_table(columns=names, with_row_id=True)

    def scan(self, names: list[str], rows: int) -> Iterator[pa.RecordBatch]:
        """The columns of every row, in batches of at most `rows` rows: memory stays
        bounded however large the table."""
        # A block at a time by offset, not one streaming scan: the scan reads a whole
        # data file's pages ahead whatever its buffer settings (a 480 MB rise over a
        # 100k-row file of 768-d embeddings, 130 MB this way, and twice as fast).
        for start in range(0, self.count(), rows):
            with self._reading():
                data = self.dataset.to_table(columns=names, offset=start, limit=rows)
            yield from data.to_batches()

    def sample(self, rows: int, names: list[str], seed: int = 0) -> pa.Table:
        """The columns of `rows` rows drawn at random (all of them when there are fewer)."""
        total = self.count()
        if total <= rows:
            return self.columns(names)
        picked = np.sort(np.random.default_rng(seed).choice(total, rows, replace=False))
        with self._reading():
            return self.dataset.take(picked, columns=names)

    def take_rows(self, row_ids: list[int], names: list[str]) -> pa.Table:
        """The rows with these ids (from with_row_ids of this version), in their order."""
        with self._reading():
            return self.dataset._take_rows(row_ids, columns=names)

    def check(self) -> None:
        """Raise DatabaseError if the files of the current version are missing or
        unreadable. Reads every data file's metadata, not its rows: milliseconds."""
        try:
            self.dataset.validate()
        except _ENGINE_ERRORS as e:
            raise DatabaseError(_damaged(self.db, e)) from e

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Turn a read that failed because the files are damaged into DatabaseError;
        any other failure (a bad filter, a bug) is raised as it was."""
        try:
            yield
        except _ENGINE_ERRORS as e:
            self.raise_if_damaged(e)
            raise

    def raise_if_damaged(self, e: BaseException) -> None:
        """Raise DatabaseError if a read failed because the files are damaged."""
        if _is_io_error(e):
            raise DatabaseError(_damaged(self.db, e)) from e
        self.check()  # damage the engine reports as something else

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """A write that failed in the engine (disk full, read-only files) is one
        DatabaseError; the table keeps its last committed version, which stays readable.
        A table whose folder was deleted or moved away meanwhile is not written: the
        engine would start a new one whose first version lists the old one's files."""
        if not isinstance(self.db, Remote) and not Path(self.uri, "_versions").is_dir():
            raise DatabaseError(
                f"{self.db} was deleted or moved while photon was using it: nothing more "
                f"is written; run the command again (a new index is made if it is gone)"
            )
        try:
            yield
        except _ENGINE_ERRORS as e:
            self._writer = None  # it may be mid-transaction: the next write reopens it
            if not _is_io_error(e):
                raise  # a bug, not the files
            self.check()  # a damaged table says so rather than "cannot write"
            raise _write_failed(self.db, what, e) from e

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
            "refine_factor": how.refine_factor,
        }
        with self._searching(where):
            kept = None if where is None or not self.dataset.has_index else self._ids(where)
            if kept is not None and len(kept) < how.exact_below:
                return self._nearest_exactly(vector, limit, columns, kept)
            if kept is not None:
                query.update(self._probing(how, len(kept)))
            elif where is None:
                query["nprobes"] = how.nprobes
            return self.dataset.to_table(
                columns=[*columns, "_distance"], nearest=query, filter=where, prefilter=True
            )

    def count_where(self, where: str) -> int:
        """Rows that pass the filter."""
        with self._searching(where):
            return self.dataset.count_rows(filter=where)

    @contextmanager
    def _searching(self, where: str | None) -> Iterator[None]:
        """A failed read is the user's filter (UsageError), damaged files
        (DatabaseError) or a bug (raised as it was)."""
        try:
            yield
        except (OSError, ValueError, RuntimeError) as e:
            if where is not None and "Invalid user input" in str(e):
                raise _filter_rejected(e) from e  # the engine says OSError for some of these
            if isinstance(e, OSError):
                raise DatabaseError(f"cannot read the database at {self.db}: {e}") from e
            self.raise_if_damaged(e)  # damaged files, not the user's filter
            if where is None:
                raise  # not the user's filter: a bug
            raise _filter_rejected(e) from e
        except BaseException as e:
            # A Rust panic reaches Python as pyo3's PanicException, a BaseException.
            if where is None or type(e).__name__ != "PanicException":
                raise
            raise _filter_rejected(e) from e

    def nearest_among(
        self,
        vector: np.ndarray,
        limit: int,
        columns: list[str],
        ids: np.ndarray,
        where: str | None = None,
    ) -> pa.Table:
        """nearest(), exactly, among the rows with these ids (of this version) that pass
        where: for a set of rows found outside the table, such as those with a tag."""
        with self._searching(where):
            if where is not None:
                ids = np.intersect1d(ids, self._ids(where))
            return self._nearest_exactly(vector, limit, columns, ids)

    def ids_where(self, where: str | None) -> np.ndarray | None:
        """Row ids of the rows that pass the filter; None: no filter, every row."""
        if where is None:
            return None
        with self._searching(where):
            return self._ids(where)

    def _ids(self, where: str) -> np.ndarray:
        """Row ids of the rows that pass the filter."""
        found = self.dataset.to_table(columns=[], filter=where, with_row_id=True)
        return found.column("_rowid").to_numpy()

    def _probing(self, how: Nearest, kept: int) -> dict[str, int]:
        """How a filtered search that keeps `kept` rows probes the IVF index.

        A fixed nprobes suits an unfiltered search. Under a filter the nearest rows that
        pass it sit deeper in the ranking (the 10th of a filter keeping 1 % is about
        the 1,000th of all), across more partitions, and PQ ranks them less surely:
        with nprobes 20 and refine 10, a 1 % filter at 1M rows had recall@10 0.88, and
        5 matching rows of 8,000 in 31 partitions came back as 2 to 4. So nearest()
        finds the rows a filter keeps first: fewer than how.exact_below are ranked
        exactly (_nearest_exactly); for more, probes and refine factor both grow with
        share ** (-1/3), as floors Lance may probe beyond while it lacks candidates
        (recall@10 >= 0.99 with 1 % and 10 % filters at 1M rows, benchmarks/search.py)."""
        scale = (kept / max(1, self.count())) ** (-1 / 3)
        return {
            "minimum_nprobes": math.ceil(how.nprobes * scale),
            "refine_factor": min(1000, math.ceil(how.refine_factor * scale)),
        }

    def _nearest_exactly(
        self, vector: np.ndarray, limit: int, columns: list[str], ids: np.ndarray
    ) -> pa.Table:
        """nearest() by brute force over the rows with these ids: their embeddings are
        read and ranked in numpy, then the columns of the best read. Lance's own exact
        search (use_index=False) computes the distance of every row, filter or not:
        3 s at 1M rows, against about 12 ms per thousand rows read here."""
        if len(ids) == 0:
            fields = [self.schema.field(c) for c in columns]
            return pa.Table.from_pylist(
                [], pa.schema([*fields, pa.field("_distance", pa.float32())])
            )
        read = self.dataset._take_rows(ids.tolist(), columns=["embedding"])
        flat = read.column("embedding").combine_chunks().flatten().to_numpy()
        embeddings = flat.reshape(-1, self.dim).astype(np.float32, copy=False)
        norms = np.linalg.norm(embeddings, axis=1) * float(np.linalg.norm(vector))
        cosines = embeddings @ vector.astype(np.float32) / np.maximum(norms, 1e-12)
        best = np.argsort(-cosines, kind="stable")[:limit]
        found = self.dataset._take_rows(ids[best].tolist(), columns=columns)
        distances = pa.array(1.0 - cosines[best], type=pa.float32())
        return found.append_column("_distance", distances)

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
        for row in self.rows_with_hashes(hashes):
            found.setdefault(row.content_hash, row)
        return found

    def rows_with_hashes(self, hashes: Iterable[str]) -> list[ImageRow]:
        """Every stored row with one of these content hashes (a video's frames, copies)."""
        rows: list[ImageRow] = []
        for chunk in _chunks(sorted(set(hashes))):
            where = f"content_hash IN ({_sql_list(chunk)})"
            rows += arrow_to_rows(self.columns([f.name for f in self.schema], where))
        return rows

    def hashes_of(self, paths: Iterable[str]) -> dict[str, str]:
        """path -> content hash, for the paths that are in the table."""
        found: dict[str, str] = {}
        for chunk in _chunks(sorted(set(paths))):
            where = f"path IN ({_sql_list(chunk)})"
            data = self.columns(["path", "content_hash"], where).to_pydict()
            found.update(zip(data["path"], data["content_hash"], strict=True))
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
        self.add_missing_columns()
        data = rows_to_arrow(rows, self.schema)
        with self._writing("write to"):
            commit(data)
        self.dataset.checkout_latest()

    def update_columns(self, data: pa.Table) -> None:
        """Set some columns of the rows whose paths are in data (its other columns are
        path and those). Rows of other paths are left alone and none is added."""
        with self._writing("write to"):
            self.dataset.merge_insert("path").when_matched_update_all().execute(data)
        self.dataset.checkout_latest()

    def add_missing_columns(self) -> None:
        """Add the columns of the schema that a table made by an older photon lacks, all
        null (a metadata-only commit: no row is rewritten). Done by writers only, so a
        reader never commits. Columns added to the schema are nullable for this."""
        present = set(self.schema.names)
        wanted = image_schema(self.dim, self.model, self.model_ref)
        missing = [f for f in wanted if f.name not in present]
        if not missing:
            return
        with self._writing("add columns to"):
            self.dataset.add_columns(missing)
        self._writer = None  # its schema is the old one
        self.dataset.checkout_latest()

    def refresh(self) -> None:
        """See the commits made to the table by another writer (lance-ray's)."""
        self._writer = None
        self.dataset.checkout_latest()

    def delete_paths(self, paths: Iterable[str]) -> None:
        # One commit per chunk: a failure keeps the chunks before it, and the next run
        # deletes the rest.
        for chunk in _chunks(sorted(paths)):
            with self._writing("delete from"):
                self.writer.delete(f"path IN ({_sql_list(chunk)})")
        self.dataset.checkout_latest()

    def paths(self) -> Iterator[str]:
        yield from self.columns(["path"]).column("path").to_pylist()

    def indices(self) -> list[str]:
        with self._reading():
            return [index.name for index in self.dataset.describe_indices()]

    def vector_index(self) -> str | None:
        """Name of the ANN index on the embeddings, if one was built."""
        with self._reading():
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
        with self._writing("build the vector index of"):
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
        self.check()  # compaction would otherwise copy whatever it can read of a damaged table
        with self._writing("compact"):
            self.dataset.optimize.compact_files(target_rows_per_fragment=FRAGMENT_ROWS)
            if index:
                self.dataset.optimize.optimize_indices()
            self.dataset.cleanup_old_versions(older_than=_KEEP_OLD_VERSIONS)
        # Both handles keep state for every version they have seen, which grows through
        # a long run of small commits (benchmarks/commits.py): start them afresh.
        self._writer = None
        self.dataset = lance.dataset(self.uri, storage_options=storage_options(self.db))


def table_uri(db: Database, name: str = TABLE_NAME) -> str:
    return db.join(f"{name}.lance") if isinstance(db, Remote) else str(db / f"{name}.lance")


def storage_options(db: Database) -> dict[str, str] | None:
    return db.storage.lance_options() if isinstance(db, Remote) else None


def _has_versions(uri: str) -> bool:
    return any(Path(uri, "_versions").glob("*.manifest"))


def _exists(db: Database, uri: str) -> bool:
    """Whether a table was created at uri (a file in a table's place is an error)."""
    if isinstance(db, Remote):
        from pyarrow.fs import FileSelector

        selector = FileSelector(f"{uri}/_versions".removeprefix("s3://"), allow_not_found=True)
        try:
            return bool(db.storage.filesystem().get_file_info(selector))
        except OSError as e:
            raise DatabaseError(f"cannot reach the database at {db}: {_reason(e)}") from e
    if db.exists() and not db.is_dir():
        raise DatabaseError(f"--db {db} is a file, not an index folder: choose a folder")
    return Path(uri).is_dir()


def _filter_rejected(e: BaseException) -> UsageError:
    return UsageError(f"the search filter was rejected: {_reason(e)}")


def _is_io_error(e: BaseException) -> bool:
    return isinstance(e, OSError) or any(marker in str(e) for marker in _IO_MARKERS)


def _reason(e: BaseException) -> str:
    """The engine's message on one line, without its prefixes and Rust source paths."""
    text = " ".join(str(e).split())
    text = re.sub(r",? ?/\S+\.rs:\d+:\d+", "", text)
    text = re.sub(r", bytes: b\".*?\"", "", text)  # raw bytes of a damaged file
    for prefix in ("lance error: ", "External error: ", "LanceError(IO): ", "Generic "):
        text = text.replace(prefix, "")
    return text[:200] or type(e).__name__


def _damaged(db: Database, e: BaseException) -> str:
    if isinstance(db, Remote):  # far likelier the network or the store than the files
        return f"cannot read the index at {db} ({_reason(e)}): {_REMOTE_ADVICE}"
    return (
        f"the index at {db} is damaged or unreadable ({_reason(e)}): move it away "
        "and run `photon index` again, or use --db for another folder"
    )


_REMOTE_ADVICE = (
    "check that the storage is reachable (its endpoint, the network, the credentials) "
    "and run it again"
)


def _write_failed(db: Database, what: str, e: BaseException) -> DatabaseError:
    return DatabaseError(
        f"cannot {what} the index at {db} ({_reason(e)}): "
        f"{_REMOTE_ADVICE if isinstance(db, Remote) else _advice(e)}; "
        "it keeps its last committed version"
    )


def _advice(e: BaseException) -> str:
    code = e.errno if isinstance(e, OSError) and e.errno else None
    found = re.search(r"\(os error (\d+)\)", str(e))
    code = code or (int(found.group(1)) if found else None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "free some disk space and run it again"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "make the folder writable, or use --db for another folder"
    return "check the disk and run it again"


def _connect(db: Database) -> lancedb.DBConnection:
    import lancedb

    try:
        return lancedb.connect(str(db), storage_options=storage_options(db))
    except (OSError, ValueError) as e:
        raise DatabaseError(f"cannot open the database at {db}: {e}") from e


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_list(values: list[str]) -> str:
    return ", ".join(sql_quote(v) for v in values)

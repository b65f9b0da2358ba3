"""The one definition of where tags live: a second Lance table, `tags`, beside the images
table in the database folder (one row per picture: its path, the content hash it was
tagged from, its tags best first and their logits), and tags.json, the vocabulary and
per-tag thresholds they were given with. The images table is left as it was, so an
index made before tags existed keeps working and simply gets them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from photon_index.errors import DatabaseError
from photon_index.files import files_of
from photon_index.store.atomic import write_json_record
from photon_index.store.location import Database, Remote
from photon_index.store.table import _chunks, _exists, _sql_list, storage_options, table_uri

TAGS_TABLE = "tags"
STATE_FILE = "tags.json"
TAGS_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("tags", pa.list_(pa.string()), nullable=False),  # best first
        pa.field("logits", pa.list_(pa.float32()), nullable=False),  # SigLIP's, per tag
    ]
)


@dataclass(frozen=True)
class TagState:
    """What the stored tags were given with."""

    key: str  # the vocabulary's and model's: see TagStore.key
    model: str
    rows: int  # pictures in the library when the thresholds were set
    names: list[str]  # the vocabulary's tags, in its order
    thresholds: list[float]  # logits, per tag
    spreads: list[float]


class TagStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.uri = table_uri(db, TAGS_TABLE)
        self._options = storage_options(db)

    def state(self) -> TagState | None:
        try:
            if isinstance(self.db, Remote):
                text = self.db.read_text(STATE_FILE)
                return None if text is None else TagState(**json.loads(text))
            return TagState(**json.loads((self.db / STATE_FILE).read_text("utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as e:
            raise DatabaseError(
                f"cannot read {self.db}/{STATE_FILE} ({e}): run `photon tags --recompute`"
            ) from e

    def write_state(self, state: TagState) -> None:
        if isinstance(self.db, Remote):
            self.db.write_text(STATE_FILE, json.dumps(asdict(state)))
        else:
            write_json_record(self.db / STATE_FILE, asdict(state))

    def _exists(self) -> bool:
        return _exists(self.db, self.uri)

    def _dataset(self) -> lance.LanceDataset:
        return lance.dataset(self.uri, storage_options=self._options)

    def read(self, columns: list[str]) -> pa.Table:
        """The stored rows (none before the first tagging)."""
        if not self._exists():
            return TAGS_SCHEMA.empty_table().select(columns)
        try:
            return self._dataset().to_table(columns=columns)
        except (OSError, ValueError, RuntimeError) as e:
            raise DatabaseError(_failed("read", self.uri, e)) from e

    def stamps(self) -> dict[str, str]:
        """path -> the content hash its tags were made from."""
        data = self.read(["path", "content_hash"]).to_pydict()
        return dict(zip(data["path"], data["content_hash"], strict=True))

    def replace(self, batches: Iterator[pa.RecordBatch]) -> None:
        """All rows anew, streamed: one commit, readers see the old rows until then."""
        reader = pa.RecordBatchReader.from_batches(TAGS_SCHEMA, batches)
        self._write(reader, "overwrite" if self._exists() else "create")

    def update(self, stale: Iterable[str], rows: pa.Table) -> None:
        """Drop the rows of these paths, then add rows."""
        exists = self._exists()
        if exists:
            dataset = self._dataset()
            for chunk in _chunks(sorted(stale)):
                try:
                    dataset.delete(f"path IN ({_sql_list(chunk)})")
                except (OSError, ValueError, RuntimeError) as e:
                    raise DatabaseError(_failed("write", self.uri, e)) from e
        if rows.num_rows:
            self._write(rows, "append" if exists else "create")

    def _write(self, data: pa.Table | pa.RecordBatchReader, mode: str) -> None:
        try:
            lance.write_dataset(
                data, self.uri, schema=TAGS_SCHEMA, mode=mode, storage_options=self._options
            )
        except (OSError, ValueError, RuntimeError) as e:
            raise DatabaseError(_failed("write", self.uri, e)) from e

    def of(self, path: str) -> tuple[list[str], list[float]]:
        """One picture's stored tags, best first, and their logits (none if untagged)."""
        if not self._exists():
            return [], []
        try:
            rows = self._dataset().to_table(
                columns=["tags", "logits"], filter=f"path IN ({_sql_list([path])})"
            )
        except (OSError, ValueError, RuntimeError) as e:
            raise DatabaseError(_failed("read", self.uri, e)) from e
        if not rows.num_rows:
            return [], []
        return rows.column("tags")[0].as_py(), rows.column("logits")[0].as_py()

    def tagged(self, tags: list[str]) -> tuple[list[str], np.ndarray]:
        """The paths whose stored tags include every one of tags, and for each the
        lowest logit among those tags (how surely it has them all)."""
        data = self.read(["path", "tags", "logits"])
        if not data.num_rows:
            return [], np.empty(0, dtype=np.float32)
        lists = data.column("tags").combine_chunks()
        parents = pc.list_parent_indices(lists).to_numpy()
        flat = pc.list_flatten(lists)
        values = pc.list_flatten(data.column("logits").combine_chunks()).to_numpy()
        keep = np.ones(data.num_rows, dtype=bool)
        lowest = np.full(data.num_rows, np.inf, dtype=np.float32)
        for tag in tags:
            hits = pc.equal(flat, tag).to_numpy(zero_copy_only=False)
            has = np.zeros(data.num_rows, dtype=bool)
            has[parents[hits]] = True
            keep &= has
            np.minimum.at(lowest, parents[hits], values[hits])
        paths = data.column("path").filter(pa.array(keep)).to_pylist()
        return paths, lowest[keep]

    def counts(self, paths: pa.Array) -> dict[str, int]:
        """How many of these pictures have each tag (only tags some picture has); rows
        of other paths (pictures gone since) don't count, and a video counts once
        however many of its frames have the tag."""
        data = self.read(["path", "tags"])
        data = data.filter(pc.is_in(data.column("path"), value_set=paths))
        if not data.num_rows:
            return {}
        lists = data.column("tags").combine_chunks()
        owners = files_of(data.column("path")).take(pc.list_parent_indices(lists))
        pairs = pa.table({"file": owners, "tag": pc.list_flatten(lists)})
        distinct = pairs.group_by(["file", "tag"]).aggregate([])
        counted = pc.value_counts(distinct.column("tag")).to_pylist()
        return {c["values"]: c["counts"] for c in counted}


def tag_rows(
    paths: pa.ChunkedArray,
    hashes: pa.ChunkedArray,
    offsets: np.ndarray,
    tags: pa.Array,
    logits: np.ndarray,
) -> pa.Table:
    """Rows of the tags table; row i's tags and logits are [offsets[i] : offsets[i + 1]]
    of tags and logits."""
    starts = pa.array(offsets, pa.int32())
    return pa.Table.from_arrays(
        [
            paths,
            hashes,
            pa.ListArray.from_arrays(starts, tags),
            pa.ListArray.from_arrays(starts, pa.array(logits, pa.float32())),
        ],
        schema=TAGS_SCHEMA,
    )


def _failed(what: str, uri: str, e: BaseException) -> str:
    reason = " ".join(str(e).split())[:200] or type(e).__name__
    return f"cannot {what} the tags at {uri} ({reason}): run `photon tags --recompute`"

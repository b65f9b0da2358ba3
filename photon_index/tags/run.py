"""Tagging a library from its stored embeddings, no picture decoded again: the whole
table (the first time, after a change of vocabulary, model or rule, or once the library
has doubled or halved since its thresholds were set), or only the rows new since the
last pass. Blocks of rows at a time, so memory stays bounded however large the table."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from photon_index.models import ModelFiles
from photon_index.store.table import ImageTable
from photon_index.store.tags import TAGS_SCHEMA, TagState, TagStore, tag_rows
from photon_index.tags.scoring import Cutoffs, Rule, assign, library_cutoffs, logits
from photon_index.tags.vocabulary import Vocabulary

_COLUMNS = ["path", "content_hash", "embedding"]


@dataclass(frozen=True)
class TagReport:
    pictures: int  # pictures tagged by this pass
    tagged: int  # of them, those that got at least one tag
    vocabulary: int  # tags in the vocabulary
    full: bool  # the whole library, with thresholds set anew
    seconds: float


@dataclass(frozen=True)
class Tagger:
    table: ImageTable
    store: TagStore
    vocabulary: Vocabulary
    embeddings: np.ndarray  # [T, D], the vocabulary's (scoring.tag_embeddings)
    model: ModelFiles
    rule: Rule
    sample_rows: int  # rows the thresholds are estimated from
    block_rows: int  # rows scored at a time

    def key(self) -> str:
        """What stored tags depend on besides the pictures: if it changes, all change."""
        parts = {
            "vocabulary": self.vocabulary.key(),
            "thresholds": [t.threshold for t in self.vocabulary.tags],
            "checksums": self.model.checksums,
            "rule": asdict(self.rule),
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def run(self, *, full: bool = False) -> TagReport:
        """Tag the new rows, or every row when full or when the stored tags are out of
        date (module docstring)."""
        started = time.monotonic()
        state = self.store.state()
        rows = self.table.count()
        if full or state is None or state.key != self.key() or not _close(state.rows, rows):
            pictures, tagged = self._all(rows)
            full = True
        else:
            pictures, tagged = self._new(state)
        seconds = round(time.monotonic() - started, 3)
        return TagReport(pictures, tagged, len(self.vocabulary.tags), full, seconds)

    def _all(self, rows: int) -> tuple[int, int]:
        sample = self.table.sample(self.sample_rows, ["embedding"])
        cuts = library_cutoffs(
            _vectors(sample, self.table.dim),
            self.embeddings,
            self.model,
            self.vocabulary,
            self.rule,
        )
        counts = [0, 0]

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in self.table.scan(_COLUMNS, self.block_rows):
                scored = self._score(pa.Table.from_batches([batch]), cuts)
                counts[0] += scored.num_rows
                counts[1] += _with_tags(scored)
                yield from scored.to_batches()

        # The state goes first: a pass that stops halfway leaves the old rows, which the
        # new key marks out of date, so the next run tags them all again.
        self.store.write_state(self._state(rows, cuts, stale=True))
        self.store.replace(batches())
        self.store.write_state(self._state(rows, cuts))
        return counts[0], counts[1]

    def _new(self, state: TagState) -> tuple[int, int]:
        cuts = Cutoffs(
            np.asarray(state.thresholds, dtype=np.float32),
            np.asarray(state.spreads, dtype=np.float32),
        )
        done = self.store.stamps()
        current = self.table.columns(["path", "content_hash"]).to_pydict()
        now = dict(zip(current["path"], current["content_hash"], strict=True))
        todo = sorted(p for p, h in now.items() if done.get(p) != h)
        stale = [p for p, h in done.items() if now.get(p) != h]
        scored = TAGS_SCHEMA.empty_table()
        if todo:
            parts = [
                self._score(self.table.columns(_COLUMNS, where), cuts)
                for where in _path_filters(todo)
            ]
            scored = pa.concat_tables(parts)
        if todo or stale:
            self.store.update(stale, scored)
        return scored.num_rows, _with_tags(scored)

    def _score(self, data: pa.Table, cuts: Cutoffs) -> pa.Table:
        block = logits(_vectors(data, self.table.dim), self.embeddings, self.model)
        picked = assign(block, cuts, self.rule.max_per_picture)
        names = pa.array(self.vocabulary.names, pa.string()).take(picked.tags)
        return tag_rows(
            data.column("path"), data.column("content_hash"), picked.offsets, names, picked.logits
        )

    def _state(self, rows: int, cuts: Cutoffs, *, stale: bool = False) -> TagState:
        return TagState(
            key="" if stale else self.key(),
            model=self.model.name,
            rows=rows,
            names=self.vocabulary.names,
            thresholds=cuts.thresholds.tolist(),
            spreads=cuts.spreads.tolist(),
        )


def _vectors(data: pa.Table, dim: int) -> np.ndarray:
    column = data.column("embedding").combine_chunks()
    flat = column.flatten().to_numpy() if len(column) else np.empty(0, np.float32)
    return flat.reshape(-1, dim).astype(np.float32, copy=False)


def _with_tags(rows: pa.Table) -> int:
    return int(pc.sum(pc.greater(pc.list_value_length(rows.column("tags")), 0)).as_py() or 0)


def _close(before: int, now: int) -> bool:
    """Whether thresholds set on `before` pictures still describe `now`."""
    return before // 2 <= now <= max(1, before) * 2


def _path_filters(paths: list[str]) -> Iterator[str]:
    from photon_index.store.table import _chunks, _sql_list

    for chunk in _chunks(paths):
        yield f"path IN ({_sql_list(chunk)})"

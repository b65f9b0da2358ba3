"""`Index`: photon's library API. One object per database; the CLI is a thin layer over it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from photon_index.config import Settings
from photon_index.errors import UsageError
from photon_index.models import ModelFiles, load_model
from photon_index.models.download import resolve_endpoint
from photon_index.models.installed import folder_size
from photon_index.store.lock import write_lock
from photon_index.store.malloc import cap_arenas
from photon_index.store.table import ImageTable

if TYPE_CHECKING:
    from photon_index.ingest import IndexReport
    from photon_index.query.dedupe import ActionReport, DuplicateGroup
    from photon_index.query.search import Filters, SearchResults


@dataclass(frozen=True)
class IndexInfo:
    db: str
    exists: bool
    model: str | None
    rows: int
    size_bytes: int
    version: int | None
    dim: int | None
    indices: list[str]


class Index:
    """The photo index at `db` (default: the user data dir, or $PHOTON_HOME/db)."""

    def __init__(self, db: Path | str | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self.db_path = Path(db).expanduser().absolute() if db else self.settings.paths.db

    def table(self) -> ImageTable | None:
        return ImageTable.open(self.db_path)

    def load_model(self, ref: str | None = None, *, progress: bool = False) -> ModelFiles:
        """The model named by ref, else the one this index was built with, else the default."""
        table = self.table()
        ref = ref or (table.model_ref if table else self.settings.model.name)
        return load_model(
            ref,
            self.settings.paths.models,
            endpoint=resolve_endpoint(self.settings.model.endpoint),
            progress=progress,
        )

    def update(
        self, roots: Sequence[Path | str], *, model: str | None = None, progress: bool = False
    ) -> IndexReport:
        """Bring the index up to date with the pictures under roots."""
        cap_arenas()  # before Lance's threads start allocating
        paths = [Path(r).expanduser() for r in roots]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise UsageError(f"no such file or folder: {', '.join(missing)}")
        loaded = self.load_model(model, progress=progress)
        with write_lock(self.db_path):
            table = self._table_for(loaded, model)
            from photon_index.ingest import Ingest

            report = Ingest(table, loaded, self.settings, progress=progress).run(paths)
            if table.vector_index() is None and table.count() >= self.settings.search.ann_threshold:
                table.build_vector_index(self.settings.search.rows_per_partition)
        return report

    def _table_for(self, loaded: ModelFiles, ref: str | None) -> ImageTable:
        """This index's table, created for the model if there is none; refused if it was
        built with another model."""
        table = self.table()
        if table is not None and table.model != loaded.name:
            raise UsageError(
                f"the index at {self.db_path} was built with model {table.model}; "
                f"index with --model {table.model_ref}, or use --db DIR for a separate "
                f"index with {loaded.name}"
            )
        if table is None:
            dim = _vision_dim(loaded)
            table = ImageTable.create(self.db_path, dim, loaded.name, ref or loaded.name)
        return table

    def search(
        self,
        query: str | None = None,
        *,
        add: Sequence[str] = (),
        sub: Sequence[str] = (),
        limit: int | None = None,
        filters: Filters | None = None,
    ) -> SearchResults:
        """Best matches for a text or picture query (see photon_index.query.search)."""
        from photon_index.query.search import Filters, Searcher, parse_terms

        terms = parse_terms(query, add, sub)
        table = self._existing_table()
        searcher = Searcher(table, self.load_model(table.model_ref), self.settings)
        return searcher.search(terms, filters or Filters(), limit or self.settings.search.limit)

    def dedupe(
        self,
        *,
        similar: bool = False,
        phash_distance: int | None = None,
        similar_cosine: float | None = None,
    ) -> list[DuplicateGroup]:
        """Groups of exact copies, near copies (pHash) and, with similar, the same scene."""
        from photon_index.query.dedupe import find_duplicates

        defaults = self.settings.dedupe
        return find_duplicates(
            self._existing_table(),
            phash_distance=defaults.phash_distance if phash_distance is None else phash_distance,
            similar_cosine=(
                (defaults.similar_cosine if similar_cosine is None else similar_cosine)
                if similar
                else None
            ),
        )

    def move_duplicates(self, groups: list[DuplicateGroup], destination: Path) -> ActionReport:
        """Move every non-keeper under destination, keeping relative paths."""
        from photon_index.query.dedupe import move_duplicates

        return move_duplicates(groups, self._existing_table(), destination)

    def delete_duplicates(self, groups: list[DuplicateGroup]) -> ActionReport:
        """Delete every non-keeper from disk and from the index."""
        from photon_index.query.dedupe import delete_duplicates

        return delete_duplicates(groups, self._existing_table())

    def optimize(self) -> None:
        """Compact the table and retrain the ANN index once the table is large enough."""
        table = self._existing_table()
        with write_lock(self.db_path):
            if table.count() < self.settings.search.ann_threshold:
                table.optimize()
                return
            table.compact()  # the retrained index covers every row: no incremental update
            table.build_vector_index(self.settings.search.rows_per_partition)

    def _existing_table(self) -> ImageTable:
        table = self.table()
        if table is None:
            raise UsageError(f"no index at {self.db_path} yet: run `photon index FOLDER` first")
        return table

    def info(self) -> IndexInfo:
        table = self.table()
        if table is None:
            return IndexInfo(str(self.db_path), False, None, 0, 0, None, None, [])
        return IndexInfo(
            db=str(self.db_path),
            exists=True,
            model=table.model,
            rows=table.count(),
            size_bytes=folder_size(self.db_path),
            version=table.version,
            dim=table.dim,
            indices=table.indices(),
        )


def _vision_dim(model: ModelFiles) -> int:
    from photon_index.embed.encoder import open_session

    session = open_session(model.vision, "cpu", 1)
    (pooled,) = [o for o in session.get_outputs() if o.name == "pooler_output"]
    return int(pooled.shape[-1])

"""`Index`: photon's library API. One object per database; the CLI is a thin layer over it."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from photon_index.config import Settings
from photon_index.errors import PhotonError, UsageError
from photon_index.models import ModelFiles, load_model
from photon_index.models.download import resolve_endpoint
from photon_index.models.installed import folder_size
from photon_index.store.lock import write_lock
from photon_index.store.malloc import cap_arenas
from photon_index.store.table import ImageTable

if TYPE_CHECKING:
    from photon_index.actions import Action, ActionReport, UndoReport
    from photon_index.ingest import IndexReport
    from photon_index.query.dedupe import DuplicateGroup
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
        self,
        roots: Sequence[Path | str],
        *,
        model: str | None = None,
        progress: bool = False,
        forget_missing: bool = False,
    ) -> IndexReport:
        """Bring the index up to date with the pictures under roots. A root that is
        missing or empty while the index holds pictures under it keeps them (a warning
        in the report says so) unless forget_missing."""
        from photon_index.embed.encoder import preferred_device
        from photon_index.ingest import Ingest, check_roots

        cap_arenas()  # before Lance's threads start allocating
        present, warnings = check_roots(
            [Path(r) for r in roots], self.table(), forget_missing=forget_missing
        )
        loaded = self.load_model(model, progress=progress)
        preferred_device(self.settings.model.device)  # a bad --device, before any write
        created = not self.db_path.exists()
        with write_lock(self.db_path):
            try:
                table = self._table_for(loaded, model)
                self._finish_actions(table)  # rows in step with the files before we compare
                ingest = Ingest(
                    table, loaded, self.settings, progress=progress, forget_missing=forget_missing
                )
                report = ingest.run(present)
            except BaseException:
                if created:  # and locked: no other run can be using it
                    _remove_if_empty(self.db_path)
                raise
            threshold = self.settings.search.ann_threshold
            if table.vector_index() is None and table.count() >= threshold:
                table.build_vector_index(self.settings.search.rows_per_partition)
        report.warnings[:0] = warnings
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
        """Groups of exact copies, near copies (pHash) and, with similar, the same scene.
        A dedupe action that was interrupted is finished first, so the groups come from
        a table in step with the files."""
        from photon_index.actions import Journal
        from photon_index.query.dedupe import find_duplicates

        if Journal(self.db_path).unfinished():
            with write_lock(self.db_path):
                self._finish_actions(self._existing_table())
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
        """Move every non-keeper under destination, keeping absolute paths below it."""
        from photon_index.actions import Action

        return self._act(groups, Action("move", destination=Path(destination)))

    def trash_duplicates(
        self, groups: list[DuplicateGroup], *, similar: bool = False
    ) -> ActionReport:
        """Send every non-keeper to the system trash; similar: the similar tier's too."""
        from photon_index.actions import Action

        return self._act(groups, Action("trash", similar=similar))

    def delete_duplicates(
        self, groups: list[DuplicateGroup], *, similar: bool = False
    ) -> ActionReport:
        """Delete every non-keeper for good (no undo); similar: the similar tier's too."""
        from photon_index.actions import Action

        return self._act(groups, Action("delete", similar=similar))

    def undo(self) -> UndoReport:
        """Put back the last dedupe batch: moved and trashed files, and their rows."""
        from photon_index.actions import Journal, undo_last

        with write_lock(self.db_path):
            table = self._existing_table()
            self._finish_actions(table)
            return undo_last(Journal(self.db_path), table)

    def _act(self, groups: list[DuplicateGroup], action: Action) -> ActionReport:
        from photon_index.actions import Journal, act

        with write_lock(self.db_path):  # one writer, as for `photon index`
            table = self._existing_table()
            self._finish_actions(table)
            return act(groups, table, Journal(self.db_path), action)

    def _finish_actions(self, table: ImageTable) -> None:
        """Finish a dedupe action that was interrupted (kill -9): see actions/recover.py."""
        from photon_index.actions import Journal, finish_interrupted

        finish_interrupted(Journal(self.db_path), table)

    def optimize(self) -> None:
        """Compact the table and retrain the ANN index once the table is large enough."""
        table = self._existing_table()
        with write_lock(self.db_path):
            self._finish_actions(table)
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
        table.check()  # the counts come from the manifest: say so if the data is damaged
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


def _remove_if_empty(db_path: Path) -> None:
    """Undo the folder a failed first run made, so a typo leaves nothing behind; a
    folder with any committed row is kept."""
    try:
        table = ImageTable.open(db_path)
    except PhotonError:
        return
    if table is None or table.count() == 0:
        shutil.rmtree(db_path, ignore_errors=True)


def _vision_dim(model: ModelFiles) -> int:
    from photon_index.embed.encoder import open_session

    session = open_session(model.vision, "cpu", 1)
    (pooled,) = [o for o in session.get_outputs() if o.name == "pooler_output"]
    return int(pooled.shape[-1])

"""`Index`: photon's library API. One object per database; the CLI and the web server
are thin layers over it.

An Index may live long and serve several threads (the web server keeps one): it keeps
its model's encoders, the id map of the table's current version and the last duplicate
groups, each built once under a lock, while every call reads the table's latest version."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photon_index.config import Settings
from photon_index.errors import (
    DatabaseError,
    FileChangedError,
    ImageError,
    NotFoundError,
    PhotonError,
    UsageError,
)
from photon_index.models import ModelFiles, load_model
from photon_index.models.download import resolve_endpoint
from photon_index.models.installed import folder_size
from photon_index.query.search import printable
from photon_index.store.ids import ImageIds
from photon_index.store.lock import write_lock
from photon_index.store.malloc import cap_arenas
from photon_index.store.roots import add_roots
from photon_index.store.schema import RECORD_COLUMNS, ImageRecord, record_from_row
from photon_index.store.table import ImageTable
from photon_index.thumbnails import DEFAULT_SIZE

if TYPE_CHECKING:
    from PIL import Image

    from photon_index.actions import Action, ActionReport, UndoReport
    from photon_index.embed import Encoders
    from photon_index.embed.embeddings import Embeddings
    from photon_index.ingest import IndexReport, RunProgress
    from photon_index.query.dedupe import DuplicateGroup
    from photon_index.query.search import Filters, Searcher, SearchResults


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


@dataclass(frozen=True)
class LibraryStatus(IndexInfo):
    """info(), and the last `photon index` run: its progress while it runs, then how it
    ended and what failed."""

    last_run: RunProgress | None = None


class Index:
    """The photo index at `db` (default: the user data dir, or $PHOTON_HOME/db)."""

    def __init__(self, db: Path | str | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self.db_path = Path(db).expanduser().absolute() if db else self.settings.paths.db
        self._encoders: dict[str, Encoders] = {}  # by model ref
        self._encoders_lock = threading.Lock()
        self._ids: ImageIds | None = None
        self._ids_lock = threading.Lock()
        # (what they were found from, the groups): see dedupe()
        self._groups: tuple[tuple[Any, ...], list[DuplicateGroup]] | None = None

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
        thumbnails: bool = False,
    ) -> IndexReport:
        """Bring the index up to date with the pictures under roots. A root that is
        missing or empty while the index holds pictures under it keeps them (a warning
        in the report says so) unless forget_missing. thumbnails: cache the thumbnail
        (DEFAULT_SIZE) of every picture the model sees. The run's progress is published
        for status() in other processes to read."""
        from photon_index.embed.encoder import preferred_device
        from photon_index.ingest import Ingest, Interrupted, ProgressFile, check_roots

        cap_arenas()  # before Lance's threads start allocating
        present, warnings = check_roots(
            [Path(r) for r in roots], self.table(), forget_missing=forget_missing
        )
        loaded = self.load_model(model, progress=progress)
        preferred_device(self.settings.model.device)  # a bad --device, before any write
        created = not self.db_path.exists()
        with write_lock(self.db_path):
            published = ProgressFile(self.db_path)
            try:
                table = self._table_for(loaded, model)
                self._finish_actions(table)  # rows in step with the files before we compare
                ingest = Ingest(
                    table,
                    loaded,
                    self.settings,
                    progress=progress,
                    forget_missing=forget_missing,
                    thumbnails=thumbnails,
                    publish=published,
                )
                report = ingest.run(present)
                threshold = self.settings.search.ann_threshold
                if table.vector_index() is None and table.count() >= threshold:
                    table.build_vector_index(self.settings.search.rows_per_partition)
            except BaseException as e:
                if isinstance(e, (Interrupted, KeyboardInterrupt)):
                    published.end("interrupted")
                else:
                    published.end("failed", " ".join(str(e).split()) or type(e).__name__)
                if created:  # and locked: no other run can be using it
                    _remove_if_empty(self.db_path)
                raise
            published.end("finished")
            add_roots(self.db_path, present)  # for dedupe's --move-to check (store/roots.py)
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
        pictures: Sequence[bytes] = (),
        limit: int | None = None,
        filters: Filters | None = None,
        files: bool = True,
    ) -> SearchResults:
        """Best matches for a query of texts and pictures (see photon_index.query.search);
        pictures: image files' bytes (uploads), each a term of weight 1. files: a term
        naming a picture file is that picture; a server passes False, so that its
        clients' texts never open its files."""
        from photon_index.query.search import Filters, parse_terms

        terms = parse_terms(query, add, sub, pictures, files=files)
        return self._searcher().search(terms, filters or Filters(), self._limit(limit))

    def search_vector(
        self, vector: np.ndarray, *, limit: int | None = None, filters: Filters | None = None
    ) -> SearchResults:
        """Best matches for an embedding of this index's model (normalised here), scored
        by cosine: e.g. one from embed_texts(), or a mix of several."""
        from photon_index.query.search import Filters

        return self._searcher().by_vector(vector, filters or Filters(), self._limit(limit))

    def similar(
        self, image_id: str, *, limit: int | None = None, filters: Filters | None = None
    ) -> SearchResults:
        """More like this: the pictures nearest to an indexed one, without itself."""
        from photon_index.query.search import Filters

        table = self._existing_table()
        row = self._row(table, image_id, ["path", "embedding"])
        searcher = self._searcher(table)
        vector = np.asarray(row["embedding"], dtype=np.float32)
        return searcher.by_vector(
            vector, filters or Filters(), self._limit(limit), exclude=row["path"]
        )

    def embed_texts(self, texts: Sequence[str], *, batch_size: int | None = None) -> Embeddings:
        """Texts as unit vectors in the index's space: its model's, or the configured
        model's before the first run. batch_size texts go to the model at a time
        (default: index.batch_size)."""
        from photon_index.embed.embeddings import Embeddings

        if isinstance(texts, str):
            raise UsageError("embed_texts takes a list of texts, not one text")
        texts = list(texts)
        size = self.settings.index.batch_size if batch_size is None else batch_size
        if size < 1:
            raise UsageError(f"the batch size must be at least 1, not {size}")
        encoders = self._encoders_for(self._model_ref())
        encoder = encoders.text()
        batches = [encoder.encode(texts[i : i + size]) for i in range(0, len(texts), size)]
        return Embeddings(_stacked(batches, encoder.dim), texts, encoders.model.name)

    def embed_images(self, images: Sequence[Path | str | bytes]) -> Embeddings:
        """Pictures (paths, or image files' bytes) as unit vectors, decoded and embedded
        as the indexer does it, so an indexed picture's matches its stored one.
        ImageError names the first that cannot be decoded."""
        from photon_index.decode import decode, read_bytes
        from photon_index.embed.embeddings import Embeddings

        encoders = self._encoders_for(self._model_ref())
        encoder = encoders.image()
        draft = (encoder.preprocess.width, encoder.preprocess.height)
        max_pixels = self.settings.index.max_pixels
        items = list(images)
        names = ["<bytes>" if isinstance(i, bytes) else str(i) for i in items]

        def picture(item: Path | str | bytes, name: str) -> Image.Image:
            if not isinstance(item, bytes) and not Path(item).expanduser().is_file():
                raise UsageError(f"{printable(name)}: no such picture file")
            try:
                data = item if isinstance(item, bytes) else read_bytes(Path(item).expanduser())
                return decode(data, max_pixels=max_pixels, draft=draft).image
            except ImageError as e:
                raise ImageError(f"{printable(name)}: {e}") from e

        size = self.settings.index.batch_size
        batches = []  # decoded a batch at a time: memory stays flat however many there are
        for start in range(0, len(items), size):
            chunk = zip(items[start : start + size], names[start : start + size], strict=True)
            batches.append(encoder.encode([picture(item, name) for item, name in chunk]))
        return Embeddings(_stacked(batches, encoder.dim), names, encoders.model.name)

    def image(self, image_id: str) -> ImageRecord | None:
        """The indexed picture with this id (see store/ids.py), or None."""
        table = self.table()
        if table is None:
            return None
        try:
            return record_from_row(self._row(table, image_id, RECORD_COLUMNS))
        except NotFoundError:
            return None

    def thumbnail(self, image_id: str, size: int = DEFAULT_SIZE) -> Path:
        """The cached WebP thumbnail of an indexed picture, size pixels on its longer
        side (32 to 2048), made first if need be. FileChangedError when the file is gone
        or is not what was indexed: a thumbnail never shows other content than the id's."""
        from photon_index.decode import read_bytes
        from photon_index.hashing import content_hash
        from photon_index.thumbnails import check_size, make_thumbnail, thumbnail_path

        check_size(size)
        row = self._row(self._existing_table(), image_id, RECORD_COLUMNS)
        path = row["path"]
        _check_unchanged(path, row["file_size"], row["mtime_ns"])
        target = thumbnail_path(self.db_path, row["content_hash"], size)
        if _cached(target):
            return target
        try:
            data = read_bytes(Path(path))
        except ImageError as e:
            raise ImageError(f"{printable(path)}: {e}") from e
        if content_hash(data) != row["content_hash"]:
            raise FileChangedError(_changed(path))
        try:
            make_thumbnail(data, target, size, max_pixels=self.settings.index.max_pixels)
        except ImageError as e:
            raise ImageError(f"{printable(path)}: {e}") from e
        except OSError as e:
            raise DatabaseError(
                f"cannot write the thumbnail {target}: {e.strerror or e}; "
                "free some space or make the database folder writable"
            ) from e
        return target

    def _searcher(self, table: ImageTable | None = None) -> Searcher:
        from photon_index.query.search import Searcher

        table = table or self._existing_table()
        return Searcher(table, self._encoders_for(table.model_ref), self.settings)

    def _encoders_for(self, ref: str) -> Encoders:
        """The encoders of a model, made once per Index: their towers are built on first
        use and kept (Encoders)."""
        from photon_index.embed import Encoders

        with self._encoders_lock:
            if ref not in self._encoders:
                model = self.load_model(ref)
                self._encoders[ref] = Encoders(model, device=self.settings.model.device)
            return self._encoders[ref]

    def _model_ref(self) -> str:
        table = self.table()
        return table.model_ref if table else self.settings.model.name

    def _limit(self, limit: int | None) -> int:
        return self.settings.search.limit if limit is None else limit

    def _row(self, table: ImageTable, image_id: str, columns: list[str]) -> dict[str, Any]:
        """These columns of the picture with this id; NotFoundError if there is none."""
        with self._ids_lock:
            if self._ids is None or self._ids.version != table.version:
                self._ids = ImageIds(table)
            ids = self._ids
        row_id = ids.row_id(image_id)
        if row_id is None:
            raise NotFoundError(f"no picture with id {image_id!r} in the index at {self.db_path}")
        (row,) = table.take_rows([row_id], columns).to_pylist()
        return row

    def dedupe(
        self,
        *,
        similar: bool = False,
        phash_distance: int | None = None,
        similar_cosine: float | None = None,
    ) -> list[DuplicateGroup]:
        """Groups of exact copies, near copies (pHash) and, with similar, the same scene,
        without those dismissed (dismiss_duplicates). A dedupe action that was
        interrupted is finished first, so the groups come from a table in step with the
        files. The groups are kept until the table, the dismissed groups or the
        arguments change: finding them takes seconds at 200,000 pictures, and the web
        server asks for them again with every picture's duplicates_of."""
        from photon_index.actions import Journal
        from photon_index.query.dedupe import find_duplicates
        from photon_index.query.dismissed import read_dismissed

        if Journal(self.db_path).unfinished():
            with write_lock(self.db_path):
                self._finish_actions(self._existing_table())
        table = self._existing_table()
        defaults = self.settings.dedupe
        distance = defaults.phash_distance if phash_distance is None else phash_distance
        cosine = defaults.similar_cosine if similar_cosine is None else similar_cosine
        dismissed = read_dismissed(self.db_path)
        key = (table.version, distance, cosine if similar else None, tuple(dismissed))
        found = self._groups
        if found is None or found[0] != key:
            groups = find_duplicates(
                table,
                phash_distance=distance,
                near_cosine=defaults.near_cosine,
                similar_cosine=key[2],
                dismissed=dismissed,
            )
            found = self._groups = (key, groups)
        return list(found[1])

    def duplicates_of(self, image_id: str) -> list[DuplicateGroup]:
        """The groups of dedupe() (exact and near tiers) that hold this picture, as the
        keeper, a duplicate or another path of one of them."""
        path = self._row(self._existing_table(), image_id, ["path"])["path"]
        return [g for g in self.dedupe() if path in (g.keep, *g.duplicates, *g.aliases)]

    def dismiss_duplicates(self, group: DuplicateGroup) -> None:
        """Remember that the keeper and duplicates of group are not duplicates: dedupe()
        never returns a group of only these pictures again, by content, so also after
        they move or are indexed again. Stored in the database folder."""
        from photon_index.query.dismissed import dismiss

        members = [group.keep, *group.duplicates]
        hashes = self._existing_table().hashes_of(members)
        missing = [p for p in members if p not in hashes]
        if missing:
            raise UsageError(
                f"{printable(missing[0])} is no longer in the index: find the duplicates again"
            )
        dismiss(self.db_path, frozenset(hashes.values()))

    def move_duplicates(
        self, groups: list[DuplicateGroup], destination: Path | str
    ) -> ActionReport:
        """Move every non-keeper under destination, keeping absolute paths below it."""
        from photon_index.actions import Action

        return self._act(groups, Action("move", destination=destination))

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

    def status(self) -> LibraryStatus:
        """info() and the last (or running) `photon index` run's progress."""
        from photon_index.ingest import read_progress

        return LibraryStatus(**asdict(self.info()), last_run=read_progress(self.db_path))

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


def _stacked(batches: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(batches) if batches else np.empty((0, dim), dtype=np.float32)


def _check_unchanged(path: str, size: int, mtime_ns: int) -> None:
    """FileChangedError unless the file has the size and mtime it was indexed with."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise FileChangedError(
            f"{printable(path)} no longer exists: run `photon index` to update the index"
        ) from None
    except OSError as e:
        from photon_index.decode import read_error

        raise ImageError(f"{printable(path)}: {read_error(e)}") from e
    if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
        raise FileChangedError(_changed(path))


def _changed(path: str) -> str:
    return f"{printable(path)} changed since it was indexed: run `photon index` to update it"


def _cached(target: Path) -> bool:
    """Whether a thumbnail is cached. An empty file is not one: a power cut can leave
    one behind, since thumbnails are renamed into place without an fsync."""
    try:
        return target.stat().st_size > 0
    except FileNotFoundError:
        return False


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

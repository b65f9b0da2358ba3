"""`Index`: photon's library API. One object per database; the CLI and the web server
are thin layers over it.

An Index may live long and serve several threads (the web server keeps one): it keeps
its model's encoders, the id map of the table's current version and the last duplicate
groups, each built once under a lock, while every call reads the table's latest version."""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
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
from photon_index.store.location import Database, Remote, Storage, database, local_folder
from photon_index.store.lock import write_lock
from photon_index.store.malloc import cap_arenas
from photon_index.store.mounts import record_mounts, unmounted
from photon_index.store.roots import add_roots, as_recorded, read_roots
from photon_index.store.schema import RECORD_COLUMNS, ImageRecord, record_from_row
from photon_index.store.table import ImageTable
from photon_index.thumbnails import DEFAULT_SIZE

if TYPE_CHECKING:
    from PIL import Image

    from photon_index.actions import Action, ActionReport, UndoReport
    from photon_index.embed import Encoders
    from photon_index.embed.embeddings import Embeddings
    from photon_index.ingest import IndexReport, Ingest, RunProgress
    from photon_index.query.dedupe import DuplicateGroup
    from photon_index.query.search import Filters, Searcher, SearchResults
    from photon_index.tags import TagCount, TagScore
    from photon_index.tags.run import Tagger, TagReport
    from photon_index.tags.vocabulary import Vocabulary
    from photon_index.watch import WatchEvent, WatchReport


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
        # A folder or an s3:// URI (store/location.py); db_path: this machine's folder for it.
        self.db: Database = database(db, self.settings) if db else self.settings.paths.db
        self.db_path = local_folder(self.db)
        self._encoders: dict[str, Encoders] = {}  # by model ref
        self._encoders_lock = threading.Lock()
        self._ids: ImageIds | None = None
        self._ids_lock = threading.Lock()
        # (what they were found from, the groups): see dedupe()
        self._groups: tuple[tuple[Any, ...], list[DuplicateGroup]] | None = None

    def table(self) -> ImageTable | None:
        return ImageTable.open(self.db)

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
        engine: str = "local",
        address: str | None = None,
    ) -> IndexReport:
        """Bring the index up to date with the pictures under roots (folders, files, or
        s3:// prefixes). A root that is missing or empty while the index holds pictures
        under it keeps them (a warning in the report says so) unless forget_missing.
        thumbnails: cache the thumbnail (DEFAULT_SIZE) of every picture the model sees.
        engine: "local" (worker processes) or "ray" (a Ray cluster: the one at address,
        else a local one; ingest/ray_engine.py). The run's progress is published for
        status() in other processes to read."""
        from photon_index.embed.encoder import preferred_device
        from photon_index.ingest import Interrupted, ProgressFile, check_roots
        from photon_index.ingest.run import moved_roots

        kind = _engine(engine, thumbnails)
        cap_arenas()  # before Lance's threads start allocating
        present, warnings = check_roots(
            roots, self.table(), forget_missing=forget_missing, storage=self.storage
        )
        loaded = self.load_model(model, progress=progress)
        preferred_device(self.settings.model.device)  # a bad --device, before any write
        created = not self.db_path.exists()
        with write_lock(self.db_path):
            published = ProgressFile(self.db_path)
            try:
                table = self._table_for(loaded, model)
                self._finish_actions(table)  # rows in step with the files before we compare
                ingest = kind(
                    table,
                    loaded,
                    self.settings,
                    progress=progress,
                    forget_missing=forget_missing,
                    unmounted=[] if forget_missing else unmounted(self.db_path),
                    thumbnails=thumbnails,
                    publish=published,
                    **({"address": address} if engine == "ray" else {}),
                )
                report = ingest.run(present)
                try:
                    started = time.monotonic()
                    report.rehashed = self._fill_hashes(table, loaded, progress)
                    report.rehash_elapsed = round(time.monotonic() - started, 3)
                except KeyboardInterrupt:
                    raise Interrupted(
                        f"interrupted while hashing older pictures for dedupe: the index "
                        f"keeps its {table.count()} pictures; run `photon index` again to "
                        "finish",
                        report,
                    ) from None
                self._finish_run(table, report)
            except BaseException as e:
                if isinstance(e, (Interrupted, KeyboardInterrupt)):
                    published.end("interrupted")
                else:
                    published.end("failed", " ".join(str(e).split()) or type(e).__name__)
                if created:  # and locked: no other run can be using it
                    _remove_if_empty(self.db)
                raise
            published.end("finished")
            # For dedupe's --move-to check (store/roots.py), which moves local files only.
            local = [r for r in present if isinstance(r, Path)]
            report.warnings += moved_roots(table, read_roots(self.db_path), present)
            add_roots(self.db_path, local)
            record_mounts(self.db_path, table.paths(), local, forget_missing=forget_missing)
        report.warnings[:0] = warnings
        return report

    def _fill_hashes(self, table: ImageTable, model: ModelFiles, progress: bool) -> int:
        """Hash the pictures indexed before one of dedupe's hashes existed (once)."""
        from photon_index.embed.preprocess import ImagePreprocessor
        from photon_index.ingest.rehash import fill_hashes

        size = ImagePreprocessor.from_file(model.preprocessor)
        return fill_hashes(
            table,
            max_pixels=self.settings.index.max_pixels,
            draft=(size.width, size.height),
            workers=self.settings.index.workers or os.cpu_count() or 1,
            progress=progress,
        )

    def _finish_run(self, table: ImageTable, report: IndexReport) -> None:
        """After rows were written: the ANN index once the table is large enough, and
        the new pictures' tags."""
        threshold = self.settings.search.ann_threshold
        if table.vector_index() is None and table.count() >= threshold:
            table.build_vector_index(self.settings.search.rows_per_partition)
        self._tag_new(table, report)

    def watch(
        self,
        roots: Sequence[Path | str],
        *,
        model: str | None = None,
        stop: threading.Event | None = None,
        on_event: Callable[[WatchEvent], None] | None = None,
    ) -> WatchReport:
        """Keep the index in step with the pictures under roots as they change, until
        stop is set or Ctrl-C: see photon_index/watch.py. on_event hears of each batch
        and of roots that went or came back."""
        from photon_index.watch import Watcher

        return Watcher(self, roots, model=model, stop=stop, on_event=on_event).run()

    def _tag_new(self, table: ImageTable, report: IndexReport) -> None:
        """Tag what this run added. The rows are committed already: a failure here costs
        only the tags, which the next run or `photon tags --recompute` makes."""
        try:
            report.tagged = self._tagger(table).run().pictures
        except PhotonError as e:
            report.warnings.append(f"tags not updated: {e}; run `photon tags --recompute`")

    def vocabulary(self) -> Vocabulary:
        """The tag vocabulary of this index's model (README, "Tags")."""
        from photon_index.tags.vocabulary import load_vocabulary

        tags = self.settings.tags
        model = self.load_model(self._model_ref())
        return load_vocabulary(model.dir, tags.vocabulary, tags.add, tags.thresholds)

    def _tagger(self, table: ImageTable) -> Tagger:
        from photon_index.store.tags import TagStore
        from photon_index.tags.run import Tagger
        from photon_index.tags.scoring import Rule, tag_embeddings

        encoders = self._encoders_for(table.model_ref)
        vocabulary = self.vocabulary()
        models = self.settings.paths.models
        embeddings = tag_embeddings(vocabulary, encoders.text(), encoders.model, models)
        tags = self.settings.tags
        return Tagger(
            table=table,
            store=TagStore(self.db),
            vocabulary=vocabulary,
            embeddings=embeddings,
            model=encoders.model,
            rule=Rule(tags.z, tags.floor, tags.max_per_picture),
            sample_rows=tags.sample_rows,
            block_rows=tags.block_rows,
        )

    def retag(self) -> TagReport:
        """Tag every picture anew from the stored embeddings, thresholds included: after
        a change of vocabulary or of the [tags] settings."""
        with write_lock(self.db_path):
            table = self._existing_table()
            self._finish_actions(table)
            return self._tagger(table).run(full=True)

    def tags(self) -> list[TagCount]:
        """The library's tags and how many pictures have each, most common first."""
        from photon_index.store.tags import TagStore
        from photon_index.tags import TagCount

        table = self._existing_table()
        self._check_tagged()
        paths = table.columns(["path"]).column("path").combine_chunks()
        counts = TagStore(self.db).counts(paths)
        return [TagCount(t, n) for t, n in sorted(counts.items(), key=lambda c: (-c[1], c[0]))]

    def tags_of(self, picture: Path | str | bytes) -> list[TagScore]:
        """A picture's tags, best first, with SigLIP's probabilities: its stored
        embedding when its bytes are indexed, else the vision tower's. Thresholds are
        the library's; without a tagged library, the probability floor alone."""
        from photon_index.decode import read_bytes
        from photon_index.hashing import content_hash
        from photon_index.store.tags import TagStore
        from photon_index.tags import TagScore
        from photon_index.tags.scoring import (
            Cutoffs,
            assign,
            logit,
            logits,
            probabilities,
            tag_embeddings,
        )

        if not isinstance(picture, bytes) and not Path(picture).expanduser().is_file():
            raise UsageError(f"{printable(str(picture))}: no such picture file")
        table = self.table()
        stored = None
        if table is not None:
            try:
                data = picture if isinstance(picture, bytes) else read_bytes(Path(picture))
            except ImageError as e:
                raise ImageError(f"{printable(str(picture))}: {e}") from e
            found = table.rows_by_hash([content_hash(data)])
            stored = next(iter(found.values())).embedding if found else None
        vector = stored if stored is not None else self.embed_images([picture]).vectors[0]
        encoders = self._encoders_for(self._model_ref())
        vocabulary = self.vocabulary()
        models = self.settings.paths.models
        embeddings = tag_embeddings(vocabulary, encoders.text(), encoders.model, models)
        state = TagStore(self.db).state() if table is not None else None
        count = len(vocabulary.tags)
        if state is not None and state.names == vocabulary.names:
            cuts = Cutoffs(np.asarray(state.thresholds, np.float32), np.asarray(state.spreads))
        else:
            floor = logit(self.settings.tags.floor)
            cuts = Cutoffs(np.full(count, floor, np.float32), np.ones(count, np.float32))
        block = logits(np.asarray(vector, np.float32)[None], embeddings, encoders.model)
        picked, values = assign(block, cuts, self.settings.tags.max_per_picture).of(0)
        chances = probabilities(values)
        return [
            TagScore(vocabulary.names[i], round(float(p), 6), round(v, 4))
            for i, p, v in zip(picked, chances, values, strict=True)
        ]

    def stored_tags(self, path: str) -> list[TagScore]:
        """An indexed picture's tags as `photon index` stored them, best first; none
        before it is tagged. Nothing is decoded or embedded: what a page shows."""
        from photon_index.store.tags import TagStore
        from photon_index.tags import TagScore
        from photon_index.tags.scoring import probabilities

        tags, values = TagStore(self.db).of(path)
        chances = probabilities(values)
        return [
            TagScore(t, round(float(p), 6), round(v, 4))
            for t, p, v in zip(tags, chances, values, strict=True)
        ]

    def _check_tagged(self) -> None:
        from photon_index.store.tags import TagStore

        if TagStore(self.db).state() is None:
            raise UsageError(
                f"the index at {self.db} has no tags yet: run `photon tags --recompute`"
            )

    def _tagged_rows(self, table: ImageTable, tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Row ids of the pictures with every one of these tags (names or synonyms),
        best first, and the lowest logit of those tags for each."""
        from photon_index.store.tags import TagStore

        self._check_tagged()
        vocabulary = self.vocabulary()
        names = []
        for wanted in tags:
            tag = vocabulary.find(wanted)
            if tag is None:
                raise UsageError(f"no tag {wanted!r} in the vocabulary: `photon tags` lists them")
            names.append(tag.name)
        paths, lowest = TagStore(self.db).tagged(names)
        with self._ids_lock:
            if self._ids is None or self._ids.version != table.version:
                self._ids = ImageIds(table)
            ids = self._ids
        rows = ids.row_ids(paths)
        present = rows >= 0
        order = np.argsort(-lowest[present], kind="stable")
        return rows[present][order], lowest[present][order]

    def _table_for(self, loaded: ModelFiles, ref: str | None) -> ImageTable:
        """This index's table, created for the model if there is none; refused if it was
        built with another model."""
        table = self.table()
        if table is not None and table.model != loaded.name:
            raise UsageError(
                f"the index at {self.db} was built with model {table.model}; "
                f"index with --model {table.model_ref}, or use --db DIR for a separate "
                f"index with {loaded.name}"
            )
        if table is None:
            dim = _vision_dim(loaded)
            table = ImageTable.create(self.db, dim, loaded.name, ref or loaded.name)
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

        filters = self._spelled(filters or Filters())
        table = self._existing_table()
        among = self._tagged_rows(table, filters.tags) if filters.tags else None
        if among is not None and not (query or add or sub or pictures):
            return self._searcher(table).tagged(*among, filters, self._limit(limit))
        terms = parse_terms(query, add, sub, pictures, files=files)
        rows = among[0] if among is not None else None
        return self._searcher(table).search(terms, filters, self._limit(limit), among=rows)

    def search_vector(
        self, vector: np.ndarray, *, limit: int | None = None, filters: Filters | None = None
    ) -> SearchResults:
        """Best matches for an embedding of this index's model (normalised here), scored
        by cosine: e.g. one from embed_texts(), or a mix of several."""
        from photon_index.query.search import Filters

        filters = self._spelled(filters or Filters())
        table = self._existing_table()
        among = self._tagged_rows(table, filters.tags)[0] if filters.tags else None
        return self._searcher(table).by_vector(vector, filters, self._limit(limit), among=among)

    def similar(
        self, image_id: str, *, limit: int | None = None, filters: Filters | None = None
    ) -> SearchResults:
        """More like this: the pictures nearest to an indexed one, without itself."""
        from photon_index.query.search import Filters

        table = self._existing_table()
        row = self._row(table, image_id, ["path", "embedding"])
        searcher = self._searcher(table)
        vector = np.asarray(row["embedding"], dtype=np.float32)
        filters = self._spelled(filters or Filters())
        among = self._tagged_rows(table, filters.tags)[0] if filters.tags else None
        return searcher.by_vector(
            vector, filters, self._limit(limit), exclude=row["path"], among=among
        )

    def _spelled(self, filters: Filters) -> Filters:
        """--in as the index spells the folder (store/roots.py: as_recorded)."""
        if filters.under is None:
            return filters
        under = Path(os.path.abspath(filters.under.expanduser()))
        return dataclasses.replace(filters, under=as_recorded(under, self.db_path))

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
        from photon_index.decode import decode_file, read_bytes
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
                return decode_file(name, data, max_pixels=max_pixels, draft=draft).image
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
        from photon_index.files import split_frame
        from photon_index.thumbnails import (
            check_size,
            make_frame_thumbnail,
            make_thumbnail,
            thumbnail_path,
        )

        check_size(size)
        row = self._row(self._existing_table(), image_id, RECORD_COLUMNS)
        path = row["path"]
        file, at = split_frame(path)  # a video's frame, or a picture
        _check_unchanged(file, row["file_size"], row["mtime_ns"], self.storage)
        key = row["content_hash"] if at is None else f"{row['content_hash']}-t{at}"
        target = thumbnail_path(self.db_path, key, size)
        if _cached(target):
            return target
        # A video is not read whole to be hashed again: its size and mtime were checked.
        data = self._read_indexed(row) if at is None else b""
        max_pixels = self.settings.index.max_pixels
        try:
            if at is None:
                make_thumbnail(data, target, size, max_pixels=max_pixels, name=path)
            else:
                make_frame_thumbnail(Path(file), at, target, size, max_pixels=max_pixels)
        except ImageError as e:
            raise ImageError(f"{printable(path)}: {e}") from e
        except OSError as e:
            raise DatabaseError(
                f"cannot write the thumbnail {target}: {e.strerror or e}; "
                "free some space or make the database folder writable"
            ) from e
        return target

    def original(self, image_id: str) -> bytes:
        """An indexed picture's bytes, as indexed (FileChangedError if they changed):
        how the web app shows a picture on object storage."""
        row = self._row(self._existing_table(), image_id, RECORD_COLUMNS)
        _check_unchanged(row["path"], row["file_size"], row["mtime_ns"], self.storage)
        return self._read_indexed(row)

    @property
    def storage(self) -> Storage:
        """How s3:// pictures (and the database, if it is there) are reached."""
        if isinstance(self.db, Remote):
            return self.db.storage
        return Storage.from_settings(self.settings)

    def _read_indexed(self, row: dict[str, Any]) -> bytes:
        from photon_index.hashing import content_hash
        from photon_index.sources import read_source

        path = row["path"]
        try:
            data = read_source(path, self.storage)
        except ImageError as e:
            raise ImageError(f"{printable(path)}: {e}") from e
        if content_hash(data) != row["content_hash"]:
            raise FileChangedError(_changed(path))
        return data

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
            raise NotFoundError(f"no picture with id {image_id!r} in the index at {self.db}")
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

        cap_arenas()  # a million rows read by Lance's threads: 0.9 GB peak, not 1.0

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
                dhash_distance=defaults.dhash_distance,
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
        from photon_index.store.location import is_remote

        remote = next((p for g in groups for p in (g.keep, *g.duplicates) if is_remote(p)), None)
        if remote is not None:
            raise UsageError(
                f"{printable(remote)} is on object storage: dedupe moves and deletes local "
                "files only; remove copies there with your storage's own tools"
            )
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
            raise UsageError(f"no index at {self.db} yet: run `photon index FOLDER` first")
        return table

    def status(self) -> LibraryStatus:
        """info() and the last (or running) `photon index` run's progress."""
        from photon_index.ingest import read_progress

        return LibraryStatus(**asdict(self.info()), last_run=read_progress(self.db_path))

    def info(self) -> IndexInfo:
        table = self.table()
        if table is None:
            return IndexInfo(str(self.db), False, None, 0, 0, None, None, [])
        table.check()  # the counts come from the manifest: say so if the data is damaged
        return IndexInfo(
            db=str(self.db),
            exists=True,
            model=table.model,
            rows=table.count(),
            size_bytes=self.db.size() if isinstance(self.db, Remote) else folder_size(self.db),
            version=table.version,
            dim=table.dim,
            indices=table.indices(),
        )


def _engine(engine: str, thumbnails: bool) -> type[Ingest]:
    """The indexer class of an engine; UsageError for an unknown or unusable one."""
    from photon_index.ingest import Ingest

    if engine == "local":
        return Ingest
    if engine != "ray":
        raise UsageError(f"unknown engine {engine!r}: use local or ray")
    from photon_index.ingest.ray_engine import RayIngest, require_ray

    require_ray()
    if thumbnails:
        raise UsageError("--thumbnails works with the local engine only; leave it out")
    return RayIngest


def _stacked(batches: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(batches) if batches else np.empty((0, dim), dtype=np.float32)


def _check_unchanged(path: str, size: int, mtime_ns: int, storage: Storage) -> None:
    """FileChangedError unless the file has the size and mtime it was indexed with."""
    from photon_index.sources import stamp

    try:
        found = stamp(path, storage)
    except FileNotFoundError:
        raise FileChangedError(
            f"{printable(path)} no longer exists: run `photon index` to update the index"
        ) from None
    except OSError as e:
        from photon_index.decode import read_error

        raise ImageError(f"{printable(path)}: {read_error(e)}") from e
    if found != (size, mtime_ns):
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


def _remove_if_empty(db: Database) -> None:
    """Undo the folder a failed first run made, so a typo leaves nothing behind; a
    folder with any committed row is kept. (An empty table on object storage is left:
    it costs nothing and the next run uses it.)"""
    try:
        table = ImageTable.open(db)
    except PhotonError:
        return
    if table is None or table.count() == 0:
        shutil.rmtree(local_folder(db), ignore_errors=True)


def _vision_dim(model: ModelFiles) -> int:
    from photon_index.embed.encoder import open_session

    session = open_session(model.vision, "cpu", 1)
    (pooled,) = [o for o in session.get_outputs() if o.name == "pooler_output"]
    return int(pooled.shape[-1])

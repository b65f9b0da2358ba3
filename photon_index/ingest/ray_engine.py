"""`photon index --engine ray`: the same run on a Ray cluster.

The driver (this process) walks or lists the roots and skips the unchanged, as a local
run does. What is left goes through Ray Data: read + hash + decode + preprocess tasks,
then a pool of embedder actors, each of which builds its ONNX Runtime session once.
Rows come back to the driver, whose planner decides copies and failures exactly as in
a local run (ingest/planner.py), and are written as Lance fragments by lance-ray's
write_lance, one commit per batch: a killed driver loses only the rows since the last
commit, and the next run skips what was committed, so no path is stored twice.

An object whose bytes the table already holds is read and hashed but never decoded
or embedded: its stored row is copied. Ray's own Dataset.write_lance is not used: it
fails against pylance 14; lance-ray is Lance's own integration.

The cluster needs the model at the same path on every node (a shared folder, or
`photon models download` on each): actors load it from there.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from photon_index.discover import FoundFile, WalkError, display
from photon_index.embed.workers import Embedded, Failed
from photon_index.errors import PhotonError, UsageError
from photon_index.ingest.planner import Outcome
from photon_index.ingest.run import Ingest, Root, _present, _Walked
from photon_index.ingest.writer import Writer
from photon_index.store.schema import ImageRow, rows_to_arrow
from photon_index.store.table import storage_options

if TYPE_CHECKING:
    from photon_index.models import ModelFiles
    from photon_index.store.location import Storage

INSTALL = "pip install 'photon-index[ray]'"
# CPUs a read task and an embedder actor ask for. Fractions, not whole CPUs: on a
# 2-core machine two actors at one CPU each took every CPU, and the read tasks that
# feed them were never scheduled (the run hung). ONNX Runtime uses the threads it is
# given whatever Ray reserves; the reservation only decides what runs where.
READ_CPUS = 0.25
EMBED_CPUS = 0.5


def require_ray() -> None:
    """UsageError, saying what to install, when Ray or lance-ray is missing."""
    try:
        import lance_ray  # noqa: F401
        import ray  # noqa: F401
    except ImportError:
        raise UsageError(f"--engine ray needs Ray and lance-ray: {INSTALL}") from None


class RayIngest(Ingest):
    """Ingest with its reading, decoding and embedding on Ray (see the module doc)."""

    def __init__(self, *args: Any, address: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.address = address
        self.writer = _LanceRayWriter(self.table, self.planner.indexed_paths, self.writer.interval)
        self._again: list[str] = []  # paths the planner sends back to the model

    def _index(self, roots: Sequence[Root], walk: _Walked) -> None:
        todo: dict[str, FoundFile] = {}
        for item in self._walk([r for r in roots if _present(r)]):
            if isinstance(item, WalkError):
                walk.unreadable.append(str(item.path))
                self._fail(display(item.path), item.reason)
                continue
            walk.seen.add(str(item.path))
            walk.found[item.root] += 1
            if self._admit(item):
                todo[str(item.path)] = item
        if todo:
            with _cluster(self.address):
                self._run(todo)
        self._commit()

    def _run(self, todo: dict[str, FoundFile]) -> None:
        stored = frozenset(self.planner.stored_hashes)
        for batch in self._pipeline(list(todo.values()), stored):
            self._take_batch(batch, todo)
        self._apply(self.planner.resolve())
        if self._again:  # copies whose stored row was replaced meanwhile: rare
            again, self._again = [todo[p] for p in self._again], []
            for batch in self._pipeline(again, frozenset()):
                self._take_batch(batch, todo, planned=True)

    def _take_batch(
        self, batch: dict[str, np.ndarray], todo: dict[str, FoundFile], planned: bool = False
    ) -> None:
        """Rows from the cluster. planned: the planner saw these files already."""
        for i, path in enumerate(batch["path"]):
            path = str(path)
            error, digest = str(batch["error"][i]), str(batch["content_hash"][i])
            if error:
                if planned:  # the planner fails the copies that waited for it too
                    self._apply(self.planner.embedded(Failed(path, error)))
                else:
                    self._fail(path, error)
                continue
            result = None
            if batch["embedded"][i]:
                info, perceptual = pickle.loads(batch["info"][i])
                result = Embedded(path, info, perceptual, batch["embedding"][i].copy())
            if planned and result is not None:
                self._apply(self.planner.embedded(result), embedded=True)
                continue
            outcome = self.planner.place(todo[path], digest)
            if outcome.embed == [path] and result is not None:
                self._apply(self.planner.embedded(result), embedded=True)
            else:
                self._apply(outcome)
        if self.writer.due:
            self._commit()
        if self.publish is not None:
            self.publish.update(self.report)

    def _apply(self, outcome: Outcome, *, embedded: bool = False) -> None:
        """As a local run, but what the planner sends to the model waits for one more
        pass through the cluster (self._again) instead of a local pool."""
        super()._apply(Outcome(outcome.rows, [], outcome.failed), embedded=embedded)
        self._again += outcome.embed

    def _pipeline(
        self, files: list[FoundFile], stored: frozenset[str]
    ) -> Iterator[dict[str, np.ndarray]]:
        import ray

        size = self.settings.batch_size
        items = [{"path": str(f.path)} for f in files]
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        actors = self.settings.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        read = ray.data.from_items(items, override_num_blocks=max(1, len(items) // size))
        decoded = read.map_batches(
            _read_decode,
            batch_size=size,
            num_cpus=READ_CPUS,
            fn_kwargs={
                "storage": self.storage,
                "preprocessor": self.model.preprocessor,
                "max_pixels": self.settings.max_pixels,
                "stored": ray.put(stored),
            },
        )
        embedded = decoded.map_batches(
            _Embedder,
            batch_size=size,
            num_cpus=EMBED_CPUS,
            num_gpus=1 if gpus else 0,
            compute=ray.data.ActorPoolStrategy(size=actors),
            fn_constructor_kwargs={
                "model": self.model,
                "device": "cuda" if gpus else "cpu",
                "threads": self._all_settings.model.threads or 1,
            },
        )
        yield from embedded.iter_batches(batch_size=None, batch_format="numpy")

    def _start_pool(self) -> Any:
        raise AssertionError("the Ray engine embeds on the cluster")


class _LanceRayWriter(Writer):
    def append(self, rows: list[ImageRow]) -> None:
        """New rows as a Lance fragment written by lance-ray's fragment writer, then
        one commit (an Append that conflicts with nothing). Not through write_lance:
        it runs a Ray Data job per call, which here waited for a CPU the embedders held
        (10 of 16 s on 2 cores; 5 s with stream=True, against 0.1 s this way)."""
        import pickle

        import lance
        from lance_ray import LanceFragmentWriter

        if not rows:
            return
        table = self.table
        options = storage_options(table.db)
        data = rows_to_arrow(rows, table.schema)
        with table._writing("write to"):
            written = LanceFragmentWriter(table.uri, schema=table.schema, storage_options=options)
            fragments = [pickle.loads(f) for f in written(data).column("fragment").to_pylist()]
            lance.LanceDataset.commit(
                table.uri,
                lance.LanceOperation.Append(fragments),
                read_version=table.version,
                storage_options=options,
            )
        table.refresh()


@contextmanager
def _cluster(address: str | None) -> Iterator[None]:
    """Ray for the run: the one this process joined already, the cluster at address,
    or else a local one for this process, shut down after."""
    import ray

    # Ray Data logs every dataset it runs at INFO: a line a commit, on the user's terminal.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        yield
        return
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING"
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a local Ray instance"
        raise UsageError(f"cannot start or reach Ray at {where}: {_one_line(e)}") from e
    try:
        yield
    finally:
        ray.shutdown()


def _read_decode(
    batch: dict[str, np.ndarray],
    *,
    storage: Storage,
    preprocessor: os.PathLike[str],
    max_pixels: int,
    stored: Any,
) -> dict[str, np.ndarray]:
    """Read, hash, decode and preprocess a batch of pictures (a Ray task). A picture
    whose bytes are stored already is only hashed; one that fails carries its error."""
    import ray

    from photon_index.decode import decode_file
    from photon_index.embed.preprocess import ImagePreprocessor
    from photon_index.files import is_video
    from photon_index.hashing import content_hash, perceptual_hashes
    from photon_index.sources import read_source

    prepare = ImagePreprocessor.from_file(preprocessor)
    known = stored if isinstance(stored, frozenset) else ray.get(stored)
    paths = [str(p) for p in batch["path"]]
    count = len(paths)
    pixels = np.zeros((count, 3, prepare.height, prepare.width), np.float32)
    hashes, errors, infos = [""] * count, [""] * count, [b""] * count
    wanted = np.zeros(count, bool)
    for i, path in enumerate(paths):
        if is_video(path):
            errors[i] = "videos are indexed by the local engine: run without --engine ray"
            continue
        try:
            data = read_source(path, storage)
            hashes[i] = content_hash(data)
            if hashes[i] in known:
                continue
            image = decode_file(
                path, data, max_pixels=max_pixels, draft=(prepare.width, prepare.height)
            )
            pixels[i] = prepare.one(image.image)
            infos[i] = pickle.dumps((image.info, perceptual_hashes(image.image)))
            wanted[i] = True
        except PhotonError as e:
            errors[i] = str(e)
    return {
        "path": np.array(paths, object),
        "content_hash": np.array(hashes, object),
        "error": np.array(errors, object),
        "info": np.array(infos, object),
        "wanted": wanted,
        "pixels": pixels,
    }


class _Embedder:
    """A Ray actor: the vision tower, loaded once, embeds the batches it is given."""

    def __init__(self, model: ModelFiles, device: str, threads: int) -> None:
        from photon_index.embed.encoder import ImageEncoder

        self.encoder = ImageEncoder(model, device=device, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = batch.pop("wanted")
        pixels = batch.pop("pixels")
        embedding = np.zeros((len(wanted), self.encoder.dim), np.float32)
        if wanted.any():
            embedding[wanted] = self.encoder.run(pixels[wanted])
        # Rows not embedded carry zeros in transit only: `embedded` is false for them,
        # and the driver never writes such a row (it copies a stored one, or fails).
        return {**batch, "embedded": wanted, "embedding": embedding}


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__

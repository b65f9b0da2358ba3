"""The multiprocessing embedding stage: worker processes that each load the vision tower
once and turn batches of paths into decoded, hashed, embedded images (and, when asked,
thumbnails, made from the picture decoded for the model).

A picture that hangs or crashes its worker must not stall a 200,000-photo run, so each
batch has a deadline; a worker past it (or dead) is replaced, and its batch is retried
one image at a time so only the guilty image becomes a failure."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import pickle
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from multiprocessing.process import BaseProcess
from pathlib import Path

import numpy as np

from photon_index import thumbnails
from photon_index.decode import Decoded, ImageInfo, decode_file
from photon_index.embed.encoder import ImageEncoder
from photon_index.errors import ModelError, PhotonError
from photon_index.files import frame_path, is_video
from photon_index.hashing import PerceptualHashes, content_hash, perceptual_hashes
from photon_index.models import ModelFiles
from photon_index.sources import read_source

_POLL_SECONDS = 0.2
_LATE = "took longer than index.image_timeout to decode and embed; its worker was replaced"
_CRASHED = "crashed its embedding worker, which was replaced"


@dataclass(frozen=True)
class Embedded:
    path: str
    info: ImageInfo
    hashes: PerceptualHashes
    embedding: np.ndarray


@dataclass(frozen=True)
class Frames:
    """A video's keyframes, each embedded; each one's path is its row's (files.frame_path)."""

    path: str  # the video's
    frames: list[Embedded]


@dataclass(frozen=True)
class Failed:
    path: str
    error: str


@dataclass(frozen=True)
class WorkerConfig:
    model: ModelFiles
    device: str
    threads: int
    max_pixels: int
    thumbnails_of: Path | None = None  # a database folder: fill its thumbnail cache
    video_timeout: float = 30.0  # seconds a video's keyframes may take to read


@dataclass
class _Job:
    id: int
    paths: list[str]
    started: float = 0.0


@dataclass
class _Worker:
    process: BaseProcess
    inbox: mp.Queue
    # One pipe per worker, not a shared queue: a worker killed mid-send would hold a
    # shared queue's lock forever; its own pipe is simply dropped with it.
    outbox: Connection
    jobs: deque[_Job] = field(default_factory=deque)
    ready: bool = False  # deadlines run only once the model is loaded


class EmbedPool:
    """Submit batches of paths; collect Embedded/Failed results as they finish."""

    def __init__(self, config: WorkerConfig, *, workers: int, timeout: float) -> None:
        self._ctx = mp.get_context("spawn")  # fork would copy ONNX Runtime's thread pools
        self._config = config
        self._timeout = timeout
        self._workers = [self._start() for _ in range(workers)]
        self._next_id = 0
        try:
            self.device = self._wait_ready(len(self._workers))
        except BaseException:  # Ctrl-C while loading, too: no worker outlives the pool
            self.close()
            raise

    def __enter__(self) -> EmbedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def in_flight(self) -> int:
        return sum(len(w.jobs) for w in self._workers)

    @property
    def capacity(self) -> int:
        """Jobs that may wait: two per worker keeps each busy without unbounded queues."""
        return 2 * len(self._workers)

    def submit(self, paths: list[str]) -> None:
        self._next_id += 1
        self._assign(_Job(self._next_id, paths))

    def results(self, wait: bool) -> list[Embedded | Frames | Failed]:
        """Results of finished jobs; with wait, block until some progress is made.

        A list, read whole before anything is handed back, so a caller may ask again
        while it handles them. (A generator did not allow that: suspended between two
        ready pipes, it went on to read one the inner call had emptied, and blocked.)"""
        while True:
            finished = self._read(timeout=_POLL_SECONDS if wait else 0)
            finished += self._reap()
            if finished or not wait or not self.in_flight:
                return finished

    def close(self) -> None:
        for worker in self._workers:
            worker.inbox.put(None)
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()

    def _start(self) -> _Worker:
        inbox = self._ctx.Queue()
        reader, writer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_worker_main, args=(self._config, inbox, writer), daemon=True
        )
        with _sigint_ignored():
            process.start()
        writer.close()  # the child holds the only writing end: EOF when it dies
        return _Worker(process, inbox, reader)

    def _wait_ready(self, count: int) -> str:
        """Block until the first workers have loaded the model; the device they run on."""
        device, waiting = "cpu", [w.outbox for w in self._workers]
        while waiting:
            for pipe in wait_for(waiting, timeout=_POLL_SECONDS):
                message = _receive(pipe)
                if message is None:
                    self.close()
                    raise ModelError("an embedding worker exited while loading the model")
                kind, _job, payload = message
                if kind == "error":
                    self.close()
                    raise ModelError(payload)
                device = payload
                waiting.remove(pipe)
                next(w for w in self._workers if w.outbox is pipe).ready = True
        return device

    def _assign(self, job: _Job) -> None:
        worker = min(self._workers, key=lambda w: len(w.jobs))
        if not worker.jobs:
            job.started = time.monotonic()
        worker.jobs.append(job)
        worker.inbox.put((job.id, job.paths))

    def _started(self, worker: _Worker) -> None:
        worker.ready = True
        if worker.jobs:
            worker.jobs[0].started = time.monotonic()

    def _finish(self, worker: _Worker, job_id: int) -> None:
        if worker.jobs and worker.jobs[0].id == job_id:
            worker.jobs.popleft()
            if worker.jobs:
                worker.jobs[0].started = time.monotonic()

    def _read(self, timeout: float) -> list[Embedded | Frames | Failed]:
        """Every message the workers have sent, waiting up to timeout for the first."""
        by_pipe = {w.outbox: w for w in self._workers}
        finished: list[Embedded | Frames | Failed] = []
        for pipe in wait_for(list(by_pipe), timeout=timeout):
            message = _receive(pipe)
            if message is None:
                continue  # the worker died; _reap replaces it
            kind, job_id, payload = message
            if kind == "error":
                raise ModelError(payload)
            if kind == "ready":
                self._started(by_pipe[pipe])
            if kind == "done":
                self._finish(by_pipe[pipe], job_id)
                finished.extend(payload)
        return finished

    def _reap(self) -> list[Failed]:
        """Replace workers that died or overran their current job's deadline."""
        now, failed = time.monotonic(), []
        for index, worker in enumerate(self._workers):
            current = worker.jobs[0] if worker.jobs else None
            dead = not worker.process.is_alive()
            budget = self._timeout * len(current.paths) if current else 0.0
            late = current is not None and worker.ready and now - current.started > budget
            if not (dead or late):
                continue
            worker.process.kill()
            worker.process.join()
            worker.outbox.close()
            self._workers[index] = self._start()  # its "ready" is read and ignored later
            if current is None:
                continue
            if len(current.paths) == 1:
                failed.append(Failed(current.paths[0], _LATE if late else _CRASHED))
            else:  # find the guilty image by retrying one at a time
                for path in current.paths:
                    self.submit([path])
            for job in list(worker.jobs)[1:]:
                self._assign(job)
        return failed


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ctrl-C in a terminal signals the whole process group. Started with SIGINT ignored,
    a worker keeps ignoring it through exec (Python installs its handler only over the
    default), so only the indexer hears it, stops them itself, and prints one line."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change signal handlers
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker_main(config: WorkerConfig, inbox: mp.Queue, outbox: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # where exec does not carry it (Windows)
    try:
        encoder = ImageEncoder(config.model, device=config.device, threads=config.threads)
    except PhotonError as e:
        outbox.send(("error", 0, str(e)))
        return
    outbox.send(("ready", 0, encoder.device))
    parent = mp.parent_process()
    while True:
        try:
            job = inbox.get(timeout=1.0)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return  # the indexer was killed; don't linger as an orphan
            continue
        if job is None:
            return
        job_id, paths = job
        done = embed_paths(
            encoder, paths, config.max_pixels, config.thumbnails_of, config.video_timeout
        )
        outbox.send(("done", job_id, done))


def _receive(pipe: Connection) -> tuple | None:
    """The next message, or None when the worker died (possibly mid-message)."""
    try:
        return pipe.recv()
    except (EOFError, OSError, pickle.UnpicklingError):
        return None


def embed_paths(
    encoder: ImageEncoder,
    paths: list[str],
    max_pixels: int,
    thumbnails_of: Path | None = None,
    video_timeout: float = 30.0,
) -> list[Embedded | Frames | Failed]:
    """Decode, hash and embed a batch; a bad file becomes a Failed, never an exception.
    thumbnails_of: a database folder whose thumbnail cache gets each picture's."""
    size = (encoder.preprocess.width, encoder.preprocess.height)
    decoded, results = [], []
    for path in paths:
        if is_video(path):
            results.append(_embed_video(encoder, path, max_pixels, video_timeout))
            continue
        try:
            data = read_source(path)  # a file, or an s3:// object
            image = decode_file(path, data, max_pixels=max_pixels, draft=size)
            decoded.append((path, image, perceptual_hashes(image.image)))
        except PhotonError as e:
            results.append(Failed(path, str(e)))
            continue
        if thumbnails_of is not None:
            _thumbnail(data, image, thumbnails_of)
    if decoded:
        vectors = encoder.encode([d.image for _, d, _ in decoded])
        for (path, d, perceptual), vector in zip(decoded, vectors, strict=True):
            results.append(Embedded(path, d.info, perceptual, vector))
    return results


def _embed_video(
    encoder: ImageEncoder, path: str, max_pixels: int, timeout: float
) -> Frames | Failed:
    from photon_index.video import keyframes

    size = (encoder.preprocess.width, encoder.preprocess.height)
    try:
        info, frames = keyframes(Path(path), max_pixels=max_pixels, size=size, timeout=timeout)
    except PhotonError as e:
        return Failed(path, str(e))
    vectors = encoder.encode([f.image for f in frames])
    embedded = [
        Embedded(frame_path(path, f.at), info, perceptual_hashes(f.image), vector)
        for f, vector in zip(frames, vectors, strict=True)
    ]
    return Frames(path, embedded)


def _thumbnail(data: bytes, image: Decoded, db_path: Path) -> None:
    """Cache the thumbnail of a picture decoded for the model, keyed by the hash of the
    very bytes decoded. The model's decode is kept as it is (the embeddings must not
    depend on --thumbnails), so a picture it reduced below the thumbnail's size (a
    near-square one, rarely) is left to be made on demand; so is one whose thumbnail
    cannot be written, as the cache is only a cache."""
    size = thumbnails.DEFAULT_SIZE
    full = (image.info.width, image.info.height)
    target = thumbnails.thumbnail_path(db_path, content_hash(data), size)
    if target.exists() or not thumbnails.covers(image.image, full, size):
        return
    with contextlib.suppress(OSError):
        thumbnails.save_thumbnail(image.image.copy(), target, size)

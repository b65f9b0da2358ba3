"""Filling in the hashes a row lacks because it was indexed before they existed (the
schema migration of dedupe's second hashes): each such file is read and decoded once
and hashed, and only its hash columns are written. Nothing is embedded again.

Resumable: every batch is committed, and a run after an interruption takes up the rows
still lacking them. A file that changed since it was indexed is left to the indexer
(its row is replaced with fresh hashes); one that cannot be read or decoded keeps its
nulls, so dedupe pairs it by pHash alone, and the next run tries again.

A library of 200,000 pictures takes tens of minutes on one core (about 10 ms a JPEG),
so the files are hashed by a pool of processes, and a progress bar says what the run
is doing after the indexing itself is done."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from functools import partial

import pyarrow as pa
from tqdm import tqdm

from photon_index.decode import decode_file
from photon_index.errors import PhotonError
from photon_index.files import split_frame
from photon_index.hashing import perceptual_hashes
from photon_index.sources import read_source, stamp
from photon_index.store.schema import PHASH_BYTES, SECOND_HASHES
from photon_index.store.table import ImageTable

_BATCH = 256  # files hashed per commit
_PER_TASK = 16  # files a worker takes at once
LACKING = " OR ".join(f"{name} IS NULL" for name in SECOND_HASHES)


def fill_hashes(
    table: ImageTable,
    *,
    max_pixels: int,
    draft: tuple[int, int],
    workers: int = 1,
    progress: bool = False,
) -> int:
    """Hash the files of the rows lacking any of the SECOND_HASHES, with `workers`
    processes (1: in this one); returns how many rows got them."""
    table.add_missing_columns()
    lacking = table.columns(["path", "file_size", "mtime_ns"], LACKING).to_pylist()
    # A video's frames are hashed when the video is indexed; dedupe leaves them out.
    lacking = [r for r in lacking if split_frame(r["path"])[1] is None]
    if not lacking:
        return 0
    filled = 0
    hash_one = partial(_hashes, max_pixels=max_pixels, draft=draft)
    with (
        tqdm(
            total=len(lacking),
            unit="img",
            desc="hashing for dedupe",
            disable=not progress,
            dynamic_ncols=True,
        ) as bar,
        _hashed(hash_one, lacking, workers) as results,
    ):
        batch: list[dict] = []
        for i, result in enumerate(results, 1):
            bar.update()
            if result is not None:
                batch.append(result)
            if batch and (len(batch) == _BATCH or i == len(lacking)):
                table.update_columns(_as_table(batch))
                filled += len(batch)
                batch = []
    return filled


@contextmanager
def _hashed(
    hash_one: Callable[[dict], dict | None], rows: list[dict], workers: int
) -> Iterator[Iterator[dict | None]]:
    """The hashes of each row, in order: computed here (workers <= 1, or too few rows to
    be worth starting processes) or by pools of processes that ignore Ctrl-C (the run
    hears it), all ended whatever happens."""
    if workers <= 1 or len(rows) <= _BATCH:
        yield map(hash_one, rows)
        return
    pools: list[ProcessPoolExecutor] = []
    try:
        yield _pooled(hash_one, rows, min(workers, os.cpu_count() or 1), pools)
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


def _pooled(
    hash_one: Callable[[dict], dict | None],
    rows: list[dict],
    workers: int,
    pools: list[ProcessPoolExecutor],
) -> Iterator[dict | None]:
    """The hashes of rows, in order. A worker that dies (killed for memory, a decoder
    crashing) breaks its pool, and a pool waiting on a lost task would wait for ever:
    the task at the head is then done again row by row in a pool of one process, the
    row that takes that process down too is left without hashes (as an unreadable
    file is), and a new pool takes the rest."""
    done = 0
    while done < len(rows):
        pools.append(pool := _pool(workers))
        try:
            for result in pool.map(hash_one, rows[done:], chunksize=_PER_TASK):
                yield result
                done += 1
        except BrokenProcessPool:
            for result in _one_by_one(hash_one, rows[done : done + _PER_TASK], pools):
                yield result
                done += 1


def _one_by_one(
    hash_one: Callable[[dict], dict | None], rows: list[dict], pools: list[ProcessPoolExecutor]
) -> Iterator[dict | None]:
    pool = None
    for row in rows:
        if pool is None:
            pools.append(pool := _pool(1))
        try:
            yield pool.submit(hash_one, row).result()
        except BrokenProcessPool:
            pool = None
            yield None


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_ignore_sigint
    )


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _hashes(row: dict, *, max_pixels: int, draft: tuple[int, int]) -> dict | None:
    path = row["path"]
    try:
        if stamp(path) != (row["file_size"], row["mtime_ns"]):
            return None
        image = decode_file(path, read_source(path), max_pixels=max_pixels, draft=draft)
    except (OSError, PhotonError):
        return None
    hashes = perceptual_hashes(image.image)
    return {"path": path, **{name: getattr(hashes, name) for name in SECOND_HASHES}}


def _as_table(rows: list[dict]) -> pa.Table:
    hash_type = pa.list_(pa.uint8(), PHASH_BYTES)
    return pa.table(
        {
            "path": pa.array([r["path"] for r in rows], pa.string()),
            **{name: pa.array([list(r[name]) for r in rows], hash_type) for name in SECOND_HASHES},
        }
    )

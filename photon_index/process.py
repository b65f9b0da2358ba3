"""One picture through the whole pipeline, for `photon process` and for people who
want photon's numbers for a single file without an index."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from photon_index.decode import decode_file, read_bytes
from photon_index.embed import ImageEncoder
from photon_index.errors import ImageError, UsageError
from photon_index.hashing import content_hash, phash, phash_hex
from photon_index.models import ModelFiles


@dataclass(frozen=True)
class ProcessedImage:
    path: str
    format: str
    width: int
    height: int
    taken_at: datetime | None
    camera: str | None
    latitude: float | None
    longitude: float | None
    content_hash: str
    phash: str
    model: str
    device: str
    embedding: list[float]
    timings_ms: dict[str, float]


def process_image(
    path: Path, model: ModelFiles, *, device: str, threads: int, max_pixels: int
) -> ProcessedImage:
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    encoder = ImageEncoder(model, device=device, threads=threads)
    clock = _Stopwatch()
    size = (encoder.preprocess.width, encoder.preprocess.height)
    try:
        data = read_bytes(path)
        decoded = decode_file(path, data, max_pixels=max_pixels, draft=size)
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from e
    clock.lap("decode")
    digest, perceptual = content_hash(data), phash(decoded.image)
    clock.lap("hash")
    (embedding,) = encoder.encode([decoded.image])
    clock.lap("embed")
    info = decoded.info
    return ProcessedImage(
        path=os.path.abspath(path),
        format=info.format,
        width=info.width,
        height=info.height,
        taken_at=info.taken_at,
        camera=info.camera,
        latitude=info.latitude,
        longitude=info.longitude,
        content_hash=digest,
        phash=phash_hex(perceptual),
        model=model.name,
        device=encoder.device,
        embedding=[float(x) for x in embedding],
        timings_ms=clock.laps,
    )


class _Stopwatch:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round((now - self._last) * 1000, 3)
        self._last = now

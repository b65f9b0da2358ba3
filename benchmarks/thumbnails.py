"""Thumbnails of a 24 Mpx JPEG: the first request (read, hash, JPEG draft decode, resize,
WebP encode, atomic write) against a cached one (id look-up and a stat of the source),
both through Index.thumbnail as the web server calls it. For scale, the same picture
decoded whole, as it would be without draft decoding.

    python benchmarks/thumbnails.py [--repeats 7]

Writes benchmarks/results/thumbnails.md. benchmarks/serve.py may import measure().
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from photon_index import Index, image_id
from photon_index.config import Settings
from photon_index.decode import decode

RESULTS = Path(__file__).resolve().parent / "results" / "thumbnails.md"
SIZE = (6000, 4000)  # 24 Mpx, as a current APS-C camera
THUMBNAIL = 256
MODEL = "siglip-tiny-shapes"  # the model does not matter here; the bundled one is offline


@dataclass(frozen=True)
class ThumbnailTimings:
    file_mb: float
    first_ms: float  # Index.thumbnail with nothing cached, median
    cached_ms: float  # Index.thumbnail once cached, median
    full_decode_ms: float  # Image.open + load of the whole picture, no draft, median
    thumbnail_bytes: int

    @property
    def ratio(self) -> float:
        return self.first_ms / self.cached_ms


def write_photo(path: Path) -> Path:
    """A 24 Mpx JPEG with a photo's mix of smooth areas and fine noise (quality 90)."""
    rng = np.random.default_rng(24)
    coarse = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize(SIZE, Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.normal(0, 6, (SIZE[1], SIZE[0], 3)).astype(np.int16)
    Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def median_ms(run: Callable[[], object], repeats: int, before: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(workdir: Path, repeats: int = 7) -> ThumbnailTimings:
    """Index one 24 Mpx JPEG under workdir and time its thumbnail, first and cached."""
    photos = workdir / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    photo = write_photo(photos / "IMG_0001.jpg")
    settings = Settings.load().with_overrides("index", workers=1)
    index = Index(workdir / "db", settings=settings)
    index.update([photos], model=MODEL)
    picture = image_id(str(photo))
    index.image(picture)  # the id map, built once per table version, is not what we time
    cache = workdir / "db" / "thumbnails"

    def forget() -> None:
        shutil.rmtree(cache, ignore_errors=True)

    first = median_ms(lambda: index.thumbnail(picture, THUMBNAIL), repeats, forget)
    made = index.thumbnail(picture, THUMBNAIL)
    cached = median_ms(lambda: index.thumbnail(picture, THUMBNAIL), repeats * 30, lambda: None)
    data = photo.read_bytes()
    full = median_ms(lambda: decode(data, max_pixels=10**9), repeats, lambda: None)
    return ThumbnailTimings(
        file_mb=round(len(data) / 1e6, 1),
        first_ms=round(first, 1),
        cached_ms=round(cached, 3),
        full_decode_ms=round(full, 1),
        thumbnail_bytes=made.stat().st_size,
    )


def report(timings: ThumbnailTimings, repeats: int) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"""# Thumbnails

- Date: {datetime.now().date().isoformat()}. Command: `python benchmarks/thumbnails.py --repeats {repeats}`.
- Machine: {platform.machine()}, {os.cpu_count()} cores, shared with other jobs (load average {load} at the end). Python {platform.python_version()}, Pillow {Image.__version__}.
- Picture: a {SIZE[0]}x{SIZE[1]} JPEG (24 Mpx, quality 90, {timings.file_mb} MB), indexed with {MODEL}. Both columns call `Index.thumbnail(id, {THUMBNAIL})` on a long-lived Index: medians of {repeats} first requests (cache emptied before each) and of {repeats * 30} cached ones.

| request | ms |
|---|--:|
| first: read, BLAKE2b, JPEG draft decode, resize, WebP, atomic write | {timings.first_ms} |
| cached: id look-up, stat of the source, stat of the thumbnail | {timings.cached_ms} |
| for scale: decoding the whole picture without draft | {timings.full_decode_ms} |

A cached thumbnail is served **{timings.ratio:,.0f}x** faster than a first one; the WebP is {timings.thumbnail_bytes:,} bytes.
"""  # noqa: E501


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="photon-thumbnails-") as workdir:
        timings = measure(Path(workdir), args.repeats)
    text = report(timings, args.repeats)
    RESULTS.write_text(text, "utf-8")
    print(text)


if __name__ == "__main__":
    main()

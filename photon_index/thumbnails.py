"""Thumbnails: a picture shrunk to fit a square, upright, as WebP, cached in the
database folder by content hash and size. Made on demand (Index.thumbnail) or while
indexing (`photon index --thumbnails`), from the picture the indexer decodes anyway.

The cache is keyed by content, not path, so copies share a thumbnail and an entry can
never show other bytes than those it was made from; files are written whole and renamed
into place, so a reader never gets half of one."""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image

from photon_index.decode import decode_file
from photon_index.errors import UsageError
from photon_index.store.atomic import write_atomic

FOLDER = "thumbnails"
DEFAULT_SIZE = 256  # what `photon index --thumbnails` makes
MIN_SIZE = 32
MAX_SIZE = 2048
# WebP quality: 80 looks like the original at thumbnail sizes; a 256-px thumbnail of a
# grainy 24 Mpx photo takes 14 KB (benchmarks/thumbnails.py).
_QUALITY = 80


def thumbnail_path(db_path: Path, content_hash: str, size: int) -> Path:
    """Where the thumbnail of these bytes at this size is cached; the first two hex
    digits make a level of folders, so none holds more than 1/256 of the library."""
    return db_path / FOLDER / content_hash[:2] / f"{content_hash}-{size}.webp"


def check_size(size: int) -> None:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UsageError(f"the thumbnail size must be {MIN_SIZE} to {MAX_SIZE} pixels, not {size}")


def make_thumbnail(
    data: bytes, target: Path, size: int, *, max_pixels: int, name: str = ""
) -> None:
    """Write the thumbnail of an image file's bytes to target; ImageError if they cannot
    be decoded. name: the file's, which says how to decode it (decode_file). A JPEG is
    decoded at the smallest scale that keeps its longer side at least twice the size, as
    Image.thumbnail's draft does (sharp, and 1/8 of a 24 Mpx photo decodes in half the
    time of all of it); EXIF orientation is applied to that small picture, before the
    last resize."""
    decoded = decode_file(name, data, max_pixels=max_pixels, draft=_draft(data, size))
    save_thumbnail(decoded.image, target, size)


def make_frame_thumbnail(
    video: Path, at: float, target: Path, size: int, *, max_pixels: int
) -> None:
    """Write the thumbnail of a video's frame at `at` seconds to target (files.frame_path)."""
    from photon_index.video import frame_at

    save_thumbnail(frame_at(video, at, max_pixels=max_pixels, side=2 * size), target, size)


def _draft(data: bytes, size: int) -> tuple[int, int]:
    """The square decode() drafts to: JPEG draft keeps both sides at least this, so the
    shorter side's share of twice the size keeps the longer side at twice the size."""
    try:
        with Image.open(io.BytesIO(data)) as header:  # reads the header only
            width, height = header.size
    except Exception:  # Pillow raises many types; decode() says what is wrong
        return 2 * size, 2 * size
    side = math.ceil(2 * size * min(width, height) / max(width, height, 1))
    return side, side


def save_thumbnail(image: Image.Image, target: Path, size: int) -> None:
    """Shrink an upright RGB picture in place to fit size x size (never enlarged) and
    write it to target as WebP, atomically."""
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    write_atomic(target, lambda f: image.save(f, "WEBP", quality=_QUALITY))


def covers(image: Image.Image, full_size: tuple[int, int], size: int) -> bool:
    """Whether a picture decoded at a reduced scale is large enough for a thumbnail of
    size: as large as size on its longer side, or not reduced at all."""
    return max(image.size) >= min(size, max(full_size))

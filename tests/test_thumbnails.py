"""Thumbnails: made on demand or while indexing, upright, cached by content and size,
never of other bytes than the id's, written atomically."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_photon
from PIL import Image
from PIL.ExifTags import Base

from photon_index import Index, NotFoundError, image_id
from photon_index import thumbnails as thumbnails_module
from photon_index.errors import FileChangedError, ImageError, UsageError
from photon_index.hashing import content_hash
from photon_index.store.atomic import write_atomic
from photon_index.synthetic import write_pictures
from photon_index.thumbnails import make_thumbnail, thumbnail_path

pytestmark = pytest.mark.slow

RED, BLUE = (220, 30, 30), (30, 30, 220)


def write_turned(path: Path, size: tuple[int, int] = (1200, 800)) -> Path:
    """A JPEG stored wide, red left and blue right, whose EXIF orientation 6 says to turn
    it clockwise: upright it is tall, red on top and blue below."""
    width, height = size
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    exif = Image.Exif()
    exif[Base.Orientation] = 6
    image.save(path, quality=92, exif=exif)
    return path


@dataclass(frozen=True)
class Library:
    photos: Path
    db: Path
    pictures: list[Path]
    turned: Path


def make_library(root: Path, *, thumbnails: bool = False) -> Library:
    photos = root / "photos"
    pictures = [p for p, _ in write_pictures(photos, 3, seed=4)]
    turned = write_turned(photos / "turned.jpg")
    db = root / "db"
    Index(db).update([photos], model=TINY, thumbnails=thumbnails)
    return Library(photos, db, pictures, turned)


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return make_library(tmp_path)


def id_of(path: Path) -> str:
    return image_id(str(path))


def colour(image: Image.Image, x: int, y: int) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=int)[y, x]


def test_an_exif_turned_picture_comes_out_upright(library) -> None:
    index = Index(library.db)
    path = index.thumbnail(id_of(library.turned), 64)
    with Image.open(path) as thumb:
        assert thumb.format == "WEBP" and thumb.size == (43, 64)
        assert np.abs(colour(thumb, 21, 4) - RED).max() < 40
        assert np.abs(colour(thumb, 21, 59) - BLUE).max() < 40


def test_sizes_and_where_they_are_cached(library) -> None:
    index = Index(library.db)
    picture = library.pictures[0]
    record = index.image(id_of(picture))
    path = index.thumbnail(record.id)
    assert path == library.db / "thumbnails" / record.content_hash[:2] / (
        f"{record.content_hash}-256.webp"
    )
    with Image.open(path) as thumb:
        assert thumb.size == (256, 192)
    with Image.open(index.thumbnail(record.id, 2048)) as thumb:
        assert thumb.size == (320, 240)  # never enlarged
    with Image.open(index.thumbnail(record.id, 32)) as thumb:
        assert thumb.size == (32, 24)
    for bad in (0, 31, 2049):
        with pytest.raises(UsageError, match="32 to 2048"):
            index.thumbnail(record.id, bad)
    with pytest.raises(NotFoundError):
        index.thumbnail("0" * 16)


def test_a_cached_thumbnail_is_not_made_again(library, monkeypatch) -> None:
    index = Index(library.db)
    picture_id = id_of(library.pictures[1])
    first = index.thumbnail(picture_id)
    stat = first.stat()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("made again")

    monkeypatch.setattr(thumbnails_module, "make_thumbnail", refuse)
    again = Index(library.db).thumbnail(picture_id)
    assert again == first and (again.stat().st_ino, again.stat().st_mtime_ns) == (
        stat.st_ino,
        stat.st_mtime_ns,
    )
    first.write_bytes(b"")  # a power cut's leftover is not a thumbnail
    monkeypatch.undo()
    assert index.thumbnail(picture_id).stat().st_size > 0


def test_copies_share_one_thumbnail(library) -> None:
    copy = Path(shutil.copy(library.pictures[0], library.photos / "copy.jpg"))
    index = Index(library.db)
    index.update([library.photos])
    assert index.thumbnail(id_of(copy)) == index.thumbnail(id_of(library.pictures[0]))


def test_a_changed_or_missing_file_is_refused(library) -> None:
    index = Index(library.db)
    cached, edited, swapped = library.pictures
    gone = library.turned
    index.thumbnail(id_of(cached))

    cached.write_bytes(library.turned.read_bytes())  # edited after its thumbnail was made
    with pytest.raises(FileChangedError, match="changed since it was indexed"):
        index.thumbnail(id_of(cached))

    edited.write_bytes(edited.read_bytes() + b"\0")  # never had one
    with pytest.raises(FileChangedError, match="changed since it was indexed"):
        index.thumbnail(id_of(edited))

    # Same size and mtime, other bytes: only the content hash can tell.
    stat = swapped.stat()
    data = bytearray(swapped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    swapped.write_bytes(bytes(data))
    os.utime(swapped, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(FileChangedError, match="changed since it was indexed"):
        index.thumbnail(id_of(swapped))

    gone.unlink()
    with pytest.raises(FileChangedError, match="no longer exists") as caught:
        index.thumbnail(id_of(gone))
    assert "\n" not in str(caught.value)
    assert not list((library.db / "thumbnails").rglob("*.tmp"))


def test_an_undecodable_file_is_an_image_error(tmp_path) -> None:
    with pytest.raises(ImageError):
        make_thumbnail(b"not a picture", tmp_path / "t.webp", 64, max_pixels=10**8)
    data = write_turned(tmp_path / "big.jpg").read_bytes()
    with pytest.raises(ImageError, match=r"index\.max_pixels"):
        make_thumbnail(data, tmp_path / "t.webp", 64, max_pixels=1_000)
    assert not (tmp_path / "t.webp").exists()


def test_writes_are_atomic(tmp_path) -> None:
    target = tmp_path / "sub" / "x.webp"
    write_atomic(target, lambda f: f.write(b"old"))

    def torn(f) -> None:
        f.write(b"half of a new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, torn)
    assert target.read_bytes() == b"old" and os.listdir(target.parent) == ["x.webp"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_many_threads_making_one_thumbnail(library) -> None:
    index = Index(library.db)
    picture_id = id_of(library.turned)
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = set(pool.map(lambda size: index.thumbnail(picture_id, size), [128] * 16))
    (path,) = made
    with Image.open(path) as thumb:
        thumb.load()
        assert thumb.size == (85, 128)
    assert os.listdir(path.parent) == [path.name]


def test_index_thumbnails_while_indexing(tmp_path, monkeypatch) -> None:
    photos = tmp_path / "photos"
    pictures = [p for p, _ in write_pictures(photos, 4, seed=6)]
    turned = write_turned(photos / "turned.jpg", size=(2400, 1600))
    # Decoded for the model at 1/8 scale, 225 px: too small, so left to be made on demand.
    square = photos / "square.jpg"
    Image.new("RGB", (1800, 1800), RED).save(square)
    db = tmp_path / "db"
    run_photon("index", photos, "--db", db, "--model", TINY, "--thumbnails")
    made = sorted((db / "thumbnails").rglob("*.webp"))
    hashes = [content_hash(p.read_bytes()) for p in [*pictures, turned]]
    expected = sorted(thumbnail_path(db, h, 256) for h in hashes)
    assert made == expected
    with Image.open(thumbnail_path(db, content_hash(turned.read_bytes()), 256)) as thumb:
        assert thumb.size == (171, 256)  # the same size as on demand
        assert np.abs(colour(thumb, 85, 10) - RED).max() < 40
    with Image.open(Index(db).thumbnail(id_of(square))) as thumb:
        assert thumb.size == (256, 256)
    monkeypatch.setattr(thumbnails_module, "make_thumbnail", None)  # served from the cache
    assert Index(db).thumbnail(id_of(turned)) in made

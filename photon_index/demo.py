"""`photon demo`: the whole tool on made-up pictures, offline, in a folder of its own.

It draws pictures with known captions, adds exact and near copies, indexes them with
the bundled tiny model, then searches and dedupes, saying what it finds and whether
that was right, so a newcomer sees every stage work without a download."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image

from photon_index.config import Settings
from photon_index.errors import UsageError
from photon_index.index import Index
from photon_index.synthetic import Scene, write_pictures

DEMO_MODEL = "siglip-tiny-shapes"
PICTURES = 60
SEED = 2026  # of the drawings: the same pictures every time


def run_demo(workdir: Path, settings: Settings) -> Iterator[str]:
    """Do the demo in workdir, yielding what a person should read as it goes."""
    pictures, db = workdir / "pictures", workdir / "db"
    try:
        pictures.mkdir(parents=True, exist_ok=True)
        written = write_pictures(pictures, PICTURES, seed=SEED)
        # Not the two copied exactly below: with equal EXIF dates, only their file
        # times can tell dedupe which is the original.
        for i, (path, _) in enumerate(written[2:], 2):
            _stamp(path, i)
        copies = _make_copies([path for path, _ in written[:4]], pictures / "copies")
    except OSError as e:  # --dir names a file, a read-only or a full folder
        raise UsageError(
            f"cannot draw the demo pictures in {workdir} ({e.strerror or e}): "
            "give --dir a writable folder"
        ) from e
    yield f"drew {len(written)} pictures and {len(copies)} copies of some in {pictures}"
    planted = [{str(original), str(copy)} for original, copy in copies]

    index = Index(db, settings=settings)
    report = index.update([pictures], model=DEMO_MODEL)
    yield (
        f"indexed {report.indexed} pictures and reused {report.reused} embeddings "
        f"in {report.elapsed:.1f} s with {DEMO_MODEL} into {db}"
    )

    rng = random.Random(7)
    sampled = [scene for _, scene in rng.sample(written, 3)]
    for scene in sampled:
        yield from _text_search(index, scene, written)
    probe = written[5][0]
    top = index.search(str(probe), limit=3).hits
    yield f"search by picture {probe.name}: {', '.join(Path(h.path).name for h in top)}"

    groups = index.dedupe()
    yield f"dedupe found {len(groups)} groups of copies:"
    for group in groups:
        names = ", ".join(Path(p).name for p in group.duplicates)
        verdict = (
            "a planted copy"
            if {group.keep, *group.duplicates} in planted
            # pHash compares greyscale structure: same layout, other colours can match.
            else "not planted: drawings alike in greyscale"
        )
        yield (
            f"  {group.tier:5}  keep {Path(group.keep).name}  ({group.reason}); "
            f"copies: {names}  [{verdict}]"
        )
    yield f'try it yourself: photon search "{sampled[0].caption}" --db {db}'


def serve_demo(
    workdir: Path, settings: Settings, *, port: int, echo: Callable[[str], None]
) -> None:
    """`photon demo --serve`: the web app on the demo's library, in a browser."""
    from photon_index.serve import serve

    echo("opening the web app on the demo library: search, pictures, duplicates")
    serve(Index(workdir / "db", settings=settings), port=port, open_browser=True, echo=echo)


def _text_search(index: Index, scene: Scene, written: list[tuple[Path, Scene]]) -> Iterator[str]:
    hits = index.search(scene.caption, limit=3).hits
    truth = {str(path) for path, s in written if s == scene}
    verdict = "right" if hits and hits[0].path in truth else "not the drawn picture"
    yield f'search "{scene.caption}": top hit {Path(hits[0].path).name} ({verdict})'


# Cameras the demo's pictures say they come from, and places (latitude, longitude).
CAMERAS = (("Photon", "Pinhole One"), ("Photon", "Lens Two"))
PLACES = ((48.8584, 2.2945), (-33.8568, 151.2153), (40.6892, -74.0445))


def _stamp(path: Path, i: int) -> None:
    """Give a drawn JPEG the EXIF a camera writes: a date (one every 9 days from 2022),
    a camera, and for every third one a place, so the web app's dates, camera filter
    and GPS have something to show. The segment is added to the file's bytes, leaving
    the pixels (and so the searches and duplicates) as drawn."""
    from PIL.ExifTags import GPS, IFD, Base

    exif = Image.Exif()
    make, model = CAMERAS[i % len(CAMERAS)]
    exif[Base.Make], exif[Base.Model] = make, model
    taken = datetime(2022, 1, 1, 9, 30) + timedelta(days=9 * i, minutes=37 * i)
    exif.get_ifd(IFD.Exif)[Base.DateTimeOriginal] = taken.strftime("%Y:%m:%d %H:%M:%S")
    if i % 3 == 0:
        latitude, longitude = PLACES[i // 3 % len(PLACES)]
        exif.get_ifd(IFD.GPSInfo).update(
            {
                GPS.GPSLatitudeRef: "N" if latitude >= 0 else "S",
                GPS.GPSLatitude: _dms(abs(latitude)),
                GPS.GPSLongitudeRef: "E" if longitude >= 0 else "W",
                GPS.GPSLongitude: _dms(abs(longitude)),
            }
        )
    segment = exif.tobytes()  # b"Exif\0\0" and the TIFF structure: an APP1 segment's body
    data = path.read_bytes()
    app1 = b"\xff\xe1" + (len(segment) + 2).to_bytes(2, "big") + segment
    path.write_bytes(data[:2] + app1 + data[2:])  # right after the JPEG's start marker


def _dms(degrees: float) -> tuple[float, float, float]:
    minutes, seconds = divmod(round(degrees * 3600, 2), 60)
    return float(int(degrees)), float(int(minutes) % 60), float(seconds)


def _make_copies(originals: list[Path], folder: Path) -> list[tuple[Path, Path]]:
    """Two exact copies and two near copies (smaller, re-encoded) for dedupe to find,
    as (original, copy) pairs."""
    folder.mkdir(exist_ok=True)
    made = []
    for path in originals[:2]:
        made.append((path, Path(shutil.copy(path, folder / f"copy-of-{path.name}"))))
    for path in originals[2:4]:
        target = folder / f"small-{path.name}"
        with Image.open(path) as image:
            image.resize((image.width // 2, image.height // 2)).save(target, quality=70)
        made.append((path, target))
    return made

"""HEIC, AVIF, RAW and video: real files written by the libraries' own encoders
(formats_files.py), decoded, indexed, searched and deduped."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import TINY, real_photo, run_photon
from formats_files import avif, dng, halves, heic, mp4
from PIL import Image, features

from photon_index import Index, files
from photon_index import decode as decode_module
from photon_index.decode import decode, decode_file
from photon_index.embed.encoder import ImageEncoder
from photon_index.errors import ImageError
from photon_index.query.search import _one_per_picture
from photon_index.store.schema import image_id
from photon_index.video import MAX_FRAMES, _times, keyframes

MAX_PIXELS = 200_000_000
MODEL_SIZE = (224, 224)
TAKEN = datetime(2022, 3, 4, 5, 6, 7)


def colour(image: Image.Image, x: int, y: int) -> str:
    """The dominant channel of a pixel: 'red', 'green', 'blue' or 'white'."""
    r, g, b = image.convert("RGB").getpixel((x, y))
    if min(r, g, b) > 180:
        return "white"
    return ("red", "green", "blue")[int(np.argmax((r, g, b)))]


def top_and_bottom(image: Image.Image) -> tuple[str, str]:
    width, height = image.size
    return colour(image, width // 2, 2), colour(image, width // 2, height - 3)


# --- AVIF and HEIC -------------------------------------------------------------------


def test_avif_is_read_by_pillow_itself_upright_with_its_date():
    assert features.check("avif")  # the Pillow photon requires reads AVIF natively
    decoded = decode(avif(halves(), orientation=6), max_pixels=MAX_PIXELS)
    assert decoded.image.size == (300, 400)  # turned a quarter: left half on top
    assert top_and_bottom(decoded.image) == ("red", "blue")
    info = decoded.info
    assert (info.format, info.width, info.height) == ("AVIF", 300, 400)
    assert (info.taken_at, info.camera) == (TAKEN, "Apple iPhone 15")


def test_heic_is_upright_with_its_date_and_decodes_its_thumbnail_for_the_model():
    data = heic(halves((1600, 1200)), orientation=6, thumbnail=320)
    full = decode(data, max_pixels=MAX_PIXELS)
    small = decode(data, max_pixels=MAX_PIXELS, draft=MODEL_SIZE)
    assert full.image.size == (1200, 1600)
    assert small.image.size == (240, 320)  # the embedded thumbnail, not the picture
    for decoded in (full, small):
        assert top_and_bottom(decoded.image) == ("red", "blue")
        info = decoded.info
        assert (info.width, info.height) == (1200, 1600)  # the picture's, not the thumbnail's
        assert (info.taken_at, info.camera) == (TAKEN, "Apple iPhone 15")


def test_a_heic_thumbnail_smaller_than_the_model_needs_is_not_used():
    data = heic(halves((1600, 1200)), thumbnail=200)  # 200x150: too small for 224
    assert decode(data, max_pixels=MAX_PIXELS, draft=MODEL_SIZE).image.size == (1600, 1200)


def test_a_heic_thumbnail_embeds_like_the_full_picture(tiny_model):
    photo = real_photo("chelsea").resize((1200, 800), Image.Resampling.LANCZOS)
    data = heic(photo, thumbnail=384)
    encoder = ImageEncoder(tiny_model, device="cpu", threads=1)
    full, small = (
        decode(data, max_pixels=MAX_PIXELS, draft=draft).image for draft in (None, MODEL_SIZE)
    )
    assert small.size == (384, 256)
    a, b = encoder.encode([full, small])
    # benchmarks/formats.py measures this on more photos (RESULTS.md).
    assert float(a @ b) > 0.98


# --- RAW -----------------------------------------------------------------------------


def test_raw_without_a_preview_is_demosaiced_at_half_size_upright(tmp_path: Path):
    path = tmp_path / "IMG_1.dng"
    dng(path, halves((384, 256)), orientation=6)
    decoded = decode_file(path, path.read_bytes(), max_pixels=MAX_PIXELS, draft=MODEL_SIZE)
    assert decoded.image.size == (128, 192)  # half of 384x256, turned a quarter
    assert top_and_bottom(decoded.image) == ("red", "blue")
    info = decoded.info
    assert (info.format, info.width, info.height, info.orientation) == ("RAW", 256, 384, 6)
    assert (info.taken_at, info.camera) == (TAKEN, "Photon TestCam")


def test_raw_uses_its_preview_when_it_is_large_enough(tmp_path: Path):
    green = Image.new("RGB", (384, 256), (0, 200, 0))
    large, small = tmp_path / "large.dng", tmp_path / "small.dng"
    dng(large, green, preview=halves((450, 300)), orientation=6)
    dng(small, green, preview=halves((150, 100)), orientation=6)
    preview = decode_file(large, large.read_bytes(), max_pixels=MAX_PIXELS, draft=MODEL_SIZE)
    assert preview.image.size == (300, 450)  # the preview, turned as the RAW says
    assert top_and_bottom(preview.image) == ("red", "blue")
    assert (preview.info.width, preview.info.height) == (256, 384)
    demosaiced = decode_file(small, small.read_bytes(), max_pixels=MAX_PIXELS, draft=MODEL_SIZE)
    assert demosaiced.image.size == (128, 192)
    assert colour(demosaiced.image, 64, 96) == "green"


# --- video ---------------------------------------------------------------------------


def test_video_keyframes_every_few_seconds_with_the_recording_date(tmp_path: Path):
    path = tmp_path / "clip.mp4"
    mp4(path, seconds=12)  # red 0-4 s, green 4-8 s, blue 8-12 s
    info, frames = keyframes(path, max_pixels=MAX_PIXELS, size=MODEL_SIZE, timeout=30)
    assert [f.at for f in frames] == [0.0, 5.0, 10.0]
    assert [colour(f.image, 40, 40) for f in frames] == ["red", "green", "blue"]
    assert (info.format, info.width, info.height) == ("MP4", 64, 48)
    utc = datetime(2020, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    assert info.taken_at == utc.astimezone().replace(tzinfo=None)


def test_a_rotated_video_is_upright(tmp_path: Path):
    path = tmp_path / "phone.mov"
    mp4(path, seconds=2, rotation=90)  # turned counterclockwise to be shown
    info, frames = keyframes(path, max_pixels=MAX_PIXELS, size=MODEL_SIZE, timeout=30)
    assert (info.width, info.height) == (48, 64)
    assert frames[0].image.size == (48, 64)
    assert colour(frames[0].image, 3, 60) == "white"  # the top-left corner, now bottom-left


def test_a_slow_or_huge_video_fails_with_one_line(tmp_path: Path):
    path = tmp_path / "clip.mp4"
    mp4(path, seconds=2)
    with pytest.raises(ImageError, match=r"^took longer than index.image_timeout"):
        keyframes(path, max_pixels=MAX_PIXELS, size=MODEL_SIZE, timeout=-1)
    with pytest.raises(ImageError, match=r"above the limit of 1,000 \(index.max_pixels\)$"):
        keyframes(path, max_pixels=1000, size=MODEL_SIZE, timeout=30)


def test_a_long_video_gets_at_most_max_frames_spread_over_it():
    assert _times(3.0) == [0.0]
    assert _times(12.0) == [0.0, 5.0, 10.0]
    hour = _times(3600.0)
    assert len(hour) == MAX_FRAMES and hour[1] == 300.0 and hour[-1] < 3600


def test_frame_paths_are_made_and_taken_apart_in_one_place():
    frame = files.frame_path("/a/clip.mp4", 12.04)
    assert frame == "/a/clip.mp4#t=12.0"
    assert files.split_frame(frame) == ("/a/clip.mp4", 12.0)
    assert files.split_frame("/a/photo#t=1.0.jpg") == ("/a/photo#t=1.0.jpg", None)
    assert files.split_frame("/a/notes.txt#t=1.0") == ("/a/notes.txt#t=1.0", None)
    assert files.rebase(frame, "/b/copy.mp4") == "/b/copy.mp4#t=12.0"
    assert files.rebase("/a/x.jpg", "/b/y.jpg") == "/b/y.jpg"


# --- damaged files -------------------------------------------------------------------


def test_a_damaged_file_of_each_kind_is_one_line(tmp_path: Path):
    good_heic, good_avif = heic(halves()), avif(halves())
    raw = tmp_path / "ok.dng"
    dng(raw, halves((64, 48)))
    video = tmp_path / "ok.mp4"
    mp4(video, seconds=2)
    cases = {
        "cut.heic": good_heic[: len(good_heic) // 2],
        "cut.avif": good_avif[: len(good_avif) // 2],
        "junk.dng": b"II*\x00" + os.urandom(4000),
        "cut.mp4": video.read_bytes()[: video.stat().st_size // 2],
        "junk.mp4": os.urandom(4000),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageError) as caught:
            if files.is_video(path):
                keyframes(path, max_pixels=MAX_PIXELS, size=MODEL_SIZE, timeout=30)
            else:
                decode_file(path, data, max_pixels=MAX_PIXELS, draft=MODEL_SIZE)
        assert "\n" not in str(caught.value) and str(caught.value), name


# --- one result per picture ----------------------------------------------------------


def test_search_shows_a_video_by_its_best_frame_and_a_raw_jpeg_pair_once():
    rows = [
        {"path": "/p/clip.mp4#t=5.0"},
        {"path": "/p/IMG_1.JPG"},
        {"path": "/p/clip.mp4#t=0.0"},
        {"path": "/p/IMG_1.CR2"},
        {"path": "/p/IMG_1.jpeg"},  # a second JPEG is not the RAW's pair: shown
        {"path": "/p/IMG_2.CR2"},
    ]
    kept = [r["path"] for r in _one_per_picture(rows, exclude=None)]
    assert kept == ["/p/clip.mp4#t=5.0", "/p/IMG_1.JPG", "/p/IMG_1.jpeg", "/p/IMG_2.CR2"]
    # "more like this" of a frame leaves out the whole video; of a RAW, its JPEGs
    kept = [r["path"] for r in _one_per_picture(rows, exclude="/p/clip.mp4#t=0.0")]
    assert "/p/clip.mp4#t=5.0" not in kept
    kept = [r["path"] for r in _one_per_picture(rows, exclude="/p/IMG_1.CR2")]
    assert kept == ["/p/clip.mp4#t=5.0", "/p/IMG_2.CR2"]


def test_a_raw_beside_a_heif_is_one_picture_as_beside_a_jpeg():
    paths = ["/p/IMG_1.CR2", "/p/IMG_1.HEIC", "/p/IMG_2.ARW", "/p/IMG_2.heif", "/p/IMG_3.heic"]
    assert files.pair_key("/p/IMG_1.HEIC") == files.pair_key("/p/IMG_1.CR2") == "/p/IMG_1"
    assert files.paired(pa.array(paths)).tolist() == [True, True, True, True, False]
    kept = [r["path"] for r in _one_per_picture([{"path": p} for p in paths], exclude=None)]
    assert kept == ["/p/IMG_1.CR2", "/p/IMG_2.ARW", "/p/IMG_3.heic"]


# --- the missing extras --------------------------------------------------------------


def test_files_whose_extra_is_missing_are_counted_in_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # The extras are installed here: make them look missing.
    monkeypatch.setattr(files, "installed", lambda module: False)
    library = tmp_path / "phone"
    library.mkdir()
    (library / "a.heic").write_bytes(heic(halves()))
    (library / "b.HEIC").write_bytes(heic(halves()))
    dng(library / "c.dng", halves((64, 48)))
    mp4(library / "d.mp4", seconds=1)
    report = Index(tmp_path / "db").update([library], model=TINY)
    assert (report.discovered, report.indexed, report.failed) == (4, 0, 0)
    assert sorted(report.warnings) == [
        "1 RAW file skipped: pip install 'photon-index[raw]'",
        "1 video file skipped: pip install 'photon-index[video]'",
        "2 HEIC files skipped: pip install 'photon-index[heif]'",
    ]


def test_decoding_a_heic_without_pillow_heif_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
):
    data = heic(halves())  # registers pillow-heif's opener: take it away again
    monkeypatch.setattr(decode_module, "_register_heif", lambda: False)
    monkeypatch.setattr(Image, "ID", [name for name in Image.ID if name != "HEIF"])
    with pytest.raises(
        ImageError, match=r"^HEIC support needs: pip install 'photon-index\[heif\]'$"
    ):
        decode(data, max_pixels=MAX_PIXELS)


# --- a mixed library, end to end -----------------------------------------------------


def index_json(*args: str | Path) -> dict:
    return json.loads(run_photon("index", *args, "--model", TINY, "--json").stdout)


def frames_of(db: Path, video: str) -> list[str]:
    table = Index(db).table()
    return sorted(p for p in table.paths() if files.split_frame(p)[0] == video)


@pytest.mark.slow
def test_a_library_of_every_format_indexes_searches_and_dedupes(tmp_path: Path):
    lib, db = tmp_path / "lib", tmp_path / "db"
    lib.mkdir()
    photo = real_photo("astronaut")
    photo.save(lib / "photo.jpg", quality=90)
    (lib / "phone.heic").write_bytes(heic(real_photo("coffee"), thumbnail=320))
    (lib / "web.avif").write_bytes(avif(real_photo("rocket")))
    chelsea = real_photo("chelsea")  # the camera's RAW and the JPEG it wrote beside it
    dng(lib / "IMG_1.dng", chelsea)
    chelsea.save(lib / "IMG_1.jpg", quality=90)
    mp4(lib / "clip.mp4", seconds=12)
    (lib / "copy.mp4").write_bytes((lib / "clip.mp4").read_bytes())  # embedded once
    (lib / "bad.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + os.urandom(500))
    (lib / "bad.avif").write_bytes(b"\x00\x00\x00\x1cftypavif" + os.urandom(500))
    (lib / "bad.dng").write_bytes(b"II*\x00" + os.urandom(500))
    (lib / "bad.mp4").write_bytes(os.urandom(500))

    report = index_json(lib, "--db", db)
    assert (report["discovered"], report["indexed"], report["reused"]) == (11, 6, 1)
    assert sorted(Path(f["path"]).name for f in report["failures"]) == [
        "bad.avif",
        "bad.dng",
        "bad.heic",
        "bad.mp4",
    ]
    clip, copy = str(lib / "clip.mp4"), str(lib / "copy.mp4")
    assert frames_of(db, clip) == [f"{clip}#t=0.0", f"{clip}#t=10.0", f"{clip}#t=5.0"]
    assert frames_of(db, copy) == [f"{copy}#t=0.0", f"{copy}#t=10.0", f"{copy}#t=5.0"]
    assert Index(db).table().count() == 5 + 3 + 3

    found = json.loads(run_photon("search", "red", "--db", db, "-k", "20", "--json").stdout)
    paths = [h["path"] for h in found["hits"]]
    assert len(paths) == len(set(paths)) == 6  # the pair once, each video once
    video = next(h for h in found["hits"] if h["path"] == clip)
    assert video["at"] in (0.0, 5.0, 10.0)
    assert sum(Path(p).stem == "IMG_1" for p in paths) == 1
    index = Index(db)
    assert index.thumbnail(image_id(str(lib / "IMG_1.dng")), 64).exists()
    first, last = (index.thumbnail(image_id(f"{clip}#t={t}"), 64) for t in ("0.0", "10.0"))
    assert first != last and colour(Image.open(last), 40, 40) == "blue"

    groups = json.loads(
        run_photon("dedupe", "--db", db, "--similar", "--cosine", "0", "--json").stdout
    )
    proposed = [d for g in groups["groups"] for d in g["duplicates"]]
    assert proposed, "everything is similar at cosine 0: some copies are proposed"
    assert not {str(lib / "IMG_1.dng"), str(lib / "IMG_1.jpg")} & set(proposed)
    assert not any(files.is_video(files.file_of(p)) for p in proposed)  # videos left out

    mp4(lib / "clip.mp4", seconds=7, colours=[(0, 255, 0)])  # re-encoded: two frames now
    again = index_json(lib, "--db", db)  # the rest is unchanged: skipped, not even read
    assert (again["skipped"], again["indexed"], again["removed"]) == (6, 1, 0)
    assert frames_of(db, clip) == [f"{clip}#t=0.0", f"{clip}#t=5.0"]
    assert len(frames_of(db, copy)) == 3

    (lib / "clip.mp4").unlink()
    assert index_json(lib, "--db", db)["removed"] == 1  # files, as "indexed" counts them
    assert frames_of(db, clip) == [] and len(frames_of(db, copy)) == 3


# --- the same bytes under names of different kinds -----------------------------------


def failures(report) -> dict[str, str]:
    return {Path(f.path).name: f.error for f in report.failures}


@pytest.mark.slow
def test_a_readable_file_never_fails_for_a_copy_whose_name_says_another_kind(tmp_path: Path):
    lib, db = tmp_path / "lib", tmp_path / "db"
    lib.mkdir()
    real_photo("astronaut").save(lib / "IMG_0001.jpg", quality=90)
    # Sorted first, so they reach the model first: the same bytes as readable files.
    (lib / "BACKUP.CR2").write_bytes((lib / "IMG_0001.jpg").read_bytes())
    mp4(lib / "clip.mp4", seconds=2)
    (lib / "a_clip.jpg").write_bytes((lib / "clip.mp4").read_bytes())
    for name in ("a_empty.NEF", "empty.jpg", "empty.avif", "empty.mp4"):
        (lib / name).write_bytes(b"")
    for run in range(2):  # failed files are retried: the readable ones stay indexed
        report = Index(db).update([lib], model=TINY)
        assert (report.indexed, report.skipped, report.failed) == ((2, 0, 6), (0, 2, 6))[run]
        why = failures(report)
        assert "RAW data" in why["BACKUP.CR2"] and "Pillow" in why["a_clip.jpg"]
        assert {why[n] for n in ("a_empty.NEF", "empty.jpg", "empty.avif", "empty.mp4")} == {
            "file is empty"
        }
    assert len(frames_of(db, str(lib / "clip.mp4"))) == 1
    assert Index(db).table().hashes_of([str(lib / "IMG_0001.jpg")])


def frame_embeddings(db: Path, video: Path) -> dict[float | None, np.ndarray]:
    rows = Index(db).table().columns(["path", "embedding"]).to_pylist()
    return {
        files.split_frame(r["path"])[1]: np.asarray(r["embedding"])
        for r in rows
        if files.file_of(r["path"]) == str(video)
    }


@pytest.mark.slow
def test_a_moved_or_copied_video_reuses_its_frames(tmp_path: Path):
    lib, db = tmp_path / "lib", tmp_path / "db"
    (lib / "sub").mkdir(parents=True)
    mp4(lib / "v2.mp4", seconds=12)
    real_photo("coffee").save(lib / "photo.jpg", quality=90)
    assert Index(db).update([lib], model=TINY).indexed == 2
    before = frame_embeddings(db, lib / "v2.mp4")
    assert set(before) == {0.0, 5.0, 10.0}
    (lib / "v2.mp4").rename(lib / "sub" / "renamed.MP4")
    (lib / "copy.mp4").write_bytes((lib / "sub" / "renamed.MP4").read_bytes())
    report = Index(db).update([lib], model=TINY)
    assert (report.indexed, report.reused, report.removed) == (0, 2, 1)  # files, not frames
    assert frames_of(db, str(lib / "v2.mp4")) == []
    for video in (lib / "sub" / "renamed.MP4", lib / "copy.mp4"):
        after = frame_embeddings(db, video)
        assert set(after) == set(before)
        for at, embedding in after.items():
            np.testing.assert_array_equal(embedding, before[at])
    # An unindexed video is no query: said in one line, not "not an image".
    mp4(tmp_path / "other.mp4", seconds=1, colours=[(0, 255, 0)])
    run = run_photon("search", "--image", tmp_path / "other.mp4", "--db", db, check=False)
    assert run.returncode != 0 and "video queries are not supported" in run.stderr


def test_index_skips_the_database_inside_a_root(tmp_path: Path):
    lib = tmp_path / "lib"
    lib.mkdir()
    real_photo("coffee").save(lib / "photo.jpg", quality=90)
    db = lib / "photon-db"
    for _ in range(2):  # the first run made thumbnails the second would find
        Index(db).update([lib], model=TINY, thumbnails=True)
    assert any(p.suffix for p in db.rglob("*") if p.is_file() and "thumb" in str(p))
    assert [Path(p).name for p in Index(db).table().paths()] == ["photo.jpg"]

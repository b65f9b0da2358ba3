import importlib.util
import io
import os
import pickle
import struct
import warnings
import zlib
from datetime import datetime

import numpy as np
import pytest
from corpus import (
    BLUE,
    EXIF_CAMERA,
    EXIF_LATITUDE,
    EXIF_LONGITUDE,
    EXIF_TAKEN_AT,
    EXIF_UPRIGHT_SIZE,
    RED,
    WHITE,
    make_bad_corpus,
    png_chunk,
)
from PIL import Image
from PIL.ExifTags import GPS, IFD, Base
from PIL.TiffImagePlugin import IFDRational

from photon_index.decode import Decoded, decode, open_image, read_bytes
from photon_index.errors import ImageError

MAX_PIXELS = 200_000_000  # index.max_pixels in configs/default.toml

CORPUS_FILES = [
    "zero_byte",
    "truncated_jpeg",
    "text_as_jpeg",
    "bad_crc_png",
    "bomb",
    "cmyk_jpeg",
    "png16",
    "palette_transparent",
    "animated_gif",
    "exif_rotated",
    "unreadable",
]

REASONS = {
    "zero_byte": "file is empty",
    "truncated_jpeg": "image data is truncated or corrupt",
    "text_as_jpeg": "not an image Pillow can read",
    "bad_crc_png": "image data is truncated or corrupt",
    "bomb": "is 15000×15000 = 225,000,000 pixels, above the limit of 200,000,000",  # noqa: RUF001
    "unreadable": "permission denied",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_bad_corpus(tmp_path_factory.mktemp("corpus"))


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def pixels(decoded: Decoded) -> np.ndarray:
    return np.asarray(decoded.image, dtype=np.int16)


def big_png_header(side: int) -> bytes:
    """A 1-bit PNG that claims side² pixels and then runs out of data."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    stream = zlib.compress(bytes(1 + (side + 7) // 8))[:8]
    chunks = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_file_decodes_or_fails_as_declared(corpus, name):
    path = corpus.paths[name]
    if name in corpus.decodable:
        decoded = open_image(path, max_pixels=MAX_PIXELS)
        assert decoded.image.mode == "RGB"
        assert decoded.image.size == (decoded.info.width, decoded.info.height)
    else:
        assert name in corpus.decode_failures
        with pytest.raises(ImageError) as caught:
            open_image(path, max_pixels=MAX_PIXELS)
        assert REASONS[name] in str(caught.value)
        assert "\n" not in str(caught.value)


def test_exif_orientation_and_metadata(corpus):
    decoded = open_image(corpus.paths["exif_rotated"], max_pixels=MAX_PIXELS)
    assert decoded.image.size == EXIF_UPRIGHT_SIZE
    top, bottom = pixels(decoded)[5, 20], pixels(decoded)[-5, 20]
    assert np.abs(top - RED).max() < 40 and np.abs(bottom - BLUE).max() < 40
    info = decoded.info
    assert (info.format, info.width, info.height, info.orientation) == ("JPEG", 40, 60, 6)
    assert info.taken_at == EXIF_TAKEN_AT
    assert info.camera == EXIF_CAMERA
    assert info.latitude == pytest.approx(EXIF_LATITUDE)
    assert info.longitude == pytest.approx(EXIF_LONGITUDE)


def test_picture_without_exif_has_no_metadata(corpus):
    info = open_image(corpus.paths["cmyk_jpeg"], max_pixels=MAX_PIXELS).info
    assert (info.taken_at, info.camera, info.latitude, info.longitude, info.orientation) == (
        (None,) * 5
    )


def test_cmyk_becomes_rgb(corpus):
    decoded = open_image(corpus.paths["cmyk_jpeg"], max_pixels=MAX_PIXELS)
    assert np.abs(pixels(decoded).mean(axis=(0, 1)) - RED).max() < 20


def test_16_bit_png_is_scaled_not_clipped(corpus):
    gray = pixels(open_image(corpus.paths["png16"], max_pixels=MAX_PIXELS))[0, :, 0]
    assert gray[0] == 0 and gray[-1] == 255
    assert np.all(np.diff(gray) >= 0)
    assert 120 <= gray[32] <= 136  # halfway along the ramp, not clipped to white


def test_transparency_becomes_white(corpus):
    rgb = pixels(open_image(corpus.paths["palette_transparent"], max_pixels=MAX_PIXELS))
    assert (rgb[:, :32] == WHITE).all()
    assert (rgb[:, 32:] == RED).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(mode):
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # transparent black
    image.paste((0, 0, 0, 255), (0, 0, 4, 8))
    rgb = pixels(decode(encode(image.convert(mode), "PNG"), max_pixels=100))
    assert (rgb[:, :4] == 0).all()
    assert (rgb[:, 4:] == 255).all()


def test_animated_gif_gives_its_first_frame(corpus):
    rgb = pixels(open_image(corpus.paths["animated_gif"], max_pixels=MAX_PIXELS))
    assert (rgb == RED).all()


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("1", "PNG"),
        ("L", "PNG"),
        ("P", "GIF"),
        ("RGB", "WEBP"),
        ("RGB", "BMP"),
        ("I", "TIFF"),
        ("I;16", "TIFF"),
        ("F", "TIFF"),
        ("CMYK", "TIFF"),
        ("LAB", "TIFF"),
        ("YCbCr", "JPEG"),
    ],
)
def test_any_mode_becomes_rgb(mode, fmt):
    source = Image.linear_gradient("L").resize((40, 30)).convert(mode)
    decoded = decode(encode(source, fmt), max_pixels=10_000)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (40, 30)
    assert decoded.info.format == fmt


def test_pixel_limit_is_checked_from_the_header_before_loading():
    # Loading this would fail as truncated; the limit must speak first.
    expected = "image is 14000×14000 = 196,000,000 pixels, above the limit of 1,000"  # noqa: RUF001
    with pytest.raises(ImageError, match=expected + r" \(index\.max_pixels\)"):
        decode(big_png_header(14_000), max_pixels=1_000)


def test_pillow_own_bomb_guard_neither_warns_nor_decides():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would raise
        with pytest.raises(ImageError, match="above the limit"):
            decode(big_png_header(10_000), max_pixels=50_000_000)
        # 196 Mpx is past Pillow's default hard limit (2 x 89 Mpx) but within ours, so
        # Pillow must get as far as loading it and find it truncated.
        with pytest.raises(ImageError, match="truncated") as caught:
            decode(big_png_header(14_000), max_pixels=MAX_PIXELS)
    assert not isinstance(caught.value.__cause__, Image.DecompressionBombError)


def photo_jpeg(size: tuple[int, int], **params) -> bytes:
    small = np.random.default_rng(3).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return encode(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC), "JPEG", **params)


def test_draft_decodes_a_jpeg_smaller_but_reports_the_full_size():
    data = photo_jpeg((1600, 1200))
    full = decode(data, max_pixels=MAX_PIXELS)
    drafted = decode(data, max_pixels=MAX_PIXELS, draft=(224, 224))
    assert full.image.size == (1600, 1200)
    assert drafted.image.size == (400, 300)  # scale 1/4: 1/8 would fall below 224
    assert (drafted.info.width, drafted.info.height) == (1600, 1200)
    assert drafted.info == full.info


def test_draft_covers_the_size_after_rotation():
    exif = Image.Exif()
    exif[Base.Orientation] = 6
    data = photo_jpeg((1800, 900), exif=exif)
    drafted = decode(data, max_pixels=MAX_PIXELS, draft=(224, 224))
    assert (drafted.info.width, drafted.info.height) == (900, 1800)
    assert min(drafted.image.size) >= 224
    assert drafted.image.width < drafted.image.height


def test_draft_is_ignored_for_other_formats():
    data = encode(Image.new("RGB", (1600, 1200)), "PNG")
    assert decode(data, max_pixels=MAX_PIXELS, draft=(224, 224)).image.size == (1600, 1200)


def test_result_is_loaded_and_independent_of_the_bytes():
    decoded = decode(photo_jpeg((64, 48)), max_pixels=MAX_PIXELS)
    copy = pickle.loads(pickle.dumps(decoded))  # what crossing to a worker process does
    assert copy.info == decoded.info
    assert copy.image.tobytes() == decoded.image.tobytes()


def with_exif(base: dict, gps: dict | None = None, exif_ifd: dict | None = None) -> bytes:
    exif = Image.Exif()
    exif.update(base)
    exif.get_ifd(IFD.GPSInfo).update(gps or {})
    exif.get_ifd(IFD.Exif).update(exif_ifd or {})
    return encode(Image.new("RGB", (8, 8)), "JPEG", exif=exif)


@pytest.mark.parametrize(
    ("make", "model", "camera"),
    [
        ("NIKON", "D750", "NIKON D750"),
        ("Apple", "iPhone 12", "Apple iPhone 12"),
        ("Canon", "Canon  EOS\x00R5", "Canon EOS R5"),
        ("  ", "  ", None),
        ("FUJIFILM", "", "FUJIFILM"),
    ],
)
def test_camera_is_tidied(make, model, camera):
    data = with_exif({Base.Make: make, Base.Model: model})
    assert decode(data, max_pixels=100).info.camera == camera


def test_unusable_exif_values_read_as_missing():
    zero = IFDRational(0, 0)  # reads as NaN
    data = with_exif(
        {Base.Orientation: 1},
        gps={GPS.GPSLatitudeRef: "N", GPS.GPSLatitude: (zero, zero, zero)},
        exif_ifd={Base.DateTimeOriginal: "0000:00:00 00:00:00"},
    )
    info = decode(data, max_pixels=100).info
    assert (info.latitude, info.longitude, info.taken_at, info.orientation) == (
        None,
        None,
        None,
        1,
    )


@pytest.mark.parametrize(
    "taken", ["0001:01:01 00:00:00", "1825:12:31 23:59:59", "2201:01:01 00:00:01"]
)
def test_camera_dates_no_camera_could_take_read_as_missing(taken: str):
    data = with_exif({}, exif_ifd={Base.DateTimeOriginal: taken})
    assert decode(data, max_pixels=100).info.taken_at is None


def test_northern_eastern_coordinates_are_positive():
    data = with_exif(
        {},
        gps={
            GPS.GPSLatitudeRef: "N",
            GPS.GPSLatitude: (48.0, 51.0, 29.6),
            GPS.GPSLongitudeRef: "E",
            GPS.GPSLongitude: (2.0, 17.0, 40.2),
        },
        exif_ifd={Base.DateTimeOriginal: "2019:05:01 08:09:10\x00"},
    )
    info = decode(data, max_pixels=100).info
    assert info.latitude == pytest.approx(48.858222) and info.longitude == pytest.approx(2.2945)
    assert info.taken_at == datetime(2019, 5, 1, 8, 9, 10)


def test_garbage_exif_costs_the_metadata_not_the_picture():
    truncated_tiff_header = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff"
    data = encode(Image.new("RGB", (8, 8)), "JPEG", exif=truncated_tiff_header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about the corrupt block
        decoded = decode(data, max_pixels=100)
    assert decoded.image.size == (8, 8)
    assert decoded.info.orientation is None


def test_heic_without_pillow_heif_says_what_to_install():
    if importlib.util.find_spec("pillow_heif"):
        pytest.skip("pillow-heif is installed, so HEIC decodes")
    data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    with pytest.raises(ImageError, match=r"pip install 'photon-index\[heif\]'"):
        decode(data, max_pixels=MAX_PIXELS)


def test_read_errors_are_image_errors(tmp_path):
    with pytest.raises(ImageError, match="disappeared"):
        read_bytes(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="cannot read file"):
        read_bytes(tmp_path)


def test_unreadable_file_is_permission_denied(tmp_path):
    path = tmp_path / "p.jpg"
    path.write_bytes(b"x")
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("chmod 000 does not stop reading here (running as root?)")
    with pytest.raises(ImageError, match="permission denied"):
        read_bytes(path)


def damaged_variants():
    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    sources = [encode(image, fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")]
    for data in sources:
        for cut in rng.integers(1, len(data), 8):
            yield data[:cut]
        for _ in range(12):
            flipped = bytearray(data)
            for at in rng.integers(0, len(data), 4):
                flipped[at] = rng.integers(0, 256)
            yield bytes(flipped)


def test_damaged_files_raise_only_image_error():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data in damaged_variants():
            try:
                decoded = decode(data, max_pixels=10_000_000)
            except ImageError as e:
                assert str(e) and "\n" not in str(e)
            else:
                assert decoded.image.mode == "RGB"

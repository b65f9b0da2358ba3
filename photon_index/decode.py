"""Turn a file's bytes into an upright RGB picture, plus what its EXIF says about it."""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile
from PIL.ExifTags import GPS, IFD, Base

from photon_index.errors import ImageError
from photon_index.files import is_raw, is_video

# index.max_pixels decides what is too big, checked in decode() before any pixel is
# read; Pillow's own guard would otherwise reject or warn about photos below that limit.
Image.MAX_IMAGE_PIXELS = None

_WHITE = (255, 255, 255)
# EXIF orientation -> the transposition that makes the picture upright.
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int  # of the full picture, upright
    height: int
    taken_at: datetime | None  # naive local time, as cameras record it
    camera: str | None
    latitude: float | None
    longitude: float | None
    orientation: int | None  # the EXIF tag as found


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # RGB, upright, loaded
    info: ImageInfo


@dataclass(frozen=True)
class _Exif:
    base: Mapping[int, Any]
    exif: Mapping[int, Any]
    gps: Mapping[int, Any]


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise read_error(e) from None


def read_error(error: OSError) -> ImageError:
    """What a failed read of a picture file means to its owner."""
    if isinstance(error, PermissionError):
        return ImageError("permission denied: give your user read access to the file")
    if isinstance(error, FileNotFoundError):
        return ImageError("file disappeared before it could be read")
    return ImageError(f"cannot read file: {error.strerror or error}")


def open_image(path: Path, *, max_pixels: int, draft: tuple[int, int] | None = None) -> Decoded:
    return decode_file(path, read_bytes(path), max_pixels=max_pixels, draft=draft)


def decode_file(
    path: Path | str, data: bytes, *, max_pixels: int, draft: tuple[int, int] | None = None
) -> Decoded:
    """decode() for a file's bytes, by what its name says it is: a camera's RAW file is
    read by rawpy (Pillow would take a TIFF-based one for its small preview)."""
    if not data:  # before any reader: each would call it damaged data of its own kind
        raise ImageError("file is empty")
    if is_video(path):
        raise ImageError("video queries are not supported: give a picture")
    if is_raw(path):
        from photon_index.raw import decode_raw

        return decode_raw(data, max_pixels=max_pixels, draft=draft)
    return decode(data, max_pixels=max_pixels, draft=draft)


def decode(data: bytes, *, max_pixels: int, draft: tuple[int, int] | None = None) -> Decoded:
    """Decode an image file's bytes; every failure is an ImageError a user can read.

    draft: a size the picture is only needed at; JPEGs are then decoded at a reduced
    scale that still covers it (4000x3000 -> 500x375 for 224x224), much faster.
    """
    if not data:
        raise ImageError("file is empty")
    im = _open(data)
    full_size = im.size  # before draft() shrinks it
    check_pixels(full_size, max_pixels)
    _load(im, draft)
    tags = _read_exif(im)
    orientation = _orientation(tags)
    image = _to_rgb(im)
    if orientation in UPRIGHT:
        image = image.transpose(UPRIGHT[orientation])
    return Decoded(image, _info(im.format or "unknown", full_size, orientation, tags))


def pixel_size(data: bytes) -> tuple[int, int]:
    """An image file's width and height from its header, without decoding its pixels."""
    return _open(data).size


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}×{height} = {width * height:,} pixels, "  # noqa: RUF001
            f"above the limit of {max_pixels:,} (index.max_pixels)"
        )


def _open(data: bytes) -> ImageFile.ImageFile:
    _register_heif()
    try:
        return Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        raise ImageError(_unidentified_reason(data)) from None
    except Exception as e:  # Pillow's plugins raise many types on damaged headers
        raise ImageError(f"image data is truncated or corrupt: {_one_line(e)}") from e


def _load(im: ImageFile.ImageFile, draft: tuple[int, int] | None) -> None:
    if draft:
        # Square, so the picture covers draft whichever way its orientation turns it.
        side = max(draft)
        # JPEG decodes at a reduced scale; HEIC (pillow-heif) decodes its embedded
        # thumbnail if one is that large; a no-op for the rest.
        im.draft("RGB", (side, side))
    try:
        im.load()
    except Exception as e:  # Pillow's decoders raise many types on damaged data
        raise ImageError(f"image data is truncated or corrupt: {_one_line(e)}") from e


@functools.cache
def _register_heif() -> bool:
    """Teach Pillow to read HEIC when pillow-heif is installed; say whether it is."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _unidentified_reason(data: bytes) -> str:
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS and not _register_heif():
        return "HEIC support needs: pip install 'photon-index[heif]'"
    # Every format plugin has a test for its signature, given the file's first 16 bytes.
    # When one recognises the file but could not parse it, it is a damaged image.
    prefix = data[:16]
    if len(prefix) == 16 and any(accept and accept(prefix) for _, accept in Image.OPEN.values()):
        return "image data is truncated or corrupt: its header could not be parsed"
    return "not an image Pillow can read"


def tiff_info(
    data: bytes, fmt: str, size: tuple[int, int], orientation: int | None
) -> ImageInfo | None:
    """What the tags of a TIFF-based file (DNG, CR2, NEF, ARW, ...) say, read from its
    header: a picture of size (as stored) turned by orientation. None when the file is
    not TIFF inside."""
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    exif = Image.Exif()
    try:
        exif.load(data)
        tags = _Exif(dict(exif), dict(exif.get_ifd(IFD.Exif)), dict(exif.get_ifd(IFD.GPSInfo)))
    except Exception:  # as in _read_exif: damaged tags read as none
        tags = _Exif({}, {}, {})
    return _info(fmt, size, orientation, tags)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _to_rgb(im: Image.Image) -> Image.Image:
    """The picture in RGB; transparent areas become white, as a viewer shows them."""
    if im.mode == "I" or im.mode.startswith("I;16"):
        # Pillow's conversion to 8 bits clips at 255, turning most 16-bit pictures white.
        im = Image.fromarray((np.clip(np.asarray(im), 0, 65535) >> 8).astype(np.uint8))
    if not im.has_transparency_data:
        # convert() copies even to the same mode: 25 ms for a 12 Mpx photo.
        return im if im.mode == "RGB" else im.convert("RGB")
    rgba = im.convert("RGBA")
    rgb = Image.new("RGB", im.size, _WHITE)
    rgb.paste(rgba, mask=rgba.getchannel("A"))
    return rgb


def _read_exif(im: Image.Image) -> _Exif:
    # EXIF is written by countless firmwares and editors, not always correctly. A
    # block that can't be parsed must not cost the picture: it reads as no tags.
    try:
        exif = im.getexif()
        return _Exif(dict(exif), dict(exif.get_ifd(IFD.Exif)), dict(exif.get_ifd(IFD.GPSInfo)))
    except Exception:
        return _Exif({}, {}, {})


def _info(fmt: str, size: tuple[int, int], orientation: int | None, tags: _Exif) -> ImageInfo:
    width, height = size
    if orientation in (5, 6, 7, 8):  # turned a quarter: the stored width is the height
        width, height = height, width
    latitude, longitude = _position(tags.gps)
    return ImageInfo(
        format=fmt,
        width=width,
        height=height,
        taken_at=_taken_at(tags),
        camera=_camera(tags.base),
        latitude=latitude,
        longitude=longitude,
        orientation=orientation,
    )


def _orientation(tags: _Exif) -> int | None:
    value = tags.base.get(Base.Orientation)
    return value if isinstance(value, int) else None


TAKEN_YEARS = (1826, 2200)  # the first photograph; a clock set centuries ahead


def _taken_at(tags: _Exif) -> datetime | None:
    # Where the EXIF standard puts it, else in the first IFD, where DNG allows it.
    value = tags.exif.get(Base.DateTimeOriginal) or tags.base.get(Base.DateTimeOriginal)
    if not isinstance(value, str):
        return None
    try:
        taken = datetime.strptime(value.strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:  # blank or zeroed by cameras whose clock was never set
        return None
    # Before photography or centuries ahead is a wrong clock, not a date; and dates
    # outside 1678..2262 do not fit the nanosecond timestamps that filters compare.
    return taken if TAKEN_YEARS[0] <= taken.year <= TAKEN_YEARS[1] else None


def _camera(base: Mapping[int, Any]) -> str | None:
    make, model = _tidy(base.get(Base.Make)), _tidy(base.get(Base.Model))
    if make and model.lower().startswith(make.lower()):
        make = ""  # "Canon" + "Canon EOS R5"
    return " ".join(part for part in (make, model) if part) or None


def _tidy(value: Any) -> str:
    return " ".join(value.replace("\x00", " ").split()) if isinstance(value, str) else ""


def _position(gps: Mapping[int, Any]) -> tuple[float | None, float | None]:
    latitude = _coordinate(gps.get(GPS.GPSLatitude), gps.get(GPS.GPSLatitudeRef), "S", 90)
    longitude = _coordinate(gps.get(GPS.GPSLongitude), gps.get(GPS.GPSLongitudeRef), "W", 180)
    if latitude is None or longitude is None:
        return None, None
    return latitude, longitude


def _coordinate(dms: Any, ref: Any, negative: str, limit: float) -> float | None:
    """Degrees, minutes, seconds as decimal degrees, negative south or west of zero."""
    try:
        degrees, minutes, seconds = (float(part) for part in dms)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = degrees + minutes / 60 + seconds / 3600
    # A rational with a zero denominator reads as NaN.
    if not math.isfinite(value) or abs(value) > limit:
        return None
    sign = -1 if isinstance(ref, str) and ref.strip("\x00 ").upper() == negative else 1
    return sign * value

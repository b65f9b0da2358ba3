"""A folder of awkward and broken image files, for tests of the walk, the decoder and
the whole indexing run.

    corpus = make_bad_corpus(tmp_path)
    corpus.paths["truncated_jpeg"]          # where a file is
    corpus.walk_failures                    # discover() yields a WalkError for these
    corpus.decode_failures                  # open_image() raises ImageError for these
    corpus.decodable                        # open_image() returns a picture for these

Every name is in exactly one of the three sets, except "loop" (a folder symlink that
a walk must not follow forever), which is in none. What a platform or user can't make
(a non-UTF-8 name on macOS, an unreadable file for root) moves or is left out, and
`notes` says so.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.ExifTags import GPS, IFD, Base

# What the EXIF-rotated JPEG records, to compare decode()'s ImageInfo against.
EXIF_TAKEN_AT = datetime(2021, 7, 14, 15, 30, 0)
EXIF_CAMERA = "Canon EOS 5D Mark IV"  # Make "Canon\0", Model " Canon EOS 5D Mark IV \0"
EXIF_LATITUDE = -(22 + 57 / 60 + 7.2 / 3600)  # 22°57'7.2" S
EXIF_LONGITUDE = -(43 + 12 / 60 + 38.4 / 3600)  # 43°12'38.4" W
# Stored 60x40 with a red left half and a blue right half; orientation 6 turns it
# clockwise, so upright it is 40x60, red on top and blue below.
EXIF_UPRIGHT_SIZE = (40, 60)

BOMB_SIDE = 15_000  # 225 Mpx, above index.max_pixels; 1-bit zeros keep the file ~30 KB
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


@dataclass(frozen=True)
class Corpus:
    paths: dict[str, Path]
    walk_failures: frozenset[str]
    decode_failures: frozenset[str]
    decodable: frozenset[str]
    notes: tuple[str, ...]

    @property
    def failures(self) -> frozenset[str]:
        """Names an indexing run must record as failed, whichever stage catches them."""
        return self.walk_failures | self.decode_failures


def make_bad_corpus(folder: Path) -> Corpus:
    """Create the corpus in folder (which must exist) and say what each file should do."""
    paths: dict[str, Path] = {}
    walk_failures = {"broken_link"}
    decode_failures = {"zero_byte", "truncated_jpeg", "text_as_jpeg", "bad_crc_png", "bomb"}
    decodable = {"cmyk_jpeg", "png16", "palette_transparent", "animated_gif", "exif_rotated"}
    notes: list[str] = []

    def write(name: str, filename: str, data: bytes) -> Path:
        paths[name] = folder / filename
        paths[name].write_bytes(data)
        return paths[name]

    write("zero_byte", "zero_byte.jpg", b"")
    jpeg = _encode(_noise((48, 64)), "JPEG")
    write("truncated_jpeg", "truncated.jpg", jpeg[: len(jpeg) // 2])
    write("text_as_jpeg", "text.jpg", b"This is a text file, not a picture.\n" * 4)
    write("bad_crc_png", "bad_crc.png", _bad_crc_png())
    write("bomb", "bomb.png", _bomb_png(BOMB_SIDE))
    write("cmyk_jpeg", "cmyk.jpg", _encode(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG"))
    write("png16", "gray16.png", _encode(_gray16(), "PNG"))
    write("palette_transparent", "palette.png", _palette_transparent())
    write("animated_gif", "animated.gif", _animated_gif())
    write("exif_rotated", "rotated.jpg", _exif_rotated())

    paths["broken_link"] = folder / "broken_link.jpg"
    paths["broken_link"].symlink_to(folder / "no_such_file.jpg")
    paths["loop"] = folder / "loop"
    paths["loop"].symlink_to(folder, target_is_directory=True)

    unreadable = write("unreadable", "unreadable.jpg", jpeg)
    unreadable.chmod(0)
    if _readable(unreadable):
        decodable.add("unreadable")
        notes.append("unreadable.jpg can be read anyway (running as root?): it decodes")
    else:
        decode_failures.add("unreadable")

    if sys.platform == "darwin":
        notes.append("non_utf8_name left out: macOS file systems refuse such names")
    else:
        name = os.fsencode(folder) + b"/caf\xe9.jpg"  # Latin-1 "café"
        with open(name, "wb") as f:
            f.write(jpeg)
        paths["non_utf8_name"] = Path(os.fsdecode(name))
        walk_failures.add("non_utf8_name")

    return Corpus(
        paths,
        frozenset(walk_failures),
        frozenset(decode_failures),
        frozenset(decodable),
        tuple(notes),
    )


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except PermissionError:
        return False
    return True


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _noise(shape: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its length and CRC, for writing PNGs Pillow would not."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _bad_crc_png() -> bytes:
    data = bytearray(_encode(_noise((16, 16)), "PNG"))
    data[29] ^= 0xFF  # first byte of IHDR's CRC: signature 8 + length 4 + type 4 + body 13
    return bytes(data)


def _bomb_png(side: int) -> bytes:
    """A real bomb: a black 1-bit PNG, every row present, that inflates to side² pixels."""
    row = bytes(1 + (side + 7) // 8)  # filter byte "none", then 8 pixels a byte
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def _gray16() -> Image.Image:
    """A left-to-right ramp over the full 16-bit range: 8-bit clipping shows as white."""
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)
    return Image.fromarray(np.tile(ramp, (48, 1)))


def _palette_transparent() -> bytes:
    """Left half palette index 0, transparent; right half index 1, opaque red."""
    image = Image.new("P", (64, 48), 0)
    image.putpalette([0, 0, 0, *RED])  # transparent black: it must not come out black
    image.paste(1, (32, 0, 64, 48))
    return _encode(image, "PNG", transparency=0)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in (RED, GREEN, BLUE)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def _exif_rotated() -> bytes:
    image = Image.new("RGB", (60, 40), BLUE)
    image.paste(RED, (0, 0, 30, 40))
    exif = Image.Exif()
    exif[Base.Orientation] = 6
    exif[Base.Make] = "Canon\x00"
    exif[Base.Model] = " Canon EOS 5D Mark IV \x00"
    exif.get_ifd(IFD.Exif)[Base.DateTimeOriginal] = EXIF_TAKEN_AT.strftime("%Y:%m:%d %H:%M:%S")
    gps = exif.get_ifd(IFD.GPSInfo)
    gps[GPS.GPSLatitudeRef] = "S"
    gps[GPS.GPSLatitude] = (22.0, 57.0, 7.2)
    gps[GPS.GPSLongitudeRef] = "W"
    gps[GPS.GPSLongitude] = (43.0, 12.0, 38.4)
    return _encode(image, "JPEG", exif=exif, quality=95)

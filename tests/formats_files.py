"""Real HEIC, AVIF, DNG and MP4 files, written by the libraries' own encoders
(pillow-heif, Pillow, tifffile, PyAV), for test_formats.py and benchmarks/formats.py."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.ExifTags import IFD, Base

DATE = "2022:03:04 05:06:07"


def exif(
    orientation: int = 1, date: str = DATE, make: str = "Apple", model: str = "iPhone 15"
) -> bytes:
    tags = Image.Exif()
    tags[Base.Orientation] = orientation
    tags[Base.Make] = make
    tags[Base.Model] = model
    tags.get_ifd(IFD.Exif)[Base.DateTimeOriginal] = date
    return tags.tobytes()


def halves(size: tuple[int, int] = (400, 300)) -> Image.Image:
    """Left half red, right half blue: which way is up is easy to check."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, : size[0] // 2] = (255, 0, 0)
    pixels[:, size[0] // 2 :] = (0, 0, 255)
    return Image.fromarray(pixels)


def heic(image: Image.Image, *, orientation: int = 1, thumbnail: int | None = None) -> bytes:
    """A HEIC file; pillow-heif turns the EXIF orientation into the file's own rotation.
    thumbnail: the longer side of an embedded thumbnail."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    out = io.BytesIO()
    thumbnails = [thumbnail] if thumbnail else []
    # x265's fastest preset: ten times faster to write, as good to read back.
    fast = {"preset": "ultrafast"}
    image.save(
        out,
        format="HEIF",
        exif=exif(orientation),
        quality=90,
        thumbnails=thumbnails,
        enc_params=fast,
    )
    return out.getvalue()


def avif(image: Image.Image, *, orientation: int = 1) -> bytes:
    out = io.BytesIO()
    image.save(out, format="AVIF", exif=exif(orientation), quality=90)
    return out.getvalue()


# XYZ (D65) to linear sRGB, row by row.
_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)


def dng(
    path: Path,
    picture: Image.Image,
    *,
    preview: Image.Image | None = None,
    orientation: int = 1,
    date: str = DATE,
) -> None:
    """A DNG holding picture as a Bayer mosaic (RGGB, 12 bits, linear light in a camera
    whose colours are sRGB's, so LibRaw renders it close to picture), with the camera's
    tags in its first IFD and, when given, an uncompressed RGB preview there (the mosaic
    then in a SubIFD, as cameras write it)."""
    import tifffile

    srgb = np.asarray(picture.convert("RGB"), dtype=np.float64) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    rgb = np.round(linear * 4095).astype(np.uint16)
    mosaic = np.empty(rgb.shape[:2], np.uint16)
    mosaic[0::2, 0::2] = rgb[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = rgb[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = rgb[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = rgb[1::2, 1::2, 2]
    camera = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50708, "s", 0, "Photon TestCam", True),  # UniqueCameraModel
        (271, "s", 0, "Photon", True),
        (272, "s", 0, "TestCam", True),
        (274, "H", 1, orientation, True),
        (36867, "s", 0, date, True),  # DateTimeOriginal, which DNG allows here
    ]
    colours = [v for x in _XYZ_TO_SRGB for v in (round(x * 10_000), 10_000)]
    sensor = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout
        (50717, "I", 1, 4095, True),  # WhiteLevel
        (50721, "2i", 9, colours, True),  # ColorMatrix1: XYZ -> the camera's RGB
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
    ]
    with tifffile.TiffWriter(path) as tif:
        if preview is None:
            tif.write(mosaic, photometric=32803, subfiletype=0, extratags=camera + sensor)
        else:
            thumb = np.asarray(preview.convert("RGB"))
            tif.write(thumb, photometric="rgb", subfiletype=1, subifds=1, extratags=camera)
            tif.write(mosaic, photometric=32803, subfiletype=0, extratags=sensor)


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def mp4(
    path: Path,
    *,
    seconds: int = 12,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    rotation: int = 0,
    created: str | None = "2020-05-06T07:08:09.000000Z",
    colours: list[tuple[int, int, int]] = COLOURS,
) -> None:
    """An H.264 MP4 with a keyframe every second, one colour per 4 seconds (in order)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.gop_size = fps
        stream.codec_context.options = {"preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        if created:
            out.metadata["creation_time"] = created
        for i in range(seconds * fps):
            pixels = np.zeros((size[1], size[0], 3), np.uint8)
            pixels[:] = colours[(i // (4 * fps)) % len(colours)]
            pixels[: size[1] // 4, : size[0] // 4] = 255  # a white top-left corner
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)

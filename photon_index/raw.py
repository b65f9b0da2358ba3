"""Camera RAW files (the `raw` extra, rawpy on LibRaw): the camera's embedded preview
when it covers the size the model needs, else a half-size demosaic (each 2x2 block of
the sensor one pixel: no interpolation, and still larger than any model input)."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from photon_index.decode import UPRIGHT, Decoded, ImageInfo, check_pixels, decode, tiff_info
from photon_index.errors import ImageError

if TYPE_CHECKING:
    import rawpy

# LibRaw's flip -> the EXIF orientation that says the same.
_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}


def decode_raw(data: bytes, *, max_pixels: int, draft: tuple[int, int] | None = None) -> Decoded:
    """A RAW file's bytes as an upright RGB picture, with date, camera and orientation.

    draft: the size the picture is needed at, which a large enough preview may give;
    without it the sensor data is demosaiced at half size."""
    try:
        import rawpy
    except ImportError:
        raise ImageError("RAW support needs: pip install 'photon-index[raw]'") from None
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            return _decode(raw, data, max_pixels, draft)
    except rawpy.LibRawError as e:
        raise ImageError(f"RAW data is truncated, corrupt or not supported: {_reason(e)}") from e


def _decode(
    raw: rawpy.RawPy, data: bytes, max_pixels: int, draft: tuple[int, int] | None
) -> Decoded:
    sizes = raw.sizes
    stored = (sizes.width, sizes.height)
    check_pixels(stored, max_pixels)
    orientation = _ORIENTATION.get(sizes.flip, 1)
    preview = _preview(raw, draft, max_pixels) if draft else None
    if preview is not None:
        image = preview.image  # as the camera stored it: the RAW's orientation turns it
        if orientation in UPRIGHT and preview.info.orientation in (None, 1):
            image = image.transpose(UPRIGHT[orientation])
    else:
        # LibRaw turns its output upright itself.
        rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
        image = Image.fromarray(rgb)
    info = tiff_info(data, "RAW", stored, orientation)
    if info is None:  # not TIFF inside (CR3, RAF, ...): the JPEG preview's EXIF, if any
        info = replace(
            preview.info if preview is not None else _NO_INFO,
            format="RAW",
            orientation=orientation,
            **_upright_size(stored, orientation),
        )
    return Decoded(image, info)


def _preview(raw: rawpy.RawPy, draft: tuple[int, int], max_pixels: int) -> Decoded | None:
    """The embedded preview when both its sides cover the larger side of draft (so it
    does whichever way the picture turns); None when there is none that large."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            preview = decode(thumb.data, max_pixels=max_pixels, draft=draft)
        except ImageError:
            return None  # a damaged preview: the sensor data may still be fine
    else:
        preview = Decoded(Image.fromarray(np.asarray(thumb.data)).convert("RGB"), _NO_INFO)
    if min(preview.image.size) < max(draft):
        return None
    return preview


_NO_INFO = ImageInfo("RAW", 0, 0, None, None, None, None, None)


def _upright_size(size: tuple[int, int], orientation: int) -> dict[str, int]:
    width, height = size
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return {"width": width, "height": height}


def _reason(error: Exception) -> str:
    text = error.args[0] if error.args else error
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split()) or type(error).__name__

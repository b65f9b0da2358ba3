"""Videos (the `video` extra, PyAV on FFmpeg): a few keyframes of each, one every
FRAME_EVERY seconds and at most MAX_FRAMES, spread over the whole video. Each is
embedded as a picture, stored as a row of its own (files.frame_path), so a video is
found by its best-matching frame.

Only keyframes are decoded: each seek lands on one, and the decoder is told to skip the
frames between, so a long video costs its MAX_FRAMES frames, not its length."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from photon_index.decode import TAKEN_YEARS, ImageInfo, check_pixels, read_error
from photon_index.errors import ImageError

if TYPE_CHECKING:
    import av.container

FRAME_EVERY = 5.0  # seconds between two frames of a short video
MAX_FRAMES = 12  # frames of a long video, evenly spread
# The local time of the recording, which iPhones write beside creation_time (UTC).
_APPLE_DATE = "com.apple.quicktime.creationdate"


@dataclass(frozen=True)
class Frame:
    at: float  # seconds from the start
    image: Image.Image  # RGB, upright, its shorter side at least the size asked for


def keyframes(
    path: Path, *, max_pixels: int, size: tuple[int, int], timeout: float
) -> tuple[ImageInfo, list[Frame]]:
    """A video's keyframes, reduced to cover size, and what its metadata says.

    ImageError when it cannot be read, has no frame that decodes, or takes longer than
    timeout seconds."""
    with _opened(path) as container:
        return _read(container, path, max_pixels, max(size), time.monotonic() + timeout)


def frame_at(path: Path, at: float, *, max_pixels: int, side: int) -> Image.Image:
    """The keyframe at `at` seconds (as keyframes() found it), its shorter side reduced
    to about side: the picture of a frame's row."""
    with _opened(path) as container:
        stream = _stream(container, max_pixels)
        # A little past: `at` was rounded to a tenth, maybe down from the keyframe's time.
        offset = int((at + 0.05) / stream.time_base)
        container.seek((stream.start_time or 0) + offset, stream=stream, backward=True)
        frame = next(container.decode(stream), None)
        if frame is None:
            raise ImageError("no frame of the video could be decoded")
        return _picture(frame, side)


@contextmanager
def _opened(path: Path) -> Iterator[av.container.InputContainer]:
    """The video open, its failures ImageErrors that say what went wrong in one line."""
    try:
        import av
    except ImportError:
        raise ImageError("video support needs: pip install 'photon-index[video]'") from None
    try:
        if path.stat().st_size == 0:  # FFmpeg would call it invalid data
            raise ImageError("file is empty")
    except OSError as e:
        raise read_error(e) from None
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            yield container
    except av.FFmpegError as e:
        if isinstance(e, OSError) and not isinstance(e, av.InvalidDataError):
            raise read_error(e) from None
        reason = e.strerror or _one_line(e)  # not its str(), which repeats the path
        raise ImageError(f"video data is truncated or corrupt: {reason}") from e


def _stream(container: av.container.InputContainer, max_pixels: int) -> Any:
    """The first video stream, set to decode keyframes only."""
    if not container.streams.video:
        raise ImageError("the file has no video stream")
    stream = container.streams.video[0]
    check_pixels((stream.codec_context.width, stream.codec_context.height), max_pixels)
    stream.codec_context.skip_frame = "NONKEY"
    return stream


def _read(
    container: av.container.InputContainer, path: Path, max_pixels: int, side: int, deadline: float
) -> tuple[ImageInfo, list[Frame]]:
    import av

    stream = _stream(container, max_pixels)
    start = stream.start_time or 0
    frames: dict[str, Frame] = {}
    rotation = 0
    for at in _times(container.duration / 1e6 if container.duration else 0.0):
        if time.monotonic() > deadline:
            raise ImageError("took longer than index.image_timeout to read its keyframes")
        try:
            container.seek(start + int(at / stream.time_base), stream=stream, backward=True)
            frame = next(container.decode(stream), None)
        except av.FFmpegError:
            if not frames:
                raise
            break  # damaged further on: the frames before it still show the video
        if frame is None:
            continue
        rotation = frame.rotation
        # From the stream's start, which some containers do not put at zero.
        taken = at if frame.pts is None else float((frame.pts - start) * stream.time_base)
        taken = max(0.0, taken)
        frames.setdefault(f"{taken:.1f}", Frame(round(taken, 1), _picture(frame, side)))
    if not frames:
        raise ImageError("no frame of the video could be decoded")
    return _info(container, path, stream.codec_context, rotation), list(frames.values())


def _times(duration: float) -> list[float]:
    """Where to look for a keyframe: every FRAME_EVERY seconds, or MAX_FRAMES evenly."""
    step = max(FRAME_EVERY, duration / MAX_FRAMES)
    count = max(1, min(MAX_FRAMES, int(duration / step) + (duration % step > 0)))
    return [i * step for i in range(count)]


def _picture(frame: Any, side: int) -> Image.Image:
    """The frame as an upright RGB picture whose shorter side is about side (scaled by
    FFmpeg, which is cheaper than converting a 4K frame whole)."""
    width, height = frame.width, frame.height
    scale = side / min(width, height)
    if scale < 1:
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    image = frame.reformat(width=width, height=height, format="rgb24").to_image()
    # The display matrix turns the frame counterclockwise, as Pillow's rotate() does.
    return image.rotate(frame.rotation, expand=True) if frame.rotation else image


def _info(
    container: av.container.InputContainer, path: Path, codec: Any, rotation: int
) -> ImageInfo:
    width, height = codec.width, codec.height
    if abs(rotation) == 90:
        width, height = height, width
    tags = {**container.streams.video[0].metadata, **container.metadata}
    meta = {key.lower(): value for key, value in tags.items()}
    return ImageInfo(
        format=path.suffix.lstrip(".").upper(),
        width=width,
        height=height,
        taken_at=_created(meta),
        camera=_camera(meta),
        latitude=None,
        longitude=None,
        orientation=None,
    )


def _created(meta: dict[str, str]) -> datetime | None:
    """The recording's local time: iPhones write it with its offset; creation_time is
    UTC, turned into this computer's local time (the best guess at the camera's)."""
    apple = meta.get(_APPLE_DATE)
    value = apple or meta.get("creation_time")
    if not value:
        return None
    # Python 3.10 reads "+02:00" but not "+0200".
    text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", value.strip().replace("Z", "+00:00"))
    try:
        created = datetime.fromisoformat(text)
    except ValueError:
        return None
    if created.tzinfo is not None and not apple:
        created = created.astimezone()
    created = created.replace(tzinfo=None)
    return created if TAKEN_YEARS[0] <= created.year <= TAKEN_YEARS[1] else None


def _camera(meta: dict[str, str]) -> str | None:
    make = meta.get("com.apple.quicktime.make") or meta.get("make") or ""
    model = meta.get("com.apple.quicktime.model") or meta.get("model") or ""
    if make and model.lower().startswith(make.lower()):
        make = ""
    return " ".join(part.strip() for part in (make, model) if part.strip()) or None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__

"""What kind of file a path is, which optional extra reads it, and what a row's path
names: a picture file, or one frame of a video ("clip.mp4#t=12.0", a media fragment
URI). This is the one place that builds or takes apart a frame's path.

A RAW file and the JPEG or HEIF the camera wrote beside it (same folder, same stem) are
one picture's two files: `pair_key` names the picture they share."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from importlib.util import find_spec

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})
HEIF_SUFFIXES = frozenset({".heic", ".heif"})
# What a camera writes beside a RAW file (RAW+JPEG, or RAW+HEIF on recent Canon, Sony, Fuji).
DEVELOPED_SUFFIXES = JPEG_SUFFIXES | HEIF_SUFFIXES
RAW_SUFFIXES = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf"}
    | {".rw2", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".mrw", ".kdc", ".dcr", ".rwl"}
)
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"})

# A frame's time is written with one decimal: frames closer than that are one frame.
_FRAME = re.compile(r"^(.*)#t=(\d+\.\d)$", re.DOTALL)
_FRAME_END = r"#t=\d+\.\d$"


@dataclass(frozen=True)
class Extra:
    kind: str  # how the summary names these files: "HEIC"
    extra: str  # the photon-index extra that installs the reader
    module: str  # what it installs


_EXTRAS = (
    (HEIF_SUFFIXES, Extra("HEIC", "heif", "pillow_heif")),
    (RAW_SUFFIXES, Extra("RAW", "raw", "rawpy")),
    (VIDEO_SUFFIXES, Extra("video", "video", "av")),
)


def suffix(path: str | os.PathLike[str]) -> str:
    return os.path.splitext(path)[1].lower()


def is_raw(path: str | os.PathLike[str]) -> bool:
    return suffix(path) in RAW_SUFFIXES


def is_video(path: str | os.PathLike[str]) -> bool:
    return suffix(path) in VIDEO_SUFFIXES


def reader(path: str | os.PathLike[str]) -> str:
    """Which reader decodes a file, by its name: "raw", "video" or "image" (Pillow).
    Files with the same bytes but different readers may differ in whether they read."""
    return "raw" if is_raw(path) else "video" if is_video(path) else "image"


def extra_for(path: str | os.PathLike[str]) -> Extra | None:
    """The extra a file needs, when that extra is not installed."""
    ext = suffix(path)
    for suffixes, extra in _EXTRAS:
        if ext in suffixes and not installed(extra.module):
            return extra
    return None


@functools.cache
def installed(module: str) -> bool:
    return find_spec(module) is not None


def frame_path(video: str, at: float) -> str:
    """The row path of the frame at `at` seconds into a video."""
    return f"{video}#t={at:.1f}"


def split_frame(path: str) -> tuple[str, float | None]:
    """A row's file path, and its frame's time when it is a video's frame."""
    match = _FRAME.match(path)
    if match is None or not is_video(match.group(1)):
        return path, None
    return match.group(1), float(match.group(2))


def file_of(path: str) -> str:
    """The file a row's path is in: itself, or the video a frame is from."""
    return split_frame(path)[0]


def files_of(paths: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """file_of for a column of row paths."""
    return pc.replace_substring_regex(paths, pattern=_FRAME_END, replacement="")


def rebase(row_path: str, file: str) -> str:
    """row_path moved to another file with the same bytes: a frame stays that frame."""
    _, at = split_frame(row_path)
    return file if at is None else frame_path(file, at)


def is_frame(paths: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """For a column of row paths, whether each is a video's frame (frame_path)."""
    return pc.match_substring_regex(paths, _FRAME_END).to_numpy(zero_copy_only=False)


def paired(paths: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """For a column of paths, whether each is a RAW or a JPEG/HEIF whose other file (the same
    pair_key) is in the column too. Vectorised: a million paths in Python took a minute.
    Stems are looked up only among the RAW files' (few, or none: then no path is split),
    as a set of a million JPEG stems took 250 MB."""
    ext = pc.struct_field(pc.extract_regex(paths, r"[^/](?P<ext>\.[^./]*)$"), "ext")
    ext = pc.utf8_lower(ext)
    raw = pc.fill_null(pc.is_in(ext, value_set=pa.array(sorted(RAW_SUFFIXES))), False)
    if not pc.any(raw).as_py():
        return np.zeros(len(paths), dtype=bool)
    jpeg = pc.fill_null(pc.is_in(ext, value_set=pa.array(sorted(DEVELOPED_SUFFIXES))), False)
    stem = pc.struct_field(pc.extract_regex(paths, r"^(?P<stem>.*[^/])\.[^./]*$"), "stem")
    paired_jpeg = pc.and_(jpeg, pc.is_in(stem, value_set=pc.filter(stem, raw)))
    paired_raw = pc.and_(raw, pc.is_in(stem, value_set=pc.filter(stem, paired_jpeg)))
    return pc.fill_null(pc.or_(paired_jpeg, paired_raw), False).to_numpy(zero_copy_only=False)


def pair_key(path: str) -> str | None:
    """For a RAW, JPEG or HEIF file, its folder and stem: a RAW and a JPEG or HEIF with
    the same key are one picture's two files. None for every other file."""
    if suffix(path) not in RAW_SUFFIXES | DEVELOPED_SUFFIXES:
        return None
    return os.path.splitext(path)[0]

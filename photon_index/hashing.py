"""Content hashes (exact duplicates) and perceptual hashes (near duplicates).

Four perceptual hashes per picture, for dedupe's near tier: the pHash and the dHash of
the picture, and the same two of the picture with its borders trimmed (a framed,
letterboxed or screenshot copy hashes like its original). The dHash (signs of
horizontal gradients) is a second, independent look at the picture its pHash saw: a
pair found by either pHash counts only when the dHash of the same picture agrees too.
Each pHash has its own dHash because trimming is not stable under every edit: a
brightened sky can turn flat and be trimmed in the copy but not in the original
(benchmarks/dedupe.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

_HASH_SIZE = 8
_SAMPLE_SIZE = 32  # imagehash's hash_size * highfreq_factor
_CHUNK = 1 << 20
# A border line (row or column): at least _FLAT_SHARE of its grey levels within
# _FLAT_LEVELS of its median, so a title bar with its text and buttons still is one.
_FLAT_LEVELS = 16
_FLAT_SHARE = 0.8
_KEEP = 0.5  # trimming stops before it leaves less than this share of a side
_TRIM_SIDE = 256  # trimming looks at the picture scaled to at most this many pixels a side
# Below this spread of grey levels (at 32x32) a picture is plain: its hashes are those of
# any other plain picture (a pHash of ties, a dHash of zeros).
_PLAIN_STD = 8.0


def _dct_matrix(n: int) -> np.ndarray:
    """Unnormalised DCT-II, the same as scipy.fftpack.dct's default: 2·cos(πk(2i+1)/2n)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


# Only the lowest frequencies are kept, so only those rows of the DCT are computed.
_DCT_LOW = _dct_matrix(_SAMPLE_SIZE)[:_HASH_SIZE]


def content_hash(data: bytes) -> str:
    """128-bit BLAKE2b of the file's bytes, as 32 hex characters."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_hash(path: Path) -> str:
    """content_hash of a file, read in chunks: memory stays flat however large it is."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def phash(image: Image.Image) -> bytes:
    """64-bit perceptual hash, bit for bit imagehash.phash, packed MSB first into 8 bytes."""
    small = image.convert("L").resize((_SAMPLE_SIZE, _SAMPLE_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    # Flat and one-dimensional pictures have coefficients that are exactly zero, which
    # scipy's FFT (inside imagehash) returns as 0.0 but a matrix product leaves as ±1e-11
    # noise. They tie with the median, so the noise would pick their bits at random.
    low = np.round(_DCT_LOW @ pixels @ _DCT_LOW.T, 6)
    return np.packbits(low > np.median(low)).tobytes()


@dataclass(frozen=True)
class PerceptualHashes:
    phash: bytes  # of the picture as decoded
    phash_trimmed: bytes  # of the picture without its borders
    dhash: bytes  # of the picture without its borders
    dhash_whole: bytes  # of the picture as decoded


def perceptual_hashes(image: Image.Image) -> PerceptualHashes:
    inner = image.crop(border_box(image))
    if _plain(inner) and not _plain(image):
        inner = image  # trimming left only background, whose hashes match any other's
    return PerceptualHashes(phash(image), phash(inner), dhash(inner), dhash(image))


def _plain(image: Image.Image) -> bool:
    """Whether the picture is all but one grey level, as the hashes see it."""
    small = image.convert("L").resize((_SAMPLE_SIZE, _SAMPLE_SIZE), Image.Resampling.BILINEAR)
    return float(np.asarray(small, dtype=np.float32).std()) < _PLAIN_STD


def dhash(image: Image.Image) -> bytes:
    """64-bit difference hash: whether each of 8x8 grey pixels is darker than the one
    to its right (9x8 samples), packed MSB first."""
    small = image.convert("L").resize((_HASH_SIZE + 1, _HASH_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.int16)
    return np.packbits(pixels[:, 1:] > pixels[:, :-1]).tobytes()


def border_box(image: Image.Image) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the picture inside its borders: from each side in
    turn, lines are trimmed while they are flat and of the colour of the first one
    (one band: a black frame, then a title bar, then a window's margin). Passes repeat
    until no side moves, so nested bands go one after the other. Flat content at an
    edge (a clear sky) is trimmed too, but from the original and from a framed copy
    alike, which is what matters for the hash. A band still flat where it would leave
    less than _KEEP of the picture is no border but a plain background, and is kept:
    lines through a small subject on it are mostly flat too, and trimming them would
    cut the subject in half and leave little but background to hash."""
    scale = min(1.0, _TRIM_SIDE / max(image.size))
    small = (
        image
        if scale == 1
        else image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.BILINEAR,
        )
    )
    grey = np.asarray(small.convert("L"), dtype=np.int16)
    box = [0, 0, grey.shape[1], grey.shape[0]]  # left, top, right, bottom: sides 0-3
    moved = True
    while moved:
        moved = False
        for side in range(4):
            band = _band(grey, box, side)
            if band:
                box[side] += band if side < 2 else -band
                moved = True
    left, top, right, bottom = (round(v / scale) for v in box)
    return left, top, min(right, image.width), min(bottom, image.height)


def _band(grey: np.ndarray, box: list[int], side: int) -> int:
    """How many lines from `side` of box are one flat band, ending before the picture
    left would be under _KEEP of its height or width: 0 for a band that runs past it."""
    h, w = grey.shape
    room = (
        (box[2] - box[0] - max(_KEEP * w, 1))
        if side in (0, 2)
        else (box[3] - box[1] - max(_KEEP * h, 1))
    )
    trial, lines = list(box), 0
    flat, colour = _flat(_edge(grey, trial, side))
    while flat:
        if lines >= room:
            return 0
        trial[side] += 1 if side < 2 else -1
        lines += 1
        flat, level = _flat(_edge(grey, trial, side))
        flat = flat and abs(level - colour) <= _FLAT_LEVELS
    return lines


def _edge(grey: np.ndarray, box: list[int], side: int) -> np.ndarray:
    left, top, right, bottom = box
    if side == 0:
        return grey[top:bottom, left]
    if side == 1:
        return grey[top, left:right]
    if side == 2:
        return grey[top:bottom, right - 1]
    return grey[bottom - 1, left:right]


def _flat(line: np.ndarray) -> tuple[bool, float]:
    level = float(np.median(line))
    return bool(np.mean(np.abs(line - level) <= _FLAT_LEVELS) >= _FLAT_SHARE), level


def phash_hex(h: bytes) -> str:
    """16 hex characters, the same text as str(imagehash.phash(image))."""
    return h.hex()


def hamming(a: bytes, b: bytes) -> int:
    """Number of differing bits between two hashes of the same length."""
    if len(a) != len(b):
        raise ValueError(f"hashes differ in length: {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()

"""Content hashes (exact duplicates) and perceptual hashes (near duplicates)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

_HASH_SIZE = 8
_SAMPLE_SIZE = 32  # imagehash's hash_size * highfreq_factor
_CHUNK = 1 << 20


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


def phash_hex(h: bytes) -> str:
    """16 hex characters, the same text as str(imagehash.phash(image))."""
    return h.hex()


def hamming(a: bytes, b: bytes) -> int:
    """Number of differing bits between two hashes of the same length."""
    if len(a) != len(b):
        raise ValueError(f"hashes differ in length: {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()

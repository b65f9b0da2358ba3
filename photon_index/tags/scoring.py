"""The arithmetic of zero-shot tags: the vocabulary's text embeddings (prompt-ensembled,
cached per model), SigLIP's logits of every tag against a block of pictures, the
label-free per-tag thresholds, and each picture's tags.

The rule (README, "Tags"): SigLIP's probabilities are calibrated but low, and how high a
tag scores on pictures that don't show it differs from tag to tag, so no one cut-off
fits all. Over the library (or a sample of it), tag t's logits are mostly those of
pictures without it; their median m_t and spread s_t (1.4826 x the median absolute
deviation, the standard deviation of a normal distribution, and unmoved by the few
pictures that do show it) describe "not t". A picture gets t when its logit is at least
max(m_t + z * s_t, logit(floor)): a clear outlier above "not t", and not absurdly
improbable. A tag's own threshold in the vocabulary or config replaces both. Of the
tags a picture passes, it keeps the max_per_picture with the largest margins (in
spreads above the threshold)."""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photon_index.embed.encoder import TextEncoder, normalize
from photon_index.models import ModelFiles
from photon_index.store.atomic import write_atomic
from photon_index.tags.vocabulary import Vocabulary

_TEXT_BATCH = 64  # prompts per call of the text tower
_MAD_TO_SIGMA = 1.4826  # MAD x this = standard deviation, for normally distributed values
_MIN_SPREAD = 1e-3  # a tag that scores every picture alike has no outliers to find
_TAG_SLICE = 256  # tags whose sample logits are held at a time
_ROW_STRIDE = 1e6  # sort key of assign(): row * this - margin


@dataclass(frozen=True)
class Rule:
    z: float  # spreads above the median a logit must be
    floor: float  # the lowest probability that counts, whatever the spread
    max_per_picture: int


@dataclass(frozen=True)
class Cutoffs:
    """Per tag, in the vocabulary's order: the logit a picture needs, and the spread
    its margin is counted in."""

    thresholds: np.ndarray  # float32 [T]
    spreads: np.ndarray  # float32 [T]


def logit(probability: float) -> float:
    return float(np.log(probability / (1.0 - probability)))


def cache_path(vocabulary: Vocabulary, model: ModelFiles, models_root: Path) -> Path:
    """Where a model's text embeddings of a vocabulary are kept: in the model's folder
    under the models root, named by the vocabulary's hash and the model's checksums."""
    checksums = "\n".join(f"{k}={v}" for k, v in sorted(model.checksums.items()))
    key = hashlib.sha256(f"{vocabulary.key()}\n{checksums}".encode()).hexdigest()[:16]
    return models_root / model.name / "tags" / f"{key}.npy"


def tag_embeddings(
    vocabulary: Vocabulary, encoder: TextEncoder, model: ModelFiles, models_root: Path
) -> np.ndarray:
    """[T, D] unit vectors, one per tag: the mean of its names' prompts' embeddings.
    Made once per model and vocabulary; a cache file that can't be read or written only
    costs the time to make it again."""
    path = cache_path(vocabulary, model, models_root)
    try:
        cached = np.load(path)
        if cached.shape == (len(vocabulary.tags), encoder.dim):
            return cached
    except (OSError, ValueError):
        pass
    prompts = [vocabulary.prompts(tag) for tag in vocabulary.tags]
    flat = [p for group in prompts for p in group]
    encoded = np.concatenate(
        [encoder.encode(flat[i : i + _TEXT_BATCH]) for i in range(0, len(flat), _TEXT_BATCH)]
    )
    ends = np.cumsum([len(group) for group in prompts])
    means = np.stack([part.mean(axis=0) for part in np.split(encoded, ends[:-1])])
    embeddings = normalize(means).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, embeddings)
    with contextlib.suppress(OSError):  # a read-only cache: made again next time
        write_atomic(path, lambda f: f.write(buffer.getvalue()))
    return embeddings


def logits(embeddings: np.ndarray, tags: np.ndarray, model: ModelFiles) -> np.ndarray:
    """[N, T] SigLIP logits, scale * cos + bias, of unit picture and tag embeddings
    (or [T, N] of tag and picture embeddings)."""
    # The scale goes into the smaller operand: one pass less over the [N, T] product.
    product = embeddings @ (tags * np.float32(model.logit_scale)).T
    product += np.float32(model.logit_bias)
    return product


def library_cutoffs(
    sample: np.ndarray, tags: np.ndarray, model: ModelFiles, vocabulary: Vocabulary, rule: Rule
) -> Cutoffs:
    """The label-free thresholds (module docstring) from a sample of the library's unit
    embeddings [n, D]: its logits a slice of tags at a time, so that a large sample
    against a large vocabulary never sits in memory whole, and tag by tag in rows, so
    each median reads contiguous memory (down columns it is eight times slower)."""
    parts = [
        statistics(logits(tags[start : start + _TAG_SLICE], sample, model))
        for start in range(0, len(tags), _TAG_SLICE)
    ]
    centre = np.concatenate([c for c, _ in parts]) if parts else np.empty(0, np.float32)
    spread = np.concatenate([s for _, s in parts]) if parts else np.empty(0, np.float32)
    return cutoffs(centre, spread, vocabulary, rule)


def statistics(per_tag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The median and spread of each row of a sample of logits, one row per tag [T, n].
    Changes per_tag."""
    if not per_tag.shape[1]:  # an empty library: only the floor
        count = len(per_tag)
        return np.full(count, -np.inf, np.float32), np.full(count, _MIN_SPREAD, np.float32)
    centre = np.median(per_tag, axis=1)
    per_tag -= centre[:, None]
    deviation = np.median(np.abs(per_tag, out=per_tag), axis=1)
    spread = np.maximum(_MAD_TO_SIGMA * deviation, _MIN_SPREAD)
    return centre, spread


def cutoffs(centre: np.ndarray, spread: np.ndarray, vocabulary: Vocabulary, rule: Rule) -> Cutoffs:
    """Each tag's threshold from its median and spread (module docstring)."""
    thresholds = np.maximum(centre + rule.z * spread, logit(rule.floor))
    for i, tag in enumerate(vocabulary.tags):
        if tag.threshold is not None:
            thresholds[i] = logit(tag.threshold)
    return Cutoffs(thresholds.astype(np.float32), spread.astype(np.float32))


@dataclass(frozen=True)
class Assigned:
    """Each picture's tags, best margin first, flattened as an Arrow list array is:
    picture i's are tags[offsets[i] : offsets[i + 1]], with their logits."""

    offsets: np.ndarray  # int32 [N + 1]
    tags: np.ndarray  # indices into the vocabulary
    logits: np.ndarray  # float32

    def of(self, i: int) -> tuple[list[int], list[float]]:
        span = slice(int(self.offsets[i]), int(self.offsets[i + 1]))
        return self.tags[span].tolist(), self.logits[span].tolist()


def assign(block: np.ndarray, cuts: Cutoffs, most: int) -> Assigned:
    """Each row's tags: those at or above their threshold, at most `most`, best margin
    (in spreads above the threshold) first. Vectorised: a Python loop over the passing
    (row, tag) pairs took most of a recompute's time."""
    count = block.shape[1]
    passing = np.flatnonzero(block >= cuts.thresholds)
    rows, cols = np.divmod(passing, count)
    values = block.reshape(-1)[passing]
    margins = (values - cuts.thresholds[cols]) / cuts.spreads[cols]
    # One sort by row, then by margin, descending: margins are at least 0 and, with
    # logits within +-(|scale| + |bias|) and spreads at least _MIN_SPREAD, far below
    # the row stride. Ten times faster than np.lexsort.
    order = np.argsort(rows * _ROW_STRIDE - np.minimum(margins, _ROW_STRIDE / 2))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, np.arange(len(block)))
    keep = np.arange(len(rows)) - starts[rows] < most
    kept = np.bincount(rows[keep], minlength=len(block))
    offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int32)
    return Assigned(offsets, cols[keep].astype(np.int32), values[keep].astype(np.float32))


def probabilities(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))

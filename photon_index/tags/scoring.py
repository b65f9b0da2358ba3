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
    """[N, T] SigLIP logits, scale * cos + bias, of unit picture and tag embeddings."""
    product = embeddings @ tags.T
    product *= np.float32(model.logit_scale)
    product += np.float32(model.logit_bias)
    return product


def cutoffs(sample: np.ndarray, vocabulary: Vocabulary, rule: Rule) -> Cutoffs:
    """The label-free thresholds (module docstring) from a sample of the library's
    logits [n, T]."""
    if not len(sample):  # an empty library: only the floor
        sample = np.full((1, len(vocabulary.tags)), -np.inf, dtype=np.float32)
    centre = np.median(sample, axis=0)
    deviation = np.median(np.abs(sample - centre), axis=0)
    spread = np.maximum(np.nan_to_num(_MAD_TO_SIGMA * deviation), _MIN_SPREAD)
    thresholds = np.maximum(centre + rule.z * spread, logit(rule.floor))
    for i, tag in enumerate(vocabulary.tags):
        if tag.threshold is not None:
            thresholds[i] = logit(tag.threshold)
    return Cutoffs(thresholds.astype(np.float32), spread.astype(np.float32))


def assign(
    block: np.ndarray, cuts: Cutoffs, most: int
) -> tuple[list[list[int]], list[list[float]]]:
    """Each row's tags (indices) and their logits, best margin first."""
    rows, cols = np.nonzero(block >= cuts.thresholds)
    margins = (block[rows, cols] - cuts.thresholds[cols]) / cuts.spreads[cols]
    order = np.lexsort((-margins, rows))
    rows, cols = rows[order], cols[order]
    found: list[list[int]] = [[] for _ in range(len(block))]
    for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
        if len(found[row]) < most:
            found[row].append(col)
    values = [block[i, picked].tolist() for i, picked in enumerate(found)]
    return found, values


def probabilities(values: Sequence[float] | np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))

"""Zero-shot tags: every picture labelled from a vocabulary with SigLIP's own
probabilities, computed from the stored embeddings (scoring.py has the rule)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TagCount:
    tag: str
    count: int  # pictures with it


@dataclass(frozen=True)
class TagScore:
    tag: str
    probability: float  # SigLIP's, sigmoid(logit)
    logit: float

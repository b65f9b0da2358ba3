"""Text to the model's input ids, as SigLIP was trained: canonicalised text, no
attention mask, EOS appended, padded with the pad id to exactly the context length
(the text pooler reads the last position, so the padding must be there)."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from photon_index.discover import is_utf8
from photon_index.errors import UsageError

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def canonicalize(text: str) -> str:
    """Lowercase, drop punctuation, collapse whitespace (SigLIP's text canonicalisation)."""
    return re.sub(r"\s+", " ", text.lower().translate(_PUNCTUATION)).strip()


def _check_text(text: str) -> None:
    """Text from a terminal that is not UTF-8 reaches Python with its bytes as lone
    surrogates, which no tokenizer takes."""
    if not is_utf8(text):
        shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
        raise UsageError(
            f"the text '{shown}' is not UTF-8: set your terminal to UTF-8 and type it again"
        )


class TextTokenizer:
    def __init__(self, tokenizer_file: Path, config_file: Path) -> None:
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        text_config = json.loads(config_file.read_text("utf-8")).get("text_config", {})
        eos = self._tokenizer.token_to_id("</s>")
        self.eos_id: int = text_config.get("eos_token_id", eos) if eos is None else eos
        # SigLIP pads with its EOS token; a config that names a pad id wins.
        self.pad_id: int = text_config.get("pad_token_id", self.eos_id)
        self.length: int = text_config.get("max_position_embeddings", 64)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """int64 ids of shape [N, length]."""
        ids = np.full((len(texts), self.length), self.pad_id, dtype=np.int64)
        for row, text in enumerate(texts):
            _check_text(text)
            tokens = self._tokenizer.encode(canonicalize(text), add_special_tokens=False).ids
            tokens = [*tokens[: self.length - 1], self.eos_id]
            ids[row, : len(tokens)] = tokens
        return ids

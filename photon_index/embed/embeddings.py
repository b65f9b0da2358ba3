"""Embeddings as the library API hands them out: the vectors with what they came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from photon_index.store.schema import arrow_to_pandas

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # [N, D] float32, unit length
    inputs: list[str]  # per row: the text, the picture's path, or "<bytes>"
    model: str  # the registry name of the model that made them

    def to_arrow(self) -> pa.Table:
        """Columns input and embedding (fixed-size lists, as the index stores them)."""
        dim = self.vectors.shape[1]
        flat = pa.array(np.ascontiguousarray(self.vectors, dtype=np.float32).reshape(-1))
        return pa.table(
            {
                "input": pa.array(self.inputs, pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
            },
            metadata={"model": self.model},
        )

    def to_pandas(self) -> pd.DataFrame:
        return arrow_to_pandas(self.to_arrow())

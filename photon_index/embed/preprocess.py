"""Pictures to the model's pixel tensor, following the model's preprocessor_config.json
(for SigLIP: squash-resize to 224x224 bicubic, no crop, x/255, mean 0.5, std 0.5)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImagePreprocessor:
    height: int
    width: int
    resample: Image.Resampling
    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_file(cls, path: Path) -> ImagePreprocessor:
        cfg = json.loads(path.read_text("utf-8"))
        normalize = cfg.get("do_normalize", True)
        size = cfg.get("size", {"height": 224, "width": 224})
        return cls(
            height=size["height"],
            width=size["width"],
            resample=Image.Resampling(cfg.get("resample", Image.Resampling.BICUBIC)),
            rescale=cfg.get("rescale_factor", 1 / 255) if cfg.get("do_rescale", True) else 1.0,
            mean=tuple(cfg.get("image_mean", (0.5,) * 3)) if normalize else (0.0,) * 3,
            std=tuple(cfg.get("image_std", (0.5,) * 3)) if normalize else (1.0,) * 3,
        )

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        """A float32 NCHW batch."""
        return np.stack([self.one(image) for image in images])

    def one(self, image: Image.Image) -> np.ndarray:
        if image.mode != "RGB":
            image = image.convert("RGB")
        resized = image.resize((self.width, self.height), resample=self.resample)
        # float64 for the rescale, as transformers does, so the tensors agree to 1e-7.
        pixels = (np.asarray(resized, dtype=np.float64) * self.rescale).astype(np.float32)
        pixels = (pixels - np.float32(self.mean)) / np.float32(self.std)
        return pixels.transpose(2, 0, 1)

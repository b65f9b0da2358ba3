"""Pixel parity with transformers' SigLIP image processor (code only, no weights)."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
from conftest import REAL_PHOTOS, real_photo
from PIL import Image

from photon_index.decode import decode
from photon_index.embed.preprocess import ImagePreprocessor
from photon_index.synthetic import random_scene, render

transformers = pytest.importorskip("transformers")

SIGLIP_CONFIG = {
    "do_resize": True,
    "size": {"height": 224, "width": 224},
    "resample": 3,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}


def reference_processor() -> object:
    """transformers' PIL-backed SigLIP processor (v5 name first, then the v4 one)."""
    cls = getattr(transformers, "SiglipImageProcessorPil", None)
    return (cls or transformers.SiglipImageProcessor)(**SIGLIP_CONFIG)


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """A rendered scene plus sensor-like noise, at a camera-like size."""
    rng = random.Random(seed)
    base = render(random_scene(rng), rng, size=(width, height))
    noise = np.random.default_rng(seed).normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(base, np.float64) + noise, 0, 255).astype(np.uint8))


def odd_images() -> dict[str, Image.Image]:
    photo = real_photo("coffee")
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    return {
        **{name: real_photo(name) for name in REAL_PHOTOS},
        "portrait": photo_like(300, 500, 2),
        "tiny 1x1": Image.new("RGB", (1, 1), (200, 10, 30)),
        "panorama": photo_like(2000, 90, 3),
        "grey L": photo.convert("L"),
        "palette P": photo.convert("P"),
        "rgba": rgba,
        "cmyk": photo.convert("CMYK"),
    }


@pytest.mark.parametrize("name", list(odd_images()))
def test_full_decode_matches_transformers(name: str, tmp_path) -> None:
    image = odd_images()[name]
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(SIGLIP_CONFIG))
    ours = ImagePreprocessor.from_file(path)([image.convert("RGB")])
    theirs = reference_processor()(image.convert("RGB"), return_tensors="np")["pixel_values"]
    assert ours.shape == theirs.shape == (1, 3, 224, 224)
    assert ours.dtype == np.float32
    diff = float(np.abs(ours - theirs).max())
    print(f"{name}: max abs diff {diff:.2e}")
    assert diff <= 1e-5


def test_draft_decode_stays_close_to_full_decode(tmp_path) -> None:
    """JPEG draft mode decodes at 1/2..1/8 scale: much faster, slightly different pixels.
    The difference is measured and bounded here; see README for the figures."""
    photo = real_photo("astronaut").resize((4000, 3000), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(SIGLIP_CONFIG))
    pre = ImagePreprocessor.from_file(path)
    full = pre([decode(data, max_pixels=10**9).image])
    drafted = pre([decode(data, max_pixels=10**9, draft=(224, 224)).image])
    diff = np.abs(full - drafted)
    print(f"draft vs full: max {diff.max():.3f}, mean {diff.mean():.4f} (of a 2.0 range)")
    assert diff.mean() < 0.02

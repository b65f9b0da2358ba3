"""Text->image recall of a model on fresh synthetic JPEGs, measured through photon's own
decoding and ONNX encoders, i.e. what `photon search` sees.

Picture i shows scene i and every scene is distinct, so each caption has exactly one
right picture among ``--count``; R@k is the share of captions whose picture ranks in the
top k.

    python tools/eval_tiny_model.py --count 200 --seed 20261123
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from photon_index.decode import open_image
from photon_index.embed import ImageEncoder, TextEncoder, text_image_probability
from photon_index.models import load_model
from photon_index.models.registry import BUNDLED_DIR
from photon_index.synthetic import all_scenes, write_pictures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=BUNDLED_DIR / "siglip-tiny-shapes")
    parser.add_argument("--count", type=int, default=200, help="pictures = distinct captions")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def ranks(similarity: np.ndarray) -> np.ndarray:
    """0-based rank of the right picture (the diagonal) for each caption."""
    right = np.diag(similarity)[:, None]
    return (similarity > right).sum(axis=1)


def evaluate(model_dir: Path, count: int, seed: int, threads: int, work: Path) -> dict:
    """Write the pictures, embed them and their captions, and score the ranking."""
    if count > len(all_scenes()):
        raise SystemExit(f"--count is at most {len(all_scenes())}: captions must be distinct")
    # photon records verified checksums in photon.json; a copy keeps the source tree clean.
    model = load_model(str(shutil.copytree(model_dir, work / "model")), work, endpoint="")
    pictures = write_pictures(work / "pictures", count, seed)
    images = ImageEncoder(model, device="cpu", threads=threads)
    size = (images.preprocess.width, images.preprocess.height)
    decoded = [open_image(path, max_pixels=10**8, draft=size).image for path, _ in pictures]
    image_vectors = np.concatenate(
        [images.encode(decoded[i : i + 32]) for i in range(0, count, 32)]
    )
    captions = [scene.caption for _, scene in pictures]
    text_vectors = TextEncoder(model, device="cpu", threads=threads).encode(captions)
    similarity = text_vectors @ image_vectors.T
    rank = ranks(similarity)
    probability = text_image_probability(similarity, model)
    wrong = ~np.eye(count, dtype=bool)
    return {
        "model": model.name,
        "pictures": count,
        "seed": seed,
        "R@1": round(float(np.mean(rank < 1)), 4),
        "R@5": round(float(np.mean(rank < 5)), 4),
        "median_rank": int(np.median(rank)) + 1,
        "mean_probability_right": round(float(np.diag(probability).mean()), 4),
        "mean_probability_wrong": round(float(probability[wrong].mean()), 4),
    }


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as work:
        result = evaluate(args.model, args.count, args.seed, args.threads, Path(work))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

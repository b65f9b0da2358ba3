"""Build a SigLIP-base-sized model with random weights, for speed benchmarks only.

Same ONNX interface, shapes and cost as Xenova/siglip-base-patch16-224 (base/16 at 224,
768-d, vocab 32000, 64 text positions), laid out like a downloaded model, so photon can
index with it without network access. Its embeddings mean nothing: never ship it.
Dev only: needs ``pip install torch==2.13.0 transformers onnx``.

    python tools/make_bench_model.py --quantize
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from train_tiny_siglip import SIZE, TEXT_LEN, export_tower, preprocessor_config, sha256, write_json
from transformers import SiglipConfig, SiglipModel

from photon_index.models.registry import BUNDLED_DIR

VISION, TEXT = "onnx/vision_model.onnx", "onnx/text_model.onnx"
# Any word-level SigLIP tokenizer will do: its ids only have to fit in the vocabulary.
TOKENIZERS = [
    BUNDLED_DIR / "siglip-tiny-shapes/tokenizer.json",
    Path("/tmp/tiny-bench/tokenizer.json"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-models/siglip-base-random"))
    parser.add_argument("--quantize", action="store_true", help="also write OUT-int8 (QInt8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", type=Path, help="tokenizer.json to copy")
    return parser.parse_args()


def build_model(seed: int) -> SiglipModel:
    """transformers' SiglipConfig defaults are base/16 at 224; ids follow our tokenizer."""
    torch.manual_seed(seed)
    text = {"pad_token_id": 1, "eos_token_id": 1, "bos_token_id": None}
    config = SiglipConfig(text_config=text)
    model = SiglipModel._from_config(config, attn_implementation="eager")
    with torch.no_grad():  # the SigLIP paper's init, so scores land in a plausible range
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    return model.eval()


def write_model(model: SiglipModel, tokenizer: Path, out: Path) -> None:
    with torch.no_grad():
        pixels = torch.zeros(1, 3, SIZE, SIZE)
        export_tower(model.vision_model, pixels, "pixel_values", out / VISION)
        ids = torch.ones(1, TEXT_LEN, dtype=torch.int64)
        export_tower(model.text_model, ids, "input_ids", out / TEXT)
    shutil.copyfile(tokenizer, out / "tokenizer.json")
    write_json(out / "preprocessor_config.json", preprocessor_config())
    write_json(out / "config.json", model.config.to_dict())
    write_manifest(out, model.logit_scale.exp().item(), model.logit_bias.item())


def write_quantized(source: Path, out: Path) -> None:
    """QInt8 weights, activations quantized on the fly: what most int8 SigLIP exports are."""
    shutil.copytree(source, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.onnx"))
    for relative in (VISION, TEXT):
        quantize_dynamic(source / relative, out / relative, weight_type=QuantType.QInt8)
    manifest = json.loads((source / "photon.json").read_text("utf-8"))
    write_manifest(out, manifest["logit_scale"], manifest["logit_bias"])


def write_manifest(folder: Path, logit_scale: float, logit_bias: float) -> None:
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    files = [f for f in files if f != "photon.json"]
    write_json(
        folder / "photon.json",
        {
            "name": folder.name,
            "description": "random weights, SigLIP-base sized: for speed benchmarks only",
            "logit_scale": logit_scale,
            "logit_bias": logit_bias,
            "files": {name: sha256(folder / name) for name in files},
        },
    )


def main() -> None:
    args = parse_args()
    tokenizer = args.tokenizer or next((t for t in TOKENIZERS if t.is_file()), None)
    if tokenizer is None:
        raise SystemExit("no tokenizer.json found: pass --tokenizer PATH")
    torch.set_num_threads(2)
    write_model(build_model(args.seed), tokenizer, args.out)
    print(f"wrote {args.out}")
    if args.quantize:
        quantized = args.out.with_name(args.out.name + "-int8")
        write_quantized(args.out, quantized)
        print(f"wrote {quantized}")


if __name__ == "__main__":
    main()

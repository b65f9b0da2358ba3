"""Train the bundled toy model ``siglip-tiny-shapes`` and export it like a real SigLIP.

The result has exactly the ONNX interface, preprocessing and text processing of the
Xenova/siglip-base-patch16-224 export, but knows only photon_index.synthetic's
vocabulary. Dev only: needs ``pip install torch==2.13.0 transformers onnx``.

    python tools/train_tiny_siglip.py --out photon_index/models/bundled/siglip-tiny-shapes
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import random
import string
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import SiglipConfig, SiglipModel

from photon_index.synthetic import COLOURS, SHAPES, Scene, all_scenes, render

SIZE = 224
TEXT_LEN = 64
PAD = EOS = 1  # SigLIP pads with </s>: the text pooler reads the last position
DESCRIPTION = "bundled toy SigLIP (128-d) trained on drawn shapes; for tests and the demo"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--steps", type=int, default=700, help="optimizer steps")
    parser.add_argument("--minutes", type=float, help="stop early after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pictures", type=int, default=17600, help="training pictures")
    parser.add_argument("--batch", type=int, default=192, help="pictures per step")
    parser.add_argument("--partial", type=int, default=64, help="partial descriptions per step")
    parser.add_argument("--lr", type=float, default=2e-3)
    # One thread: with two, a CPU shared with other work stalls on OpenMP barriers.
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    return parser.parse_args()


# --- text: exactly what photon does at inference -------------------------------------


def canonical(text: str) -> str:
    """Lowercase, drop punctuation, collapse whitespace."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


def build_tokenizer(texts: list[str]) -> Tokenizer:
    """Word-level tokenizer over the texts; <pad>=0, </s>=1, <unk>=2."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"])
    tokenizer.train_from_iterator(sorted({canonical(t) for t in texts}), trainer)
    assert [tokenizer.token_to_id(t) for t in ("<pad>", "</s>", "<unk>")] == [0, 1, 2]
    return tokenizer


def encode_texts(tokenizer: Tokenizer, texts: list[str]) -> torch.Tensor:
    """[N, 64] int64: tokens, then </s>, padded with </s>."""
    ids = torch.full((len(texts), TEXT_LEN), PAD, dtype=torch.int64)
    for row, text in enumerate(texts):
        tokens = tokenizer.encode(canonical(text), add_special_tokens=False).ids[: TEXT_LEN - 1]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
        ids[row, len(tokens)] = EOS
    return ids


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


# Shorter ways to describe part of a scene, and which of (shape, colour, background)
# each one names. Training on them too lets a search for "red circle" work.
PARTIAL = [
    ("{shape}", (1, 0, 0)),
    ("a {shape}", (1, 0, 0)),
    ("{colour} {shape}", (1, 1, 0)),
    ("{a_colour} {shape}", (1, 1, 0)),
    ("{background} background", (0, 0, 1)),
    ("{a_background} background", (0, 0, 1)),
    ("{shape} on {a_background} background", (1, 0, 1)),
    ("{colour} {shape} on {background} background", (1, 1, 1)),
]


def attributes(scene: Scene) -> tuple[int, int, int]:
    return (
        SHAPES.index(scene.shape),
        list(COLOURS).index(scene.colour),
        list(COLOURS).index(scene.background),
    )


def training_texts() -> tuple[list[str], torch.Tensor]:
    """Every text, full captions first (text i = all_scenes()[i]), and for each the
    [shape, colour, background] index a matching picture has (-1: any)."""
    demands = {scene.caption: attributes(scene) for scene in all_scenes()}
    for scene in all_scenes():
        words = {"shape": scene.shape, "colour": scene.colour, "background": scene.background}
        words |= {"a_colour": _a(scene.colour), "a_background": _a(scene.background)}
        shape, colour, background = attributes(scene)
        for template, (s, c, b) in PARTIAL:
            demand = (shape if s else -1, colour if c else -1, background if b else -1)
            demands.setdefault(template.format(**words), demand)
    return list(demands), torch.tensor(list(demands.values()))


# --- pictures -------------------------------------------------------------------------


def _picture(job: tuple[int, int]) -> np.ndarray:
    """One training picture, JPEG round-tripped and resized like photon does."""
    seed, index = job
    rng = random.Random(seed * 1_000_003 + index)
    scenes = all_scenes()
    image = render(scenes[index % len(scenes)], rng)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=rng.randint(75, 95))
    image = Image.open(buffer).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    return np.asarray(image).transpose(2, 0, 1)


def render_pictures(count: int, seed: int) -> torch.Tensor:
    """[count, 3, 224, 224] uint8; picture i shows all_scenes()[i % len]."""
    pictures = torch.empty((count, 3, SIZE, SIZE), dtype=torch.uint8)
    with Pool() as pool:
        jobs = [(seed, i) for i in range(count)]
        for i, picture in enumerate(pool.imap(_picture, jobs, chunksize=64)):
            pictures[i] = torch.from_numpy(picture)
    return pictures


def pixel_values(pictures: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1], i.e. x/255 normalised with mean=std=0.5."""
    return pictures.float().mul_(1 / 127.5).sub_(1.0)


# --- model and training ----------------------------------------------------------------


def build_model(vocab_size: int) -> SiglipModel:
    """A ~1.4M-parameter SigLIP: patch 32 at 224, hidden 128."""
    text = dict(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TEXT_LEN,
        pad_token_id=PAD,
        eos_token_id=EOS,
        bos_token_id=None,
    )
    vision = dict(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        image_size=SIZE,
        patch_size=32,
    )
    config = SiglipConfig(text_config=text, vision_config=vision)
    # eager attention: faster than sdpa at this size on CPU, and traceable for export
    model = SiglipModel._from_config(config, attn_implementation="eager")
    with torch.no_grad():  # the SigLIP paper's init: t' = log 10, b = -10
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    return model


def make_optimizer(model: SiglipModel, lr: float) -> torch.optim.Optimizer:
    """AdamW; logit scale and bias learn 10x faster, norms and biases are not decayed."""
    logit = [model.logit_scale, model.logit_bias]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "logit" not in n]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2 and "logit" not in n]
    groups = [
        {"params": decay, "lr": lr, "weight_decay": 0.05},
        {"params": rest, "lr": lr, "weight_decay": 0.0},
        {"params": logit, "lr": lr * 10, "weight_decay": 0.0},
    ]
    for group in groups:
        group["base_lr"] = group["lr"]
    return torch.optim.AdamW(groups, betas=(0.9, 0.98))


def set_lr(optimizer: torch.optim.Optimizer, step: int, steps: int) -> None:
    """Linear warm-up over 5% of the steps, then cosine decay to zero."""
    warmup = max(1, steps // 20)
    progress = (step - warmup) / max(1, steps - warmup)
    factor = step / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * progress))
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def sigmoid_loss(
    model: SiglipModel, images: torch.Tensor, texts: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """SigLIP loss; every picture of a caption counts as its positive, not just one."""
    with torch.autocast("cpu", dtype=torch.bfloat16):  # ~30% faster; the loss stays fp32
        image_features = model.get_image_features(pixel_values=images).pooler_output
        text_features = model.get_text_features(input_ids=texts).pooler_output
    image_features, text_features = (
        F.normalize(image_features.float()),
        F.normalize(text_features.float()),
    )
    logits = image_features @ text_features.T * model.logit_scale.exp() + model.logit_bias
    return -F.logsigmoid((2 * labels - 1) * logits).sum() / len(images)


def batch(
    pictures: torch.Tensor,
    text_ids: torch.Tensor,
    demands: torch.Tensor,
    index: torch.Tensor,
    generator: torch.Generator,
    partial: int,
) -> tuple[torch.Tensor, ...]:
    """Pictures (half mirrored, which keeps every caption true), the distinct captions of
    their scenes plus ``partial`` random partial descriptions, and which text fits which."""
    images = pictures[index]
    flips = torch.rand(len(index), generator=generator) < 0.5
    images[flips] = images[flips].flip(-1)
    scenes = index % len(all_scenes())
    extra = torch.randperm(len(text_ids) - len(all_scenes()), generator=generator)[:partial]
    texts = torch.cat([scenes.unique(), extra + len(all_scenes())])
    wanted, have = demands[texts][None], demands[scenes][:, None]
    labels = ((wanted == have) | (wanted < 0)).all(-1).float()
    return pixel_values(images), text_ids[texts], labels


@torch.no_grad()
def recall_at_1(model: SiglipModel, pictures: torch.Tensor, caption_ids: torch.Tensor) -> float:
    """Text->image R@1 where picture i shows caption i."""
    model.eval()
    images = torch.cat(
        [
            model.get_image_features(pixel_values=pixel_values(chunk)).pooler_output
            for chunk in pictures.split(128)
        ]
    )
    texts = model.get_text_features(input_ids=caption_ids).pooler_output
    model.train()
    similarity = F.normalize(texts) @ F.normalize(images).T
    hits = similarity.argmax(dim=1) == torch.arange(len(texts))
    return hits.float().mean().item()


def train(
    model: SiglipModel, text_ids: torch.Tensor, demands: torch.Tensor, args: argparse.Namespace
) -> None:
    """Train in place for args.steps steps (or args.minutes, whichever ends first)."""
    started = time.monotonic()
    scene_count = len(all_scenes())
    pictures = render_pictures(args.pictures, args.seed)
    held_out = render_pictures(scene_count, args.seed + 1)[::4]
    print(f"rendered {len(pictures)} pictures in {time.monotonic() - started:.0f}s", flush=True)

    generator = torch.Generator().manual_seed(args.seed)
    optimizer = make_optimizer(model, args.lr)
    per_epoch = args.pictures // args.batch
    for step in range(args.steps):
        if args.minutes and time.monotonic() - started > args.minutes * 60:
            print(f"stopping at step {step}: --minutes reached", flush=True)
            break
        if step % per_epoch == 0:
            order = torch.randperm(args.pictures, generator=generator)
        index = order[step % per_epoch * args.batch :][: args.batch]
        set_lr(optimizer, step, args.steps)
        inputs = batch(pictures, text_ids, demands, index, generator, args.partial)
        loss = sigmoid_loss(model, *inputs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0 or step == args.steps - 1:
            report = f"step {step} loss {loss.item():.3f} t={model.logit_scale.exp().item():.1f}"
            report += f" b={model.logit_bias.item():.2f} {time.monotonic() - started:.0f}s"
            if step % 200 == 0 or step == args.steps - 1:
                r1 = recall_at_1(model, held_out, text_ids[:scene_count:4])
                report += f" held-out R@1 {r1:.3f}"
            print(report, flush=True)


# --- export ---------------------------------------------------------------------------


class Tower(torch.nn.Module):
    """One SigLIP tower returning (last_hidden_state, pooler_output) as a tuple."""

    def __init__(self, tower: torch.nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.tower(inputs)
        return output.last_hidden_state, output.pooler_output


def export_tower(tower: torch.nn.Module, example: torch.Tensor, name: str, path: Path) -> None:
    """Legacy (TorchScript) export, opset 17, dynamic batch, weights inside the one file;
    checked against torch on ``example`` (a batch of 3, while tracing saw a batch of 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    outputs = ["last_hidden_state", "pooler_output"]
    torch.onnx.export(
        Tower(tower).eval(),
        (example[:1],),
        str(path),
        input_names=[name],
        output_names=outputs,
        dynamic_axes={key: {0: "batch_size"} for key in [name, *outputs]},
        opset_version=17,
        dynamo=False,
    )
    onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (pooled,) = session.run(["pooler_output"], {name: example.numpy()})
    expected = tower(example).pooler_output.numpy()
    assert np.allclose(pooled, expected, atol=1e-4), f"{path}: ONNX and torch disagree"


def preprocessor_config() -> dict:
    """Hugging Face style, as in the real SigLIP export."""
    return {
        "do_resize": True,
        "size": {"height": SIZE, "width": SIZE},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor",
        "processor_class": "SiglipProcessor",
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(model: SiglipModel, tokenizer: Tokenizer, out: Path) -> None:
    """Write the model folder, laid out like the real model's, plus photon.json."""
    model = model.eval()
    with torch.no_grad():
        pixels = torch.rand(3, 3, SIZE, SIZE) * 2 - 1
        export_tower(model.vision_model, pixels, "pixel_values", out / "onnx/vision_model.onnx")
        ids = torch.randint(0, tokenizer.get_vocab_size(), (3, TEXT_LEN))
        export_tower(model.text_model, ids, "input_ids", out / "onnx/text_model.onnx")
    tokenizer.save(str(out / "tokenizer.json"))
    write_json(out / "preprocessor_config.json", preprocessor_config())
    model.config.architectures = ["SiglipModel"]
    write_json(out / "config.json", model.config.to_dict())
    files = [
        "onnx/vision_model.onnx",
        "onnx/text_model.onnx",
        "tokenizer.json",
        "preprocessor_config.json",
        "config.json",
    ]
    write_json(
        out / "photon.json",
        {
            "name": out.name,
            "description": DESCRIPTION,
            "logit_scale": model.logit_scale.exp().item(),
            "logit_bias": model.logit_bias.item(),
            "files": {name: sha256(out / name) for name in files},
        },
    )


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def main() -> None:
    args = parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)

    texts, demands = training_texts()
    tokenizer = build_tokenizer(texts)
    model = build_model(tokenizer.get_vocab_size())
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    started = time.monotonic()
    train(model, encode_texts(tokenizer, texts), demands, args)
    print(f"trained in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    export(model, tokenizer, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

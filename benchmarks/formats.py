"""Decode + preprocess time per picture for each format photon reads, as the indexer's
workers do it (photon_index.decode.decode_file with the model's size as draft, then the
model's preprocessing), and how much the shortcuts change the embedding: a HEIC's
embedded thumbnail and a RAW's embedded preview against decoding the whole picture.

The pictures are 12 Mpx (4032x3024, an iPhone's size) versions of real photographs
(benchmarks/data/dedupe-photos when benchmarks/dedupe.py has fetched them, else
scikit-image's), written by the libraries' own encoders as tests/formats_files.py does:
JPEG q90 (Pillow), HEIC q90 with a 320x240 thumbnail as iPhones embed (pillow-heif;
x265's ultrafast preset, to keep the run short), AVIF q90 (Pillow), and DNG with and
without a 1616x1212 RGB preview (tifffile; LibRaw reads it as cameras' previews).

    python benchmarks/formats.py [--photos 6] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from formats_files import dng, heic  # noqa: E402

from photon_index.decode import decode_file  # noqa: E402
from photon_index.embed.encoder import ImageEncoder  # noqa: E402
from photon_index.models import load_model  # noqa: E402

PHOTOS = ROOT / "benchmarks" / "data" / "dedupe-photos"
RESULTS = ROOT / "benchmarks" / "results" / "formats.md"
SIZE = (4032, 3024)
MAX_PIXELS = 200_000_000


def photos(count: int) -> list[tuple[str, Image.Image]]:
    if PHOTOS.is_dir():
        paths = sorted(PHOTOS.glob("*.jpg"))[:count]
        found = [(p.name, Image.open(p).convert("RGB")) for p in paths]
    else:
        import skimage.data

        names = ("astronaut", "coffee", "chelsea", "rocket")[:count]
        found = [(n, Image.fromarray(getattr(skimage.data, n)())) for n in names]
    return [(name, ImageOps.fit(im, SIZE, Image.Resampling.LANCZOS)) for name, im in found]


def write_files(name: str, photo: Image.Image, folder: Path) -> dict[str, Path]:
    stem = folder / Path(name).stem
    files = {kind: stem.with_suffix(suffix) for kind, suffix in _SUFFIXES.items()}
    photo.save(files["jpeg"], quality=90)
    files["heic"].write_bytes(heic(photo, thumbnail=320))
    photo.save(files["avif"], quality=90, speed=8)
    preview = photo.resize((1616, 1212), Image.Resampling.LANCZOS)
    dng(files["raw-preview"], photo, preview=preview)
    dng(files["raw"], photo)
    return files


_SUFFIXES = {"jpeg": ".jpg", "heic": ".heic", "avif": ".avif", "raw-preview": ".x.dng"}
_SUFFIXES["raw"] = ".dng"


def prepare(
    encoder: ImageEncoder, path: Path, data: bytes, size: tuple[int, int] | None
) -> np.ndarray:
    """What a worker does before the model runs: decode, then preprocess."""
    image = decode_file(path, data, max_pixels=MAX_PIXELS, draft=size)
    return encoder.preprocess([image.image])


def timed(step: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of repeats calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    model = load_model(
        "siglip-tiny-shapes", Path("/nonexistent"), endpoint="http://127.0.0.1:9", download=False
    )
    encoder = ImageEncoder(model, device="cpu", threads=1)
    draft = (encoder.preprocess.width, encoder.preprocess.height)
    # (row label, file kind, draft or None for the whole picture)
    ways = [
        ("JPEG, draft (what photon does)", "jpeg", draft),
        ("JPEG, whole picture", "jpeg", None),
        ("HEIC, embedded thumbnail (what photon does)", "heic", draft),
        ("HEIC, whole picture", "heic", None),
        ("AVIF, whole picture (no reduced decode exists)", "avif", draft),
        ("RAW, embedded preview (what photon does)", "raw-preview", draft),
        ("RAW, half-size demosaic (no preview large enough)", "raw", draft),
    ]
    ms: dict[str, list[float]] = {label: [] for label, _, _ in ways}
    sizes: dict[str, list[int]] = {kind: [] for kind in _SUFFIXES}
    cosines: dict[str, list[float]] = {"jpeg": [], "heic": [], "raw": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, photo in photos(args.photos):
            files = write_files(name, photo, Path(tmp))
            data = {kind: path.read_bytes() for kind, path in files.items()}
            for kind, blob in data.items():
                sizes[kind].append(len(blob))

            def run(kind: str, size: tuple[int, int] | None, f=files, d=data) -> np.ndarray:
                return prepare(encoder, f[kind], d[kind], size)

            for label, kind, size in ways:
                ms[label].append(timed(lambda k=kind, s=size: run(k, s), args.repeats))
            # Embedding differences: the shortcut against the whole picture.
            pairs = {
                "jpeg": (("jpeg", draft), ("jpeg", None)),
                "heic": (("heic", draft), ("heic", None)),
                "raw": (("raw-preview", draft), ("raw", draft)),
            }
            for what, ((k1, s1), (k2, s2)) in pairs.items():
                a, b = encoder.run(np.concatenate([run(k1, s1), run(k2, s2)]))
                cosines[what].append(float(a @ b))
            print(name, {label: round(v[-1], 1) for label, v in ms.items()}, flush=True)

    write_results(args, ms, sizes, cosines)


def write_results(
    args: argparse.Namespace,
    ms: dict[str, list[float]],
    sizes: dict[str, list[int]],
    cosines: dict[str, list[float]],
) -> None:
    import PIL
    import pillow_heif
    import rawpy

    count = len(next(iter(ms.values())))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    jpeg_draft = statistics.median(ms["JPEG, draft (what photon does)"])
    lines = [
        "# Formats: decode + preprocess per picture",
        "",
        f"- Date: {time.strftime('%Y-%m-%d')}. Command: `python benchmarks/formats.py "
        f"--photos {args.photos} --repeats {args.repeats}`.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, shared with other jobs "
        f"(load average {load} at the end). Python {platform.python_version()}, "
        f"Pillow {PIL.__version__}, pillow-heif {pillow_heif.__version__}, "
        f"rawpy {rawpy.__version__}, one thread.",
        f"- {count} real photographs at 4032x3024 (12 Mpx); each time is the median of "
        f"{args.repeats} runs of `decode_file` (draft: the model's 224x224) and the model's "
        "preprocessing, then the median over the photos. Embeddings by siglip-tiny-shapes.",
        "",
        "| format, how | ms per picture | x JPEG draft |",
        "|---|--:|--:|",
    ]
    for label, values in ms.items():
        median = statistics.median(values)
        lines.append(f"| {label} | {median:.1f} | {median / jpeg_draft:.1f} |")
    lines += [
        "",
        "File sizes (median): "
        + ", ".join(f"{kind} {statistics.median(v) / 1e6:.1f} MB" for kind, v in sizes.items() if v)
        + ".",
        "",
        "Cosine between the embedding of the shortcut and of the whole picture "
        "(min / median over the photos):",
        "",
        "| shortcut | min | median |",
        "|---|--:|--:|",
    ]
    names = {
        "jpeg": "JPEG draft vs whole",
        "heic": "HEIC 320x240 thumbnail vs whole",
        "raw": "RAW preview vs half-size demosaic",
    }
    for what, values in cosines.items():
        lines.append(f"| {names[what]} | {min(values):.5f} | {statistics.median(values):.5f} |")
    lines += [
        "",
        "The DNGs' mosaics are the photos in linear light; LibRaw renders them with its own",
        "white balance, tone curve and automatic brightening, as it does a camera's, so the",
        "half-size picture is toned unlike the preview (the photo itself) and the RAW row",
        "measures that rendering as much as the preview shortcut.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Benchmarks of duplicate finding (photon_index.query.dedupe).

    python benchmarks/dedupe.py fetch     # once: real photos from Debian wallpaper packages
    python benchmarks/dedupe.py quality   # precision/recall/F1 of tiers 1-2 and imagededup
    python benchmarks/dedupe.py scale     # near tier on 100k and 1M hashes, all pairs at 20k
    python benchmarks/dedupe.py similar   # tier 3: blocked matrix product vs LanceDB queries

Each prints Markdown for benchmarks/results/dedupe.md. `quality` builds a near-duplicate
corpus from the fetched photos in a temp dir: every photo with edited copies (resize,
JPEG re-encode, small crops, brightness, EXIF rotation, screenshot-like borders), plus
its four quadrants as distinct pictures. It compares imagededup's PHash at its default
threshold on the same files; install it without its deep-learning extras:

    pip install --no-deps imagededup && pip install scikit-learn PyWavelets scipy
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from photon_index.decode import decode
from photon_index.hashing import content_hash, perceptual_hashes
from photon_index.query.dedupe import (
    _candidate_pairs,
    _components,
    _detailed,
    cosine_pairs,
    find_duplicates,
)
from photon_index.store.malloc import cap_arenas
from photon_index.store.schema import SECOND_HASHES, image_schema
from photon_index.store.table import ImageTable

PHOTOS = Path(__file__).parent / "data" / "dedupe-photos"
# Debian packages and the real photographs in them (the rest of their art is drawn).
PACKAGES = {
    "lomiri-wallpapers-16.04": [
        f"usr/share/backgrounds/{name}_by_{author}.jpg"
        for name, author in [
            ("Bridge", "Sander_Klootwijk"),
            ("Dragonfly", "Bolly"),
            ("Picture_0B", "freespace"),
            ("Picture_1A", "freespace"),
            ("Wine", "Jakkub_Mede"),
            ("aitzgorri", "Aitzol_Berasategi"),
            ("free", "Peter_Nerlich"),
            ("friends", "Aitzol_Berasategi"),
            ("greentock", "Peter_Nerlich"),
            ("life", "Aitzol_Berasategi"),
            ("picosdeeuropa", "Aitzol_Berasategi"),
            ("seeding", "Clements_Engelhardt"),
            ("sunset", "Aitzol_Berasategi"),
        ]
    ],
    "lomiri-wallpapers-20.04": [
        "usr/share/backgrounds/Infinite-Sea_by_Aury88.jpg",
        "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
    ],
    "mate-backgrounds": [
        f"usr/share/backgrounds/mate/nature/{name}.jpg"
        for name in [
            "Aqua",
            "Blinds",
            "Dune",
            "FreshFlower",
            "Garden",
            "GreenMeadow",
            "LadyBird",
            "RainDrops",
            "Storm",
            "TwoWings",
            "Wood",
            "YellowFlower",
        ]
    ],
    "plasma-workspace-wallpapers": [
        f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg"
        for name in [
            "BytheWater",
            "ColdRipple",
            "ColorfulCups",
            "DarkestHour",
            "EveningGlow",
            "FallenLeaf",
            "Grey",
            "Kite",
            "OneStandsOut",
            "Path",
            "summer_1am",
        ]
    ],
}
LONG_SIDE = 2000  # photos are scaled to this first: a typical phone-export size
DRAFT = (224, 224)  # what `photon index` decodes JPEGs at for siglip-base-patch16-224
# (candidate pHash distance, dHash distance); None: pHash alone, as before the dHash
RULES = [(6, None), (8, None), (10, None), (6, 8), (6, 10), (6, 12), (8, 10), (10, 10)]
DEFAULT_RULE = (6, 10)
PREVIOUS_RULE = (6, 8)  # the default before the whole picture's dHash, on a table without it
IMAGEDEDUP_THRESHOLD = 10  # PHash.find_duplicates' default max_distance_threshold
SCALE_DISTANCE = 6
TILE_GRID = 7  # tiles per side of each photo, as distinct pictures for false-match rates


def fetch() -> None:
    """Download the packages with apt and copy their photographs into PHOTOS."""
    PHOTOS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, check=True)
        for package, files in PACKAGES.items():
            (deb,) = Path(tmp).glob(f"{package}_*.deb")
            unpacked = Path(tmp) / package
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
            for file in files:
                name = file.split("/")[-4] if "/contents/" in file else Path(file).stem
                shutil.copy(unpacked / file, PHOTOS / f"{name}.jpg")
    print(f"{len(list(PHOTOS.glob('*.jpg')))} photos in {PHOTOS}")


def photos() -> list[Path]:
    found = sorted(PHOTOS.glob("*.jpg"))
    if not found:
        sys.exit(
            f"no photos in {PHOTOS}: run `python benchmarks/dedupe.py fetch` (Debian or "
            "Ubuntu, after `apt-get update`), or copy your own JPEG photographs there"
        )
    return found


# The near-duplicate corpus.


def _exif_rotated(image: Image.Image, path: Path) -> None:
    # Stored a quarter turn left with orientation 6: viewers (and photon) turn it upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    image.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)


def _screenshot(image: Image.Image) -> Image.Image:
    # The photo in a viewer window: dark frame, light title bar, photo at 90 % size.
    w, h = image.size
    canvas = Image.new("RGB", (w, h), (32, 32, 36))
    canvas.paste((225, 225, 228), (0, 0, w, h // 20))
    inner = image.resize((w * 9 // 10, h * 9 // 10), Image.Resampling.LANCZOS)
    canvas.paste(inner, ((w - inner.width) // 2, h // 20 + (h - h // 20 - inner.height) // 2))
    return canvas


def _crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    return image.crop(
        (round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))
    )


def _border(image: Image.Image, share: float, colour: tuple[int, int, int]) -> Image.Image:
    return ImageOps.expand(image, round(max(image.size) * share), colour)


def _watermark(image: Image.Image) -> Image.Image:
    w, h = image.size
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    font = ImageFont.load_default(size=h // 12)
    ImageDraw.Draw(layer).text(
        (w * 0.05, h * 0.8), "© Jane Doe Photography", font=font, fill=(255, 255, 255, 160)
    )
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def _window(image: Image.Image) -> Image.Image:
    # A 1920x1200 screen: a photo viewer's title bar (buttons, file name), the photo fitted
    # on its dark background, a toolbar below.
    w, h = 1920, 1200
    screen = Image.new("RGB", (w, h), (30, 30, 32))
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, w, 44), fill=(236, 236, 238))
    for k, colour in enumerate([(255, 95, 87), (255, 189, 46), (39, 201, 63)]):
        draw.ellipse((14 + 26 * k, 14, 30 + 26 * k, 30), fill=colour)
    font = ImageFont.load_default(size=18)
    draw.text((w // 2 - 120, 12), "IMG_2041.jpg - Photos", font=font, fill=(40, 40, 40))
    draw.rectangle((0, h - 48, w, h), fill=(44, 44, 48))
    for k in range(5):
        x = w // 2 - 140 + 60 * k
        draw.rounded_rectangle((x, h - 38, x + 30, h - 10), 6, fill=(120, 120, 125))
    inner = ImageOps.contain(image, (w - 40, h - 132), Image.Resampling.LANCZOS)
    screen.paste(inner, ((w - inner.width) // 2, 44 + (h - 92 - inner.height) // 2))
    return screen


EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "resize-50": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "resize-320": lambda im: ImageOps.contain(im, (320, 320), Image.Resampling.LANCZOS),
    "crop-4-centre": lambda im: _crop(im, 0.02, 0.02, 0.02, 0.02),
    "crop-5-corner": lambda im: _crop(im, 0.05, 0.05, 0, 0),
    "brighter-12": lambda im: ImageEnhance.Brightness(im).enhance(1.12),
    "darker-12": lambda im: ImageEnhance.Brightness(im).enhance(0.88),
    "screenshot": _screenshot,
    "crop-10-centre": lambda im: _crop(im, 0.05, 0.05, 0.05, 0.05),
    "crop-10-corner": lambda im: _crop(im, 0.10, 0.10, 0, 0),
    "border-2": lambda im: _border(im, 0.02, (0, 0, 0)),
    "border-5": lambda im: _border(im, 0.05, (255, 255, 255)),
    "watermark": _watermark,
    "window": _window,
    "mirror": ImageOps.mirror,
}
VARIANTS = ["copy", "jpeg-q40", *EDITS, "resize-50-q40", "exif-rotated"]
NOT_COPIES = {"mirror"}  # a mirrored picture is another picture (README, Duplicates)


def build_corpus(folder: Path) -> dict[Path, str]:
    """Write the corpus; returns each file's picture (files of one picture are duplicates)."""
    truth: dict[Path, str] = {}
    for photo in photos():
        with Image.open(photo) as im:
            image = ImageOps.contain(im.convert("RGB"), (LONG_SIDE, LONG_SIDE))
        original = folder / f"{photo.stem}.jpg"
        image.save(original, quality=92)
        truth[original] = photo.stem
        variants = folder / "edited"
        variants.mkdir(exist_ok=True)
        for variant in VARIANTS:
            path = variants / f"{photo.stem}--{variant}.jpg"
            if variant == "copy":
                shutil.copy(original, path)
            elif variant == "jpeg-q40":
                image.save(path, quality=40)
            elif variant == "exif-rotated":
                _exif_rotated(image, path)
            elif variant == "resize-50-q40":
                EDITS["resize-50"](image).save(path, quality=40)
            else:
                EDITS[variant](image).save(path, quality=90)
            truth[path] = f"{photo.stem}--{variant}" if variant in NOT_COPIES else photo.stem
        # Its quadrants are distinct pictures: same colours and textures, not copies.
        quadrants = folder / "quadrants"
        quadrants.mkdir(exist_ok=True)
        w, h = image.size
        for q, (x, y) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
            path = quadrants / f"{photo.stem}--q{q}.jpg"
            image.crop((x * w // 2, y * h // 2, (x + 1) * w // 2, (y + 1) * h // 2)).save(
                path, quality=90
            )
            truth[path] = f"{photo.stem}--q{q}"
    return truth


def photon_table(files: list[Path], db: Path, kept: tuple[str, ...]) -> tuple[ImageTable, float]:
    """A table of the files with their hashes computed as `photon index` does; the
    SECOND_HASHES not `kept` are null, as in a table indexed before them."""
    start = time.perf_counter()
    columns: dict[str, list] = {name: [] for name in image_schema(4, "m", "m").names}
    for path in files:
        data = path.read_bytes()
        decoded = decode(data, max_pixels=200_000_000, draft=DRAFT)
        hashes = perceptual_hashes(decoded.image)
        stat = path.stat()
        row = dict(
            path=str(path),
            content_hash=content_hash(data),
            **{name: list(getattr(hashes, name)) for name in kept},
            phash=list(hashes.phash),
            file_size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            width=decoded.info.width,
            height=decoded.info.height,
            format=decoded.info.format,
            taken_at=None,
            camera=None,
            latitude=None,
            longitude=None,
            model="m",
            embedding=[1.0, 0.0, 0.0, 0.0],
            indexed_at=datetime.now(timezone.utc),
        )
        for name in columns:
            columns[name].append(row.get(name))
    elapsed = time.perf_counter() - start
    table = ImageTable.create(db, 4, "m", "m")
    table.writer.add(pa.table(columns, schema=table.schema))
    table.dataset.checkout_latest()
    return table, elapsed


def imagededup_phash() -> type:
    """imagededup's PHash class, importing only its hashing code: its package __init__
    files import the CNN and plotting modules (torch, torchvision, matplotlib)."""
    import imagededup

    root = Path(imagededup.__file__).parent
    for name in ("methods", "utils"):
        package = types.ModuleType(f"imagededup.{name}")
        package.__path__ = [str(root / name)]
        sys.modules[f"imagededup.{name}"] = package
    return importlib.import_module("imagededup.methods.hashing").PHash


def czkawka_measured(
    corpus: Path, truth: dict[str, str], tile_images: list, source: np.ndarray, tmp: Path
) -> Measured | None:
    """czkawka's engine (PyPI `czkawka`, bindings of the Rust tool) at its defaults: its
    groups of the corpus, and of the tiles written as PNG files."""
    try:
        from czkawka import ImageSimilarity
    except ImportError:
        print("czkawka is not installed (pip install czkawka): no czkawka anchor\n")
        return None

    def groups(folder: Path) -> list[list[str]]:
        finder = ImageSimilarity()
        finder.set_directories([folder])
        return [[str(p) for p in group] for group in finder.find_similar()]

    start = time.perf_counter()
    found = _pairs_of_groups(groups(corpus))
    elapsed = time.perf_counter() - start
    tiles_dir = tmp / "tiles"
    tiles_dir.mkdir()
    for k, tile in enumerate(tile_images):
        tile.save(tiles_dir / f"{k:05d}.png")
    i, j = np.triu_indices(len(tile_images), 1)
    cross = source[i] != source[j]
    n = len(tile_images)
    grouped = [
        sorted(int(Path(x).stem) for x in pair) for pair in _pairs_of_groups(groups(tiles_dir))
    ]
    codes = np.array([a * n + b for a, b in grouped], dtype=np.int64)
    false = np.isin(i[cross] * n + j[cross], codes)
    return Measured(
        "czkawka 0.1.2 (defaults)", _scores(found, truth), elapsed, _per_edit(found, truth), false
    )


def _pairs_of_groups(groups: list[list[str]]) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for g in groups for p in combinations(g, 2)}


def _clusters(edges: list[tuple[str, str]]) -> list[list[str]]:
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in edges:
        parent[root(a)] = root(b)
    clusters: dict[str, list[str]] = {}
    for x in parent:
        clusters.setdefault(root(x), []).append(x)
    return list(clusters.values())


def _scores(found: set[tuple[str, str]], truth: dict[str, str]) -> tuple[float, float, float]:
    sizes = Counter(truth.values())
    positives = sum(n * (n - 1) // 2 for n in sizes.values())
    hits = sum(truth[a] == truth[b] for a, b in found)
    precision = hits / len(found) if found else 1.0
    recall = hits / positives
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return precision, recall, f1


def _per_edit(found: set[tuple[str, str]], truth: dict[str, str]) -> dict[str, float]:
    """Per variant: the share of photos whose variant was paired with their original."""
    recall = {}
    for variant in VARIANTS:
        pairs = [
            tuple(sorted((p, p.replace("/edited/", "/").replace(f"--{variant}", ""))))
            for p in truth
            if p.endswith(f"--{variant}.jpg")
        ]
        recall[variant] = sum(pair in found for pair in pairs) / len(pairs)
    return recall


@dataclass(frozen=True)
class Measured:
    name: str
    scores: tuple[float, float, float]  # precision, recall, F1 over the corpus's pairs
    seconds: float  # grouping, hashes given
    per_edit: dict[str, float]
    false_matches: np.ndarray  # bool per pair of tiles of different photos


def tiles() -> tuple[list[Image.Image], np.ndarray]:
    """Each photo cut into TILE_GRID x TILE_GRID tiles, and the photo each tile comes from. Tiles
    of different photos are distinct pictures: many more negative pairs than photos."""
    cut, source = [], []
    for i, photo in enumerate(photos()):
        with Image.open(photo) as im:
            image = ImageOps.contain(im.convert("RGB"), (LONG_SIDE, LONG_SIDE))
        w, h = image.size
        for x in range(TILE_GRID):
            for y in range(TILE_GRID):
                box = (
                    x * w // TILE_GRID,
                    y * h // TILE_GRID,
                    (x + 1) * w // TILE_GRID,
                    (y + 1) * h // TILE_GRID,
                )
                cut.append(image.crop(box))
                source.append(i)
    return cut, np.array(source)


def _cross_photo_pairs(source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pair (i, j), i < j, of tiles of different photos."""
    i, j = np.triu_indices(len(source), 1)
    cross = source[i] != source[j]
    return i[cross], j[cross]


def _cross_photo_both(flags: list[bool], source: np.ndarray) -> np.ndarray:
    """For each pair of tiles of different photos, whether both tiles have the flag."""
    values = np.array(flags, dtype=bool)
    i, j = _cross_photo_pairs(source)
    return values[i] & values[j]


def _cross_photo_distances(hashes: list[int], source: np.ndarray) -> np.ndarray:
    values = np.array(hashes, dtype=np.uint64)
    i, j = _cross_photo_pairs(source)
    return np.bitwise_count(values[i] ^ values[j])


def edit_recall(measured: Measured) -> float:
    """Mean recall over the edits (not a plain copy, not a mirror)."""
    edits = [v for v in VARIANTS if v != "copy" and v not in NOT_COPIES]
    return float(np.mean([measured.per_edit[v] for v in edits]))


def library_f1(measured: Measured, photos: int, edited: float = 0.1) -> float:
    """Expected F1 over pairs for a library of `photos` distinct pictures, `edited` of
    which have one near-duplicate copy (an edit drawn uniformly from the corpus's):
    true pairs grow with the library, false ones with its square."""
    copies = photos * edited
    found = copies * edit_recall(measured)
    false = measured.false_matches.mean() * (photos + copies) * (photos + copies - 1) / 2
    return 2 * found / (2 * found + false + (copies - found))


def quality() -> None:
    tile_images, source = tiles()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        truth = {str(p): label for p, label in build_corpus(corpus).items()}
        files = sorted(map(Path, truth))
        table, hashing = photon_table(files, Path(tmp) / "db", SECOND_HASHES)
        # As indexed before this change (no whole-picture dHash), and before the second
        # hashes (pHash alone).
        previous, _ = photon_table(files, Path(tmp) / "previous", ("phash_trimmed", "dhash"))
        legacy, _ = photon_table(files, Path(tmp) / "legacy", ())
        tile_hashes = [perceptual_hashes(t) for t in tile_images]
        tile = {
            name: _cross_photo_distances(
                [int.from_bytes(getattr(h, name), "big") for h in tile_hashes], source
            )
            for name in ("phash", *SECOND_HASHES)
        }
        # Pairs of tiles whose dHashes both show detail (dedupe._detailed): the others'
        # hashes are no evidence, and the near tier never pairs them by them.
        detailed = {
            name: _cross_photo_both(
                [
                    _detailed(np.uint64(int.from_bytes(getattr(h, name), "big")))
                    for h in tile_hashes
                ],
                source,
            )
            for name in ("dhash", "dhash_whole")
        }
        by_whole = detailed["dhash_whole"]
        by_trimmed = detailed["dhash"]
        either = np.minimum(
            np.where(by_whole, tile["phash"], 64), np.where(by_trimmed, tile["phash_trimmed"], 64)
        )
        runs = [(t, verify, legacy if (t, verify) == (6, None) else table) for t, verify in RULES]
        runs.insert(3, (*PREVIOUS_RULE, previous))
        results = []
        for t, verify, rows in runs:
            start = time.perf_counter()
            # One embedding for every row (photon_table): the hashes alone decide. The
            # legacy table lacks the second hashes: pHash alone, as before them.
            groups = find_duplicates(
                rows,
                phash_distance=t,
                dhash_distance=63 if verify is None else verify,
                near_cosine=-1,
                similar_cosine=None,
            )
            elapsed = time.perf_counter() - start
            edges = [(g.keep, d) for g in groups for d in g.duplicates]
            found = _pairs_of_groups(_clusters(edges))
            if verify is None:
                name = "pHash" if t == 6 else "pHash or trimmed pHash"
                name, false = f"{name} ≤ {t} alone", (tile["phash"] if t == 6 else either) <= t
            elif rows is previous:
                name = f"two-stage before: either pHash ≤ {t}, then trimmed dHash ≤ {verify}"
                false = (either <= t) & (tile["dhash"] <= verify) & by_trimmed
            else:
                name = f"two-stage: either pHash ≤ {t}, then its picture's dHash ≤ {verify}"
                false = (by_whole & (tile["phash"] <= t) & (tile["dhash_whole"] <= verify)) | (
                    by_trimmed & (tile["phash_trimmed"] <= t) & (tile["dhash"] <= verify)
                )
            if (t, verify) == DEFAULT_RULE and rows is table:
                name += " (default)"
            results.append(
                Measured(
                    f"photon {name}", _scores(found, truth), elapsed, _per_edit(found, truth), false
                )
            )

        phasher = imagededup_phash()(verbose=False)
        start = time.perf_counter()
        encodings = phasher.encode_images(image_dir=corpus, recursive=True)
        encoding = time.perf_counter() - start
        start = time.perf_counter()
        duplicates = phasher.find_duplicates(
            encoding_map=encodings, max_distance_threshold=IMAGEDEDUP_THRESHOLD
        )
        elapsed = time.perf_counter() - start
        found = {
            tuple(sorted((str(corpus / a), str(corpus / b))))
            for a, others in duplicates.items()
            for b in others
        }
        tile_hashes = [
            int(phasher.encode_image(image_array=np.asarray(t)), 16) for t in tile_images
        ]
        results.append(
            Measured(
                f"imagededup PHash, threshold {IMAGEDEDUP_THRESHOLD}",
                _scores(found, truth),
                elapsed,
                _per_edit(found, truth),
                _cross_photo_distances(tile_hashes, source) <= IMAGEDEDUP_THRESHOLD,
            )
        )
        czkawka = czkawka_measured(corpus, truth, tile_images, source, Path(tmp))
        if czkawka is not None:
            results.append(czkawka)

    photographs = len(photos())
    positives = sum(n * (n - 1) // 2 for n in Counter(truth.values()).values())
    print(
        f"Corpus: {photographs} photographs (long side {LONG_SIDE} px) x "
        f"({len(VARIANTS) + 1} files: original and {', '.join(VARIANTS)}) + "
        f"{4 * photographs} quadrants as distinct pictures = {len(files)} files, "
        f"{len(files) * (len(files) - 1) // 2} pairs of which {positives} are duplicates.\n"
    )
    print(
        f"Hashing: photon {hashing:.1f} s (1 process, JPEG draft decode at {DRAFT[0]} px); "
        f"imagededup {encoding:.1f} s (its default {os.cpu_count()} processes, full decode).\n"
    )
    print("| method | precision | recall | F1 | recall over edits | grouping time |")
    print("|---|---|---|---|---|---|")
    for m in results:
        p, r, f = m.scores
        print(
            f"| {m.name} | {p:.3f} | {r:.3f} | {f:.3f} | {edit_recall(m):.3f} | "
            f"{m.seconds * 1000:.0f} ms |"
        )

    print("\nRecall per edit (share of photos whose edited copy is grouped with the original):\n")
    print("| method | " + " | ".join(VARIANTS) + " |")
    print("|---" * (len(VARIANTS) + 1) + "|")
    for m in results:
        print(f"| {m.name} | " + " | ".join(f"{m.per_edit[v]:.2f}" for v in VARIANTS) + " |")

    pairs = len(results[0].false_matches)
    print(
        f"\nFalse matches between distinct pictures: {len(tile_images)} tiles "
        f"({TILE_GRID}x{TILE_GRID} per photo), {pairs:,} pairs of tiles of different photos. "
        "Expected F1 for a library where 10 % of the pictures have one edited copy (an "
        "edit above but copy and mirror, uniformly):\n"
    )
    print("| method | false pairs | per pair | F1 at 1k | F1 at 10k | F1 at 100k pictures |")
    print("|---|---|---|---|---|---|")
    for m in results:
        f1s = " | ".join(f"{library_f1(m, n):.3f}" for n in (1_000, 10_000, 100_000))
        rate = m.false_matches.mean()
        print(f"| {m.name} | {m.false_matches.sum()} | {rate:.1e} | {f1s} |")


# Scale of the near tier.


def clustered_hashes(n: int, seed: int = 0, kinds: int = 1) -> list[np.ndarray]:
    """`kinds` columns of n 64-bit hashes: 90 % random, 10 % copies of those with 0-8
    bits flipped (a copy is a copy of the same row in every column)."""
    rng = np.random.default_rng(seed)
    distinct = n - n // 10
    sources = rng.integers(0, distinct, n // 10)
    columns = []
    for _ in range(kinds):
        hashes = rng.integers(0, 2**64, distinct, dtype=np.uint64)
        flips = rng.random((n // 10, 64)) < rng.integers(0, 9, (n // 10, 1)) / 64
        noise = np.packbits(flips, axis=1).view(">u8").reshape(-1).astype(np.uint64)
        columns.append(np.concatenate([hashes, hashes[sources] ^ noise]))
    return columns


SCALE_DIM = 128  # synthetic embeddings: copies close to their source, the rest random


def _synthetic_embeddings(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    distinct = n - n // 10
    sources = np.random.default_rng(seed).integers(0, distinct, n // 10)  # clustered_hashes'
    vectors = rng.normal(size=(n, SCALE_DIM)).astype(np.float32)
    vectors[distinct:] = vectors[sources] + rng.normal(0, 0.1, (n // 10, SCALE_DIM))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def all_pairs_labels(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """The baseline: every pair's Hamming distance, 1000 rows at a time, then union-find."""
    found = []
    for start in range(0, len(hashes), 1000):
        distance = np.bitwise_count(hashes[start : start + 1000, None] ^ hashes[None, start:])
        i, j = np.nonzero(distance <= max_distance)
        upper = j > i
        found.append(np.stack([i[upper], j[upper]], axis=1) + start)
    return _components(len(hashes), np.concatenate(found))


def _candidate_labels(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    return _components(len(hashes), _candidate_pairs(hashes, max_distance))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _synthetic_table(hashes: list[np.ndarray], db: Path) -> ImageTable:
    """A table of n rows carrying the hashes (phash and SECOND_HASHES) and
    embeddings, as the indexer would store them."""
    n = len(hashes[0])
    table = ImageTable.create(db, SCALE_DIM, "m", "m")
    # Paths as long as a real library's (about 70 characters): the near tier holds them all.
    folder = "/home/someone/Pictures/{}/Family trip {:04d}/IMG_{:08d}_HDR.jpg"
    paths = pa.array([folder.format(2000 + i // 100_000, i // 1000, i) for i in range(n)])

    def hash_column(values: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(values.astype(">u8").view(np.uint8)), 8)

    columns = {
        "path": paths,
        "content_hash": paths,
        **{
            name: hash_column(values)
            for name, values in zip(("phash", *SECOND_HASHES), hashes, strict=True)
        },
        "file_size": pa.array(np.full(n, 2_000_000, dtype=np.int64)),
        "mtime_ns": pa.array(np.arange(n, dtype=np.int64)),
        "width": pa.array(np.full(n, 4000, dtype=np.int32)),
        "height": pa.array(np.full(n, 3000, dtype=np.int32)),
        "format": pa.array(["JPEG"] * n),
        "taken_at": pa.nulls(n, pa.timestamp("us")),
        "camera": pa.nulls(n, pa.string()),
        "latitude": pa.nulls(n, pa.float64()),
        "longitude": pa.nulls(n, pa.float64()),
        "model": pa.array(["m"] * n),
        "embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(_synthetic_embeddings(n).ravel()), SCALE_DIM
        ),
        "indexed_at": pa.array(np.zeros(n, dtype="datetime64[us]")).cast(
            pa.timestamp("us", tz="UTC")
        ),
    }
    table.writer.add(pa.table(columns, schema=table.schema))
    table.dataset.checkout_latest()
    return table


def scale_one(method: str, n: int) -> None:
    """One measurement in this process, printed as JSON (run in a child for its peak RSS).
    The table is written by another child first, so its making is not in the peak."""
    cap_arenas()  # as Index.dedupe does
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "db"
        if method == "table":
            command = [sys.executable, __file__, "scale-table", str(n), str(db)]
            subprocess.run(command, check=True)
            table = ImageTable.open(db)
        else:
            (hashes,) = clustered_hashes(n)
        before = _peak_rss_mib()
        start = time.perf_counter()
        if method == "table":
            t, verify = DEFAULT_RULE
            found = find_duplicates(
                table, phash_distance=t, dhash_distance=verify, near_cosine=0.9, similar_cosine=None
            )
            groups = len(found)
        else:
            labels = (all_pairs_labels if method == "all-pairs" else _candidate_labels)(
                hashes, SCALE_DISTANCE
            )
            groups = int((np.bincount(labels) > 1).sum())
        elapsed = time.perf_counter() - start
    result = {"method": method, "n": n, "seconds": elapsed, "groups": groups}
    print(json.dumps({**result, "rss_before_mib": before, "peak_rss_mib": _peak_rss_mib()}))


def scale() -> None:
    runs = [
        ("all-pairs", 20_000),
        ("multi-index", 20_000),
        ("multi-index", 100_000),
        ("multi-index", 1_000_000),
        ("table", 100_000),
        ("table", 1_000_000),
    ]
    what = {
        "all-pairs": "all pairs (numpy, 1000-row blocks)",
        "multi-index": "`_candidate_pairs` (multi-index hashing, one pHash) + union-find",
        "table": "`find_duplicates` on a LanceDB table (read + exact + two-stage near tier)",
    }
    print(
        f"Near tier at T = {SCALE_DISTANCE}, hashes 90 % random, 10 % copies 0-8 bits off; "
        f"the table rows carry the four hashes made so, 70-character paths and {SCALE_DIM}-d "
        "embeddings (copies at cosine about 0.995), and run the default rule.\n"
    )
    print("| method | hashes | time | peak RSS (before the step) | groups |")
    print("|---|---|---|---|---|")
    for method, n in runs:
        child = subprocess.run(
            [sys.executable, __file__, "scale-one", method, str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(child.stdout)
        print(
            f"| {what[method]} | {n:,} | {r['seconds']:.2f} s | "
            f"{r['peak_rss_mib']:.0f} MiB ({r['rss_before_mib']:.0f}) | {r['groups']:,} |",
            flush=True,
        )


# Tier 3: how to find pairs of similar embeddings.


def unit_vectors(n: int, dim: int = 768) -> np.ndarray:
    """Random unit vectors, each odd one a noisy copy of the one before (cosine ~0.96)."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors[1::2] = vectors[0::2] + rng.normal(0, 0.3, (n // 2, dim))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _seconds_per_query(
    table: lancedb.table.Table, vectors: np.ndarray, ann: bool, queries: int = 200
) -> float:
    def query(v: np.ndarray) -> None:
        search = table.search(v, vector_column_name="embedding").distance_type("cosine")
        if ann:  # photon's search settings
            search = search.nprobes(20).refine_factor(10)
        search.limit(10).to_arrow()

    for v in vectors[:10]:  # warm up
        query(v)
    start = time.perf_counter()
    for v in vectors[10 : 10 + queries]:
        query(v)
    return (time.perf_counter() - start) / queries


def similar() -> None:
    small, large = 20_000, 100_000
    vectors = unit_vectors(large)
    start = time.perf_counter()
    pairs = cosine_pairs(vectors[:small], 0.92)
    product = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        db = lancedb.connect(tmp)
        tables = {}
        for n in (small, large):
            data = {
                "id": pa.array(np.arange(n)),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors[:n].ravel()), 768),
            }
            tables[n] = db.create_table(f"t{n}", pa.table(data))
        flat = _seconds_per_query(tables[small], vectors, ann=False)
        start = time.perf_counter()
        tables[large].create_index(
            metric="cosine",
            vector_column_name="embedding",
            num_partitions=large // 4096,
            num_sub_vectors=768 // 16,
        )
        build = time.perf_counter() - start
        ann = _seconds_per_query(tables[large], vectors, ann=True)

    print(f"Unit vectors of 768 dimensions, cosine >= 0.92 ({len(pairs):,} pairs at 20k).\n")
    print("| method | rows | time for every row | scaling |")
    print("|---|---|---|---|")
    print(f"| `cosine_pairs`: blocked matrix product (exact) | 20,000 | {product:.1f} s | n² |")
    print(
        f"| LanceDB flat query per row, top 10 | 20,000 | {flat * small:.0f} s "
        f"({flat * 1000:.1f} ms/query) | n² |"
    )
    print(
        f"| LanceDB IVF-PQ query per row (nprobes 20, refine 10), top 10 | 100,000 | "
        f"{ann * large:.0f} s ({ann * 1000:.1f} ms/query) + {build:.0f} s index build | "
        "about n |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what", choices=["fetch", "quality", "scale", "similar", "scale-one", "scale-table"]
    )
    parser.add_argument("args", nargs="*")
    args = parser.parse_args()
    if args.what == "scale-one":
        scale_one(args.args[0], int(args.args[1]))
    elif args.what == "scale-table":
        _synthetic_table(clustered_hashes(int(args.args[0]), kinds=4), Path(args.args[1]))
    else:
        {"fetch": fetch, "quality": quality, "scale": scale, "similar": similar}[args.what]()


if __name__ == "__main__":
    main()

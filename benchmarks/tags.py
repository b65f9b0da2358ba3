"""Zero-shot tags benchmark: precision and recall of the label-free rule with the tiny
model on freshly drawn pictures, and the time and peak memory of tagging a whole library
again (`photon tags --recompute`) from stored embeddings.

    python benchmarks/tags.py [--pictures 500] [--rows 100000 1000000] [--tags 5000]

Quality: pictures drawn with a seed no test or threshold choice used, indexed with
`siglip-tiny-shapes` (which tags them), scored per tag family against what was drawn.
Scale: random unit 768-d picture and tag embeddings with SigLIP base's logit scale and
bias; each recompute runs in a fresh process so its peak memory (VmHWM) is its own.
Writes benchmarks/results/tags.md; tables live under benchmarks/data/ (git-ignored) and
are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from search import arrow_rows  # benchmarks/search.py: run as a script, its folder is on the path

from photon_index.store.table import ImageTable

if TYPE_CHECKING:
    from photon_index.tags.run import Tagger

DATE = datetime.now().date().isoformat()  # the day this run started
ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "tags"
RESULTS = ROOT / "results" / "tags.md"
DIM = 768
SEED = 41  # the tests draw with 5, 99, 123 and 2027; the rule was chosen on 11
CHUNK = 100_000  # rows drawn and written at a time
# SigLIP base/16's constants (its config.json): the scale and bias real logits have.
SCALE, BIAS = 117.33, -12.93
TINY = "siglip-tiny-shapes"


# --- quality ----------------------------------------------------------------------------


def quality(pictures: int, work: Path) -> list[str]:
    from photon_index import Index
    from photon_index.config import Settings
    from photon_index.store.tags import TagStore
    from photon_index.synthetic import SHAPES, write_pictures

    drawn = write_pictures(work / "pictures", pictures, seed=SEED)
    index = Index(work / "db", settings=Settings.load())
    started = time.monotonic()
    index.update([work / "pictures"], model=TINY)
    seconds = time.monotonic() - started
    data = TagStore(work / "db").read(["path", "tags"]).to_pydict()
    got = dict(zip(data["path"], data["tags"], strict=True))

    # Per family: right = given tags that were drawn; given; truths = drawn tags.
    counts: dict[str, Counter[str]] = {"colour": Counter(), "background": Counter()}
    for path, scene in drawn:
        tags = set(got[str(path)])
        for family, truth in (
            ("colour", scene.colour),
            ("background", f"{scene.background} background"),
        ):
            given = {t for t in tags if t.endswith(" background") == (family == "background")}
            counts[family]["right"] += truth in given
            counts[family]["given"] += len(given)
            counts[family]["truths"] += 1
    total = counts["colour"] + counts["background"]

    # Why the tiny vocabulary has no shape tags: the nearest of the 8 shape captions.
    table = ImageTable.open(work / "db")
    assert table is not None
    stored = table.columns(["path", "embedding"]).to_pydict()
    vectors = dict(zip(stored["path"], stored["embedding"], strict=True))
    texts = index.embed_texts([f"a {shape}" for shape in SHAPES]).vectors
    best = [
        SHAPES[int(np.argmax(texts @ np.asarray(vectors[str(p)], np.float32)))] for p, _ in drawn
    ]
    top1 = np.mean([b == scene.shape for b, (_, scene) in zip(best, drawn, strict=True)])

    lines = [
        "### Precision and recall with the tiny model",
        "",
        f"{pictures} pictures drawn by `photon_index.synthetic.write_pictures` with seed "
        f"{SEED} (the tests use others; the rule's defaults were chosen on seed 11), "
        f"indexed and tagged by `Index.update(..., model='{TINY}')` in {seconds:.1f} s "
        "with the shipped `[tags]` settings (z = 1.5, floor 0.03, at most 10 a picture). "
        "Every picture has one true tag of each family.",
        "",
        "| family | tags given | right | precision | recall |",
        "|---|--:|--:|--:|--:|",
    ]
    for family, c in [*counts.items(), ("both", total)]:
        precision = c["right"] / c["given"] if c["given"] else float("nan")
        recall = c["right"] / c["truths"]
        lines.append(f"| {family} | {c['given']} | {c['right']} | {precision:.3f} | {recall:.3f} |")
    lines += [
        "",
        f"Shape, for comparison (not a tag): top-1 among the 8 shape captions "
        f'("a circle", ...) by cosine, {top1:.3f} (chance 0.125).',
        "",
    ]
    return lines


# --- scale ------------------------------------------------------------------------------


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write_library(db: Path, rows: int) -> float:
    shutil.rmtree(db, ignore_errors=True)
    rng = np.random.default_rng(SEED)
    started = time.monotonic()
    table = ImageTable.create(db, DIM, "bench-768", "bench-768")
    for start in range(0, rows, CHUNK):
        vectors = unit(rng, min(CHUNK, rows - start))
        table.writer.add(arrow_rows(start, vectors, table.schema))
    return time.monotonic() - started


def recompute(db: Path, tags: int) -> dict[str, float]:
    """One full tagging pass, in this process (run as a child: see main)."""
    from photon_index.config import Settings
    from photon_index.models.installed import ModelFiles
    from photon_index.store.tags import TagStore
    from photon_index.tags.run import Tagger
    from photon_index.tags.scoring import Rule
    from photon_index.tags.vocabulary import TEMPLATES, Tag, Vocabulary

    settings = Settings.load().tags
    table = ImageTable.open(db)
    assert table is not None
    model = ModelFiles("bench-768", db, "", "", SCALE, BIAS, {})
    vocabulary = Vocabulary(tuple(Tag(f"tag {i}") for i in range(tags)), TEMPLATES, "bench")
    shutil.rmtree(db / "tags.lance", ignore_errors=True)
    tagger = Tagger(
        table=table,
        store=TagStore(db),
        vocabulary=vocabulary,
        embeddings=unit(np.random.default_rng(SEED + 1), tags),
        model=model,
        rule=Rule(settings.z, settings.floor, settings.max_per_picture),
        sample_rows=settings.sample_rows,
        block_rows=settings.block_rows,
    )
    before = _status("VmHWM")
    report = tagger.run(full=True)
    return {
        "seconds": report.seconds,
        "matmul": _matmul_seconds(tagger, table.count()),
        "pictures": report.pictures,
        "tagged": report.tagged,
        "hwm_before_mb": before,
        "hwm_mb": _status("VmHWM"),
    }


def _matmul_seconds(tagger: Tagger, rows: int) -> float:
    """The pass's floor, timed in the same process right after it: the logits matrix
    product alone over every row (a few blocks, scaled up), so the share of a pass
    spent elsewhere is a ratio of one run on this shared machine."""
    from photon_index.tags.scoring import logits

    blocks = 8
    vectors = unit(np.random.default_rng(SEED + 2), tagger.block_rows)
    started = time.monotonic()
    for _ in range(blocks):
        logits(vectors, tagger.embeddings, tagger.model)
    return (time.monotonic() - started) / blocks * (rows / tagger.block_rows)


def _status(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scale(rows_list: list[int], tag_counts: list[int]) -> list[str]:
    from photon_index.config import Settings

    settings = Settings.load().tags
    lines = [
        "### Recompute time and peak memory",
        "",
        f"`Tagger.run(full=True)` (what `photon tags --recompute` and `Index.retag()` run) "
        f"on a table of random unit {DIM}-d embeddings, with random unit tag embeddings "
        f"and SigLIP base's logit scale {SCALE} and bias {BIAS}: thresholds from a sample "
        f"of {settings.sample_rows:,} rows, then every row scored in blocks of "
        f"{settings.block_rows:,} and the tags table written anew. Random vectors are a "
        "worst case for the tags written: nearly every picture clears the floor for many "
        "tags and keeps 10. Each pass in a fresh process; peak = that process's VmHWM, "
        "`before` = after imports and opening the table.",
        "",
        "| rows | tags | seconds | matmul alone s | rows/s | peak RSS MB | before MB "
        "| pictures with tags |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for rows in rows_list:
        db = DATA / f"rows-{rows}"
        written = write_library(db, rows)
        print(f"wrote {rows:,} rows in {written:.0f} s", flush=True)
        for tags in tag_counts:
            child = [sys.executable, __file__, "--child", str(db), str(tags)]
            out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.splitlines()[-1])
            print(f"{rows:,} rows x {tags:,} tags: {r}", flush=True)
            lines.append(
                f"| {rows:,} | {tags:,} | {r['seconds']:.1f} | {r['matmul']:.1f} "
                f"| {rows / r['seconds']:,.0f} "
                f"| {r['hwm_mb']:,.0f} | {r['hwm_before_mb']:,.0f} "
                f"| {r['tagged']:,} of {r['pictures']:,} |"
            )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pictures", type=int, default=500)
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--tags", type=int, nargs="*", default=[5_000])
    parser.add_argument("--keep", action="store_true", help="keep the tables in benchmarks/data")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(recompute(Path(args.child[0]), int(args.child[1]))))
        return

    from photon_index.tags.vocabulary import load_vocabulary

    command = "python benchmarks/tags.py " + shlex.join(sys.argv[1:])
    started = time.monotonic()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as home:
        os.environ["PHOTON_HOME"] = home  # no user config, a fresh text-embedding cache
        default = len(load_vocabulary(Path(home)).tags)  # photon's default vocabulary
        lines = [
            "# Zero-shot tags benchmark",
            "",
            f"Date: {DATE}. Command: `{command.strip()}`. Machine: {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {platform.machine()}. Load average at "
            f"start {load}; shared with other jobs, so compare rows of one run.",
            "",
            *quality(args.pictures, Path(home) / "quality"),
            *scale(args.rows, sorted({default, *args.tags})),
        ]
    if not args.keep:
        shutil.rmtree(DATA, ignore_errors=True)
    lines.append(f"`{command.strip()}`: {time.monotonic() - started:.0f} s.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

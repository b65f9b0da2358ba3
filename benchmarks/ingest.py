"""Indexing throughput on real photographs: `photon index` end to end against the bare
model on ready-made tensors (its ceiling), and peak memory as the library grows.

The photos come from Debian's wallpaper packages; thousands of distinct JPEGs (crops,
flips, sizes 1024-4000 px, quality 85-95) are made from them in benchmarks/data/ on
first run. The machine is shared, so a ceiling and its end-to-end run alternate within
one run and only their ratios are meant to be compared across machines.

    python benchmarks/ingest.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import random
import resource
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

from photon_index.config import Settings
from photon_index.decode import decode, read_bytes
from photon_index.embed.encoder import ImageEncoder
from photon_index.hashing import content_hash, phash
from photon_index.models.installed import read_model_dir
from photon_index.models.registry import BUNDLED_DIR

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data" / "photos"
RESULTS = ROOT / "benchmarks" / "results" / "ingest.md"
DATE = time.strftime("%Y-%m-%d")  # the day this run started, written into its results
SHARD = 100  # files per corpus folder: a run over N images indexes the first N/100 folders
BACKGROUNDS = Path("/usr/share/backgrounds")
# Only the packages' real photographs; their illustrations and gradients are left out.
PHOTOS = {
    "lomiri-wallpapers-16.04": [
        "Bridge_by_Sander_Klootwijk.jpg",
        "Dragonfly_by_Bolly.jpg",
        "Picture_0B_by_freespace.jpg",
        "Picture_1A_by_freespace.jpg",
        "Wine_by_Jakkub_Mede.jpg",
        "aitzgorri_by_Aitzol_Berasategi.jpg",
        "analogpattern_by_Peter_Nerlich.jpg",
        "free_by_Peter_Nerlich.jpg",
        "friends_by_Aitzol_Berasategi.jpg",
        "greentock_by_Peter_Nerlich.jpg",
        "life_by_Aitzol_Berasategi.jpg",
        "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "seeding_by_Clements_Engelhardt.jpg",
        "sunset_by_Aitzol_Berasategi.jpg",
    ],
    "lomiri-wallpapers-20.04": ["Kleiber_by_Lukas_Baubkus.jpg"],
    "mate-backgrounds": [
        f"mate/nature/{name}.jpg"
        for name in (
            *("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow"),
            *("LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower"),
        )
    ],
}


@dataclass(frozen=True)
class Plan:
    base_images: int  # per base-sized comparison: the base model runs ~5 img/s here
    tiny_images: int
    memory_sizes: tuple[int, int]
    rounds: int  # ceiling/end-to-end pairs per model, alternating which goes first


FULL = Plan(base_images=256, tiny_images=2000, memory_sizes=(2000, 10000), rounds=2)
QUICK = Plan(base_images=100, tiny_images=500, memory_sizes=(200, 1000), rounds=1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--tiny", type=Path, help="tiny model folder (default: bundled)")
    parser.add_argument("--base", type=Path, default=ROOT / "bench-models/siglip-base-random")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="ORT threads per worker")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


# --- the corpus ------------------------------------------------------------------------


def source_photos() -> list[Path]:
    paths = [BACKGROUNDS / name for names in PHOTOS.values() for name in names]
    if not all(p.is_file() for p in paths):
        sys.exit(f"the source photographs are missing: apt-get install {' '.join(PHOTOS)}")
    return paths


def corpus_path(index: int) -> Path:
    return DATA / f"{index // SHARD:03d}" / f"{index:05d}.jpg"


def ensure_corpus(count: int) -> list[Path]:
    """The folders holding the first `count` corpus files, making the missing ones."""
    missing = [i for i in range(count) if not corpus_path(i).is_file()]
    if missing:
        print(f"making {len(missing)} photos in {DATA} (once) ...", flush=True)
        with mp.get_context("spawn").Pool(2, _load_sources, (source_photos(),)) as pool:
            for done, _ in enumerate(pool.imap_unordered(_make_variant, missing, 16), 1):
                if done % 1000 == 0:
                    print(f"  {done}/{len(missing)}", flush=True)
    return [DATA / f"{shard:03d}" for shard in range(-(-count // SHARD))]


_sources: list[Image.Image] = []


def _load_sources(paths: list[Path]) -> None:
    for path in paths:
        with Image.open(path) as im:
            _sources.append(ImageOps.exif_transpose(im).convert("RGB"))


def _make_variant(index: int) -> None:
    """A distinct JPEG: a random crop of a source, maybe mirrored, at a random size."""
    rng = random.Random(index)
    source = _sources[index % len(_sources)]
    w, h = source.size
    cw, ch = int(w * rng.uniform(0.55, 1.0)), int(h * rng.uniform(0.55, 1.0))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    image = source.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = rng.randint(1024, 4000) / max(cw, ch)
    image = image.resize((round(cw * scale), round(ch * scale)), Image.Resampling.BILINEAR)
    path = corpus_path(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    image.save(tmp, format="JPEG", quality=rng.randint(85, 95))
    os.replace(tmp, path)


def first_files(roots: list[Path], count: int) -> list[Path]:
    return [p for root in roots for p in sorted(root.glob("*.jpg"))][:count]


# --- the model's ceiling ---------------------------------------------------------------


@dataclass(frozen=True)
class Ceiling:
    rate: float  # images/s
    cpu_ms: float  # CPU time per image, which others' load on the machine hardly changes


def ceiling(model: Path, images: int, args: argparse.Namespace) -> Ceiling:
    """The vision tower alone on ready-made batches, in the pipeline's layout of processes
    and threads; model loading and a warm-up batch are not timed."""
    ctx = mp.get_context("spawn")
    batches = -(-images // (args.workers * args.batch))
    barrier = ctx.Barrier(args.workers)
    pipes = [ctx.Pipe(duplex=False) for _ in range(args.workers)]
    procs = [
        ctx.Process(
            target=_ceiling_worker, args=(model, args.threads, args.batch, batches, barrier, send)
        )
        for _, send in pipes
    ]
    for proc in procs:
        proc.start()
    spans = [receive.recv() for receive, _ in pipes]
    for proc in procs:
        proc.join()
    elapsed = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    total = batches * args.batch * args.workers
    return Ceiling(total / elapsed, sum(cpu for _, _, cpu in spans) * 1000 / total)


def _ceiling_worker(
    model: Path, threads: int, batch: int, batches: int, barrier: object, out: Connection
) -> None:
    encoder = ImageEncoder(read_model_dir(model), device="cpu", threads=threads)
    size = (batch, 3, encoder.preprocess.height, encoder.preprocess.width)
    pixels = np.random.default_rng(0).uniform(-1, 1, size).astype(np.float32)
    encoder.run(pixels)
    barrier.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        encoder.run(pixels)
    out.send((start, time.perf_counter(), time.process_time() - cpu))


# --- end to end ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    indexed: int
    failed: int
    elapsed: float  # IndexReport.elapsed: Ingest.run, pool start to final optimize
    startup: float  # from Ingest.run's start until the workers had loaded the model
    create_table: float  # Index.update before Ingest.run (a fresh DB opens the model)
    optimize: float  # the final table.optimize()
    main_cpu: float  # CPU seconds of the indexing process
    workers_cpu: float  # CPU seconds of its worker processes
    # Peak memory. Not getrusage's ru_maxrss: Linux keeps it across exec, so a spawned
    # process would report the RSS of the process it was forked from.
    indexer_peak_mb: float  # VmHWM of the indexing process
    worker_peak_mb: float = 0.0  # the largest worker's RSS, sampled
    tree_peak_mb: float = 0.0  # the indexer's and its workers' RSS summed, sampled

    @property
    def rate(self) -> float:
        return self.indexed / self.elapsed

    @property
    def steady_rate(self) -> float:
        return self.indexed / (self.elapsed - self.startup)

    @property
    def cpu_ms(self) -> float:
        """CPU time of the indexer and its workers per image, start-up included."""
        return (self.main_cpu + self.workers_cpu) * 1000 / self.indexed


def end_to_end(model: Path, roots: list[Path], args: argparse.Namespace) -> Run:
    """`photon index` on roots into a fresh database, in its own process so that its
    peak memory is its own; the process tree's RSS is sampled from outside."""
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    home = Path(tempfile.mkdtemp(prefix="photon-bench-"))
    try:
        proc = ctx.Process(target=_index_child, args=(model, roots, home, args, send))
        proc.start()
        peak = PeakRss(proc.pid)
        run = receive.recv()
        proc.join()
        peak.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if isinstance(run, str):
        raise RuntimeError(run)
    workers = [kb for pid, kb in peak.each.items() if pid != proc.pid]
    return Run(**run, worker_peak_mb=max(workers) / 1024, tree_peak_mb=peak.total / 1024)


def _index_child(
    model: Path, roots: list[Path], home: Path, args: argparse.Namespace, out: Connection
) -> None:
    # Imported here, not at the top: spawned workers re-import this script as their
    # __main__, and the real CLI's workers don't carry LanceDB.
    import photon_index.ingest.run as ingest
    from photon_index.index import Index
    from photon_index.store.table import ImageTable

    marks: dict[str, float] = {}
    ingest.EmbedPool = _marking(ingest.EmbedPool, marks)
    ImageTable.optimize = _timed(ImageTable.optimize, marks, "optimize")
    settings = (
        Settings.load({"PHOTON_HOME": str(home)})  # no user config file or PHOTON_* variables
        .with_overrides("model", device="cpu", threads=args.threads)
        .with_overrides("index", workers=args.workers, batch_size=args.batch)
    )
    try:
        start = time.monotonic()
        report = Index(home / "db", settings=settings).update(roots, model=str(model))
        end = time.monotonic()
    except Exception as e:
        out.send(f"{type(e).__name__}: {e}")
        return
    me, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    run_start = end - report.elapsed
    out.send(
        dict(
            indexed=report.indexed,
            failed=report.failed,
            elapsed=report.elapsed,
            startup=marks["ready"] - run_start,
            create_table=run_start - start,
            optimize=marks["optimize"],
            main_cpu=me.ru_utime + me.ru_stime,
            workers_cpu=kids.ru_utime + kids.ru_stime,
            indexer_peak_mb=_status_kb(os.getpid(), "VmHWM") / 1024,
        )
    )


def _marking(pool_class: type, marks: dict[str, float]) -> type:
    """The pool class, noting when its workers are ready; nothing else changes."""

    class Marked(pool_class):  # type: ignore[misc, valid-type]
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, **kw)
            marks["ready"] = time.monotonic()

    return Marked


def _timed(method: Callable, marks: dict[str, float], name: str) -> Callable:
    def timed(*a: object, **kw: object) -> object:
        start = time.monotonic()
        try:
            return method(*a, **kw)
        finally:
            marks[name] = time.monotonic() - start

    return timed


class PeakRss:
    """Samples the RSS of a process and all its descendants from /proc: the peak of
    each (kB, by pid) and of their sum."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.each: dict[int, int] = {}
        self.total = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            now = {pid: _status_kb(pid, "VmRSS") for pid in _tree(self.pid)}
            for pid, kb in now.items():
                self.each[pid] = max(self.each.get(pid, 0), kb)
            self.total = max(self.total, sum(now.values()))


def _tree(pid: int) -> Iterator[int]:
    yield pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return
    for child in children:
        yield from _tree(int(child))


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- where one image's time goes -------------------------------------------------------


def stage_costs(files: list[Path], models: dict[str, Path], batch: int) -> dict[str, float]:
    """Milliseconds per image of each step, run one after another on one core."""
    timings: dict[str, float] = {}

    def clock(name: str, work: Callable[[], object]) -> object:
        start = time.perf_counter()
        result = work()
        timings[name] = (time.perf_counter() - start) * 1000 / len(files)
        return result

    datas = clock("read file (main + again in worker)", lambda: [read_bytes(f) for f in files])
    clock("content hash, BLAKE2b (main)", lambda: [content_hash(d) for d in datas])
    encoder = ImageEncoder(read_model_dir(next(iter(models.values()))), device="cpu", threads=1)
    size = (encoder.preprocess.width, encoder.preprocess.height)
    images = clock(
        "decode, JPEG draft + EXIF (worker)",
        lambda: [decode(d, max_pixels=10**9, draft=size).image for d in datas],
    )
    clock("perceptual hash (worker)", lambda: [phash(i) for i in images])
    pixels = clock("preprocess to tensor (worker)", lambda: encoder.preprocess(images))
    for name, model in models.items():
        encoder = ImageEncoder(read_model_dir(model), device="cpu", threads=1)
        encoder.run(pixels[:batch])  # warm-up
        clock(
            f"vision tower, {name} (worker)",
            lambda e=encoder: [e.run(pixels[i : i + batch]) for i in range(0, len(files), batch)],
        )
    return timings


# --- the report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    model: str
    images: int
    ceilings: list[Ceiling]
    runs: list[Run]

    @property
    def ceiling(self) -> float:
        return statistics.median(c.rate for c in self.ceilings)

    def median(self, value: Callable[[Run], float]) -> float:
        return statistics.median(value(r) for r in self.runs)

    def ratio(self, value: Callable[[Run], float]) -> float:
        """The median over rounds of a run's rate / the ceiling measured next to it."""
        pairs = zip(self.ceilings, self.runs, strict=True)
        return statistics.median(value(r) / c.rate for c, r in pairs)

    @property
    def cpu_ratio(self) -> float:
        ceiling = statistics.median(c.cpu_ms for c in self.ceilings)
        return ceiling / self.median(lambda r: r.cpu_ms)


def compare(
    name: str, model: Path, images: int, args: argparse.Namespace, rounds: int
) -> Comparison:
    """Alternate ceiling and end-to-end runs so that others' load hits both alike."""
    roots = ensure_corpus(images)
    ceilings: list[Ceiling] = []
    runs: list[Run] = []
    steps = [
        lambda: ceilings.append(ceiling(model, images, args)),
        lambda: runs.append(end_to_end(model, roots, args)),
    ]
    for round_ in range(rounds):
        for step in steps if round_ % 2 == 0 else steps[::-1]:
            step()
        print(
            f"  {name} round {round_ + 1}: ceiling {ceilings[-1].rate:.2f} img/s, "
            f"end to end {runs[-1].rate:.2f} img/s",
            flush=True,
        )
    return Comparison(name, images, ceilings, runs)


def corpus_stats(files: list[Path]) -> str:
    megapixels = [_megapixels(f) for f in files]
    megabytes = [f.stat().st_size / 1e6 for f in files]
    return (
        f"{statistics.mean(megapixels):.1f} Mpx and {statistics.mean(megabytes):.2f} MB "
        f"on average ({min(megapixels):.1f}-{max(megapixels):.1f} Mpx)"
    )


def _megapixels(path: Path) -> float:
    with Image.open(path) as im:
        return im.width * im.height / 1e6


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def render(
    comparisons: list[Comparison],
    memory: list[Run],
    costs: dict[str, float],
    context: dict[str, str],
    args: argparse.Namespace,
) -> str:
    lines = [
        "# Indexing throughput: end to end vs the model's ceiling",
        "",
        f"- Date: {DATE}. Command: `{context['command']}` ({context['minutes']} min).",
        f"- Machine: {os.cpu_count()} cores ({cpu_name()}), "
        f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB, "
        f"shared with other engineers' jobs. Load average at start {context['load_start']}, "
        f"at end {context['load_end']}.",
        f"- Python {platform.python_version()}, onnxruntime {ort.__version__}, "
        f"device cpu, {args.workers} worker processes x {args.threads} ORT thread, "
        f"batch {args.batch}.",
        f"- Corpus: {context['corpus']}",
        "- Ceiling: each worker process runs the vision tower (photon's ImageEncoder.run) "
        "on one ready-made float32 batch, over and over; model load and a warm-up batch "
        "are not timed. End to end: `Index(fresh db).update(folders)` in a fresh process; "
        "img/s = IndexReport.indexed / IndexReport.elapsed, which includes starting the "
        'workers (model load), the final commit and `optimize()`. "Excl. load" leaves out '
        "the time until the workers had loaded the model. Ceiling and end to end "
        "alternate (ABBA...); rates are medians over rounds, and a ratio is the median of "
        "each round's end to end / the ceiling measured next to it.",
        "- Others' jobs change the cores this run gets from minute to minute, so the wall "
        "ratios are noisy. CPU time per image hardly depends on that load: the CPU ratio "
        "is ceiling CPU ms/img / end-to-end CPU ms/img (indexer + workers, start-up "
        "included), i.e. the share of all CPU spent in the vision tower.",
        "",
        "| model | images | ceiling img/s | e2e img/s | **e2e / ceiling** "
        "| e2e excl. load img/s | excl. load / ceiling | ceiling CPU ms/img "
        "| e2e CPU ms/img | **CPU ratio** | model load s | fresh-DB set-up s | optimize s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c.model} | {c.images} | {c.ceiling:.2f} | {c.median(lambda r: r.rate):.2f} "
            f"| **{c.ratio(lambda r: r.rate):.2f}** | {c.median(lambda r: r.steady_rate):.2f} "
            f"| {c.ratio(lambda r: r.steady_rate):.2f} "
            f"| {statistics.median(x.cpu_ms for x in c.ceilings):.1f} "
            f"| {c.median(lambda r: r.cpu_ms):.1f} | **{c.cpu_ratio:.2f}** "
            f"| {c.median(lambda r: r.startup):.1f} | {c.median(lambda r: r.create_table):.1f} "
            f"| {c.median(lambda r: r.optimize):.2f} |"
        )
    lines += ["", "Rounds (ceiling / end to end, img/s):", ""]
    for c in comparisons:
        pairs = zip(c.ceilings, c.runs, strict=True)
        lines.append(f"- {c.model}: " + ", ".join(f"{x.rate:.2f} / {r.rate:.2f}" for x, r in pairs))
    lines += [
        "",
        "## CPU per image in the end-to-end runs",
        "",
        "Worker busy = the workers' CPU time / (workers x wall time): below 1 means they "
        "waited for work or for a core.",
        "",
        "| model | indexer process ms CPU/img | workers ms CPU/img | worker busy |",
        "|---|--:|--:|--:|",
    ]
    for c in comparisons:
        run = c.runs[0]
        lines.append(
            f"| {c.model} | {run.main_cpu * 1000 / run.indexed:.1f} | "
            f"{run.workers_cpu * 1000 / run.indexed:.1f} | "
            f"{run.workers_cpu / (args.workers * run.elapsed):.2f} |"
        )
    lines += [
        "",
        "## Memory as the library grows (tiny model)",
        "",
        "Peak RSS of the indexing process and its workers summed, and of the largest "
        "worker, sampled every 0.1 s from /proc; the indexer's own peak is its VmHWM. "
        "(getrusage's ru_maxrss is no use here: Linux keeps it across exec, so a spawned "
        "process reports the size of the one it was forked from.)",
        "",
        "| images | end to end img/s | peak RSS, all processes MB | indexer peak MB "
        "| largest worker peak MB | indexer CPU ms/img | workers CPU ms/img |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for size, run in zip(context["memory_sizes"], memory, strict=True):
        lines.append(
            f"| {size} | {run.rate:.1f} | {run.tree_peak_mb:.0f} | {run.indexer_peak_mb:.0f} "
            f"| {run.worker_peak_mb:.0f} | {run.main_cpu * 1000 / run.indexed:.1f} "
            f"| {run.workers_cpu * 1000 / run.indexed:.1f} |"
        )
    small, large = memory
    extra = large.indexed - small.indexed
    lines += [
        "",
        "Marginal CPU per image (the difference of the two runs, so fixed start-up costs "
        f"cancel): indexer {(large.main_cpu - small.main_cpu) * 1000 / extra:.1f} ms, "
        f"workers {(large.workers_cpu - small.workers_cpu) * 1000 / extra:.1f} ms.",
    ]
    lines += [
        "",
        f"## Where one image's time goes ({context['cost_files']} corpus files, one core, "
        "one step after another)",
        "",
        "| step | ms per image |",
        "|---|--:|",
        *(f"| {step} | {ms:.1f} |" for step, ms in costs.items()),
        "",
    ]
    return "\n".join(lines)


def default_tiny() -> Path:
    bundled = BUNDLED_DIR / "siglip-tiny-shapes"
    return bundled if (bundled / "photon.json").is_file() else Path("/tmp/tiny-bench")


def main() -> None:
    args = parse_args()
    plan = QUICK if args.quick else FULL
    models = {"tiny": args.tiny or default_tiny(), "base fp32": args.base}
    models["base int8"] = args.base.with_name(args.base.name + "-int8")
    for path in models.values():
        if not (path / "photon.json").is_file():
            sys.exit(f"no model at {path}: run `python tools/make_bench_model.py --quantize`")
    load_start = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    started = time.monotonic()
    largest = max(plan.memory_sizes)
    files = first_files(ensure_corpus(largest), largest)
    cost_files = files[:96]
    sizes = {"tiny": plan.tiny_images, "base fp32": plan.base_images, "base int8": plan.base_images}
    comparisons = [compare(n, models[n], sizes[n], args, plan.rounds) for n in models]
    print("memory ...", flush=True)
    memory = [end_to_end(models["tiny"], ensure_corpus(n), args) for n in plan.memory_sizes]
    print("timing each step on one core ...", flush=True)  # last: it loads every model here
    costs = stage_costs(cost_files, models, args.batch)
    context = {
        "command": shlex.join(["python", *sys.argv]),
        "minutes": f"{(time.monotonic() - started) / 60:.0f}",
        "load_start": load_start,
        "load_end": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
        "corpus": f"{len(files)} distinct JPEGs made from {len(source_photos())} photographs "
        f"in Debian's {', '.join(PHOTOS)} packages: crops of 55-100% per side, half of them "
        f"mirrored, long side 1024-4000 px, quality 85-95; {corpus_stats(files)}. "
        "Read from the page cache.",
        "cost_files": str(len(cost_files)),
        "memory_sizes": plan.memory_sizes,
    }
    text = render(comparisons, memory, costs, context, args)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

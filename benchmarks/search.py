"""Search benchmark: ANN recall@10 and latency against exact search, the row count where
an ANN index starts to pay, and the wall time of a whole `photon search` process.

    python benchmarks/search.py [--rows 100000 1000000] [--quick]

Vectors are synthetic but shaped like image embeddings (see `Space`): uniform noise
would be the known worst case for IVF/PQ and unlike anything a photo library holds.
Writes benchmarks/results/search.md; tables live under benchmarks/data/ (git-ignored)
and are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
from lancedb.index import HnswSq, IvfPq

from photon_index.store.table import ImageTable, Nearest

DATE = datetime.now().date().isoformat()  # the day this run started
ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data" / "search"
RESULTS = ROOT / "results" / "search.md"
DIM = 768
K = 10
CENTRES = 4096
ENV = dict(os.environ)
FEW = slice(0, 50)  # queries timed for flat search: slow on big tables, and steady
SEED = 7
COLUMNS = ["path", "taken_at", "width", "height", "_distance"]  # what Searcher selects
# `--in FOLDER` filters as Searcher writes them: (SQL, rows kept). Folders are spread
# evenly over the clusters, so a filter is unrelated to content: the hard case for IVF.
FILTERS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "10 %": ("starts_with(path, '/photos/3/')", lambda ids: ids % 10 == 3),
    "1 %": ("starts_with(path, '/photos/3/43/')", lambda ids: ids % 100 == 43),
    "0.1 %": ("starts_with(path, '/photos/3/43/343/')", lambda ids: ids % 1000 == 343),
}
# What photon's searches use: the shipped defaults (configs/default.toml).
PHOTON = Nearest(nprobes=20, refine_factor=10, exact_below=5_000)


# --- data -------------------------------------------------------------------------------


class Space:
    """A mixture of CENTRES Gaussian clusters with lognormal sizes, around a common
    offset, with a power-law spectrum in a random basis, L2-normalised: like real
    embeddings, a query's 10th neighbour sits at cosine ~0.85 while unrelated pictures
    still share a cosine of ~0.2, and a few hundred directions carry most variance."""

    def __init__(self, dim: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
        spectrum = np.arange(1, dim + 1, dtype=np.float32) ** -0.5
        self.spectrum = spectrum / np.linalg.norm(spectrum)
        offset = rng.standard_normal(dim).astype(np.float32)
        self.offset = 0.6 * offset / np.linalg.norm(offset)
        self.centres = self._shaped(CENTRES)
        weights = rng.lognormal(0.0, 1.0, CENTRES)
        self.weights = weights / weights.sum()

    def _shaped(self, n: int) -> np.ndarray:
        noise = self.rng.standard_normal((n, len(self.spectrum)), dtype=np.float32)
        return (noise * self.spectrum) @ self.rotation

    def draw(self, n: int, chunk: int = 100_000) -> np.ndarray:
        out = np.empty((n, len(self.spectrum)), dtype=np.float32)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            labels = self.rng.choice(CENTRES, m, p=self.weights)
            x = self.offset + self.centres[labels] + 0.5 * self._shaped(m)
            out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def path_of(i: int) -> str:
    return f"/photos/{i % 10}/{i % 100:02d}/{i % 1000:03d}/{i:07d}.jpg"


def id_of(path: str) -> int:
    return int(path[-11:-4])


def arrow_rows(start: int, vectors: np.ndarray, schema: pa.Schema) -> pa.Table:
    """Rows with real embeddings and cheap but valid values everywhere else."""
    n, dim = vectors.shape
    ids = range(start, start + n)
    now = np.full(n, np.datetime64(datetime.now(timezone.utc).replace(tzinfo=None), "us"))
    columns = {
        "path": pa.array([path_of(i) for i in ids]),
        "content_hash": pa.array([f"{i:064x}" for i in ids]),
        "phash": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * 8, np.uint8)), 8),
        "file_size": pa.array(np.full(n, 2_000_000, np.int64)),
        "mtime_ns": pa.array(np.arange(start, start + n, dtype=np.int64) * 10**9),
        "width": pa.array(np.full(n, 4032, np.int32)),
        "height": pa.array(np.full(n, 3024, np.int32)),
        "format": pa.array(["JPEG"] * n),
        "model": pa.array([schema.metadata[b"photon.model"].decode()] * n),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
        "indexed_at": pa.array(now).cast(pa.timestamp("us", tz="UTC")),
    }
    arrays = [columns.get(f.name, pa.nulls(n, f.type)) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table(db: Path, vectors: np.ndarray, model: str, model_ref: str) -> ImageTable:
    shutil.rmtree(db, ignore_errors=True)
    table = ImageTable.create(db, vectors.shape[1], model, model_ref)
    for start in range(0, len(vectors), 100_000):
        table.writer.add(arrow_rows(start, vectors[start : start + 100_000], table.schema))
    table.dataset.checkout_latest()
    return table


def exact_top(
    vectors: np.ndarray, queries: np.ndarray, keep: Callable[[np.ndarray], np.ndarray] | None = None
) -> np.ndarray:
    """Ids of each query's K nearest by cosine (the vectors are unit length), among the
    rows keep() selects by id."""
    ids = np.arange(len(vectors))
    if keep is not None:
        ids = ids[keep(ids)]
    scores = np.concatenate(
        [queries @ vectors[ids[s : s + 200_000]].T for s in range(0, len(ids), 200_000)], axis=1
    )
    return ids[np.argpartition(-scores, K, axis=1)[:, :K]]


# --- queries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    nprobes: int = 20
    refine: int | None = None
    ef: int | None = None
    flat: bool = False
    photon: bool = False  # ImageTable.nearest with PHOTON: what `photon search` runs

    def label(self) -> str:
        if self.flat:
            return "flat (exact)"
        if self.photon:
            return "photon's policy (ImageTable.nearest)"
        parts = [f"nprobes {self.nprobes}"]
        parts += [f"refine {self.refine}"] if self.refine else []
        parts += [f"ef {self.ef}"] if self.ef else []
        return ", ".join(parts)


@dataclass(frozen=True)
class Measured:
    recall: float
    p50_ms: float
    p95_ms: float


def search_ids(table: ImageTable, vector: np.ndarray, probe: Probe, where: str | None) -> list[int]:
    """The query ImageTable.nearest runs, parameterised (and exact, or with HNSW's ef)."""
    if probe.photon:
        found = table.nearest(vector, K, PHOTON, COLUMNS[:-1], where)
        return [id_of(p) for p in found.column("path").to_pylist()]
    query: dict = {"column": "embedding", "q": vector, "k": K, "metric": "cosine"}
    if probe.flat:
        query["use_index"] = False
    else:
        query["nprobes"] = probe.nprobes
        if probe.refine:
            query["refine_factor"] = probe.refine
        if probe.ef:
            query["ef"] = probe.ef
    found = table.dataset.to_table(columns=COLUMNS, nearest=query, filter=where, prefilter=True)
    return [id_of(p) for p in found.column("path").to_pylist()]


def measure(
    table: ImageTable,
    queries: np.ndarray,
    exact: np.ndarray,
    probe: Probe,
    where: str | None = None,
) -> Measured:
    for vector in queries[:10]:  # warm: index and column pages in cache, code paths hot
        search_ids(table, vector, probe, where)
    latencies, hits = [], 0
    for vector, truth in zip(queries, exact, strict=True):
        start = time.perf_counter()
        found = search_ids(table, vector, probe, where)
        latencies.append(time.perf_counter() - start)
        hits += len(set(found) & set(truth.tolist()))
    ms = np.array(latencies) * 1000
    return Measured(hits / exact.size, float(np.percentile(ms, 50)), float(np.percentile(ms, 95)))


# --- indices ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexSpec:
    label: str
    build: Callable[[ImageTable], None]
    probes: list[Probe]


def ivf_pq(rows_per_partition: int, sub: int) -> Callable[[ImageTable], None]:
    def build(table: ImageTable) -> None:
        parts = max(1, table.count() // rows_per_partition)
        config = IvfPq(distance_type="cosine", num_partitions=parts, num_sub_vectors=sub)
        table.writer.create_index("embedding", config=config, replace=True)
        table.dataset.checkout_latest()

    return build


def hnsw_sq(rows_per_partition: int) -> Callable[[ImageTable], None]:
    def build(table: ImageTable) -> None:
        parts = max(1, table.count() // rows_per_partition)
        config = HnswSq(distance_type="cosine", num_partitions=parts)
        table.writer.create_index("embedding", config=config, replace=True)
        table.dataset.checkout_latest()

    return build


def photon_current(table: ImageTable) -> None:
    table.build_vector_index(4096)


def index_specs(rows: int) -> dict[str, IndexSpec]:
    hnsw_rows = 250_000  # one HNSW graph per ~250k rows keeps training memory bounded
    graphs = max(1, rows // hnsw_rows)
    return {
        "pq96": IndexSpec(
            "IVF_PQ, rows/4096 partitions, 96 sub-vectors (photon today)",
            photon_current,
            [Probe(20), Probe(10, 10), Probe(20, 10), Probe(50, 10), Probe(20, 30)],
        ),
        "pq48": IndexSpec(
            "IVF_PQ, rows/4096 partitions, 48 sub-vectors",
            ivf_pq(4096, 48),
            [Probe(20, 10), Probe(50, 10), Probe(20, 30)],
        ),
        "pq96-1024": IndexSpec(
            "IVF_PQ, rows/1024 partitions, 96 sub-vectors",
            ivf_pq(1024, 96),
            [Probe(20, 10), Probe(50, 10), Probe(100, 10)],
        ),
        "hnsw": IndexSpec(
            f"IVF_HNSW_SQ, rows/{hnsw_rows:,} partitions, m 20, ef_construction 300",
            hnsw_sq(hnsw_rows),
            # ef must cover limit x refine_factor
            [*(Probe(graphs, ef=ef) for ef in (20, 50, 100)), Probe(graphs, 10, 100)],
        ),
    }


INDICES = ["flat", *index_specs(1)]


def index_bytes(db: Path) -> int:
    folder = db / "images.lance" / "_indices"
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


# --- sections ---------------------------------------------------------------------------


@dataclass
class Corpus:
    """The table of the first `rows` vectors and its exact answers, shared by sections."""

    rows: int
    table: ImageTable
    base: np.ndarray
    exact: np.ndarray


def corpus(vectors: np.ndarray, queries: np.ndarray, rows: int, cache: dict[int, Corpus]) -> Corpus:
    if rows not in cache:
        base = vectors[:rows]
        table = write_table(
            DATA / f"ann-{rows}", base, "siglip-base-patch16-224", "siglip-base-patch16-224"
        )
        cache[rows] = Corpus(rows, table, base, exact_top(base, queries))
    return cache[rows]


def ann_section(data: Corpus, queries: np.ndarray, key: str) -> list[str]:
    """One index at one table size: build it, then each query setting's recall and speed."""
    lines = [
        "Exact = numpy brute force on the same vectors. p50/p95: warm, in-process. Fresh "
        "process: the first query of a new process, as each `photon search` runs it (index "
        "not in memory yet, files in the page cache), median of 3 processes.",
        "",
        "| index | build s | index MB | query | recall@10 | p50 ms | p95 ms | fresh process ms |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    db, table = data.table.db_path, data.table
    if key == "flat":
        probe = Probe(flat=True)
        measured = measure(table, queries[FEW], data.exact[FEW], probe)
        return [*lines, _row("none", "", "", probe, measured, _fresh(db, queries, probe)), ""]
    spec = index_specs(data.rows)[key]
    before, started = index_bytes(db), time.perf_counter()
    spec.build(table)
    built = time.perf_counter() - started
    size = (index_bytes(db) - before) / 2**20  # a replaced index's files stay until cleanup
    label, cells = spec.label, (f"{built:.0f}", f"{size:.0f}")
    for probe in spec.probes:
        measured = measure(table, queries, data.exact, probe)
        lines.append(_row(label, *cells, probe, measured, _fresh(db, queries, probe)))
        print(lines[-1], flush=True)
        label, cells = "", ("", "")
    if spec.build is photon_current:
        lines += _filtered_rows(table, data.base, queries, Probe(20, 10))
    return [*lines, ""]


def _filtered_rows(
    table: ImageTable, base: np.ndarray, queries: np.ndarray, probe: Probe
) -> list[str]:
    rows = []
    for name, (where, keep) in FILTERS.items():
        exact = exact_top(base, queries, keep)
        kept = table.count_where(where)
        probing = table._probing(PHOTON, kept)  # what photon chooses for this filter
        chosen = ", ".join(f"{k} {v}" for k, v in probing.items())
        chosen = "exact" if kept < PHOTON.exact_below else chosen
        labels = [f"same, prefilter `--in` {name} of rows ({kept:,})", f"photon: {chosen}"]
        for label, tried in zip(labels, (probe, Probe(photon=True)), strict=True):
            rows.append(_row(label, "", "", tried, measure(table, queries, exact, tried, where)))
            print(rows[-1], flush=True)
    return rows


def _row(index: str, built: str, size: str, probe: Probe, m: Measured, fresh: str = "") -> str:
    cells = [index, built, size, probe.label(), f"{m.recall:.3f}", f"{m.p50_ms:.1f}"]
    return f"| {' | '.join(cells)} | {m.p95_ms:.1f} | {fresh} |"


# One query in a new process: imports untimed, then open the table and search.
_FRESH = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy as np
from search import Probe, search_ids
from photon_index.store.table import ImageTable, Nearest
vector = np.array(json.loads(sys.argv[4]), dtype=np.float32)
started = time.perf_counter()
search_ids(ImageTable.open(Path(sys.argv[2])), vector, Probe(**json.loads(sys.argv[3])), None)
print((time.perf_counter() - started) * 1000)
"""


def _fresh(db: Path, queries: np.ndarray, probe: Probe, runs: int = 3) -> str:
    settings = json.dumps(dataclasses.asdict(probe))
    times = [
        float(_output([sys.executable, "-c", _FRESH, str(ROOT), str(db), settings, vector], ENV))
        for vector in (json.dumps(q.tolist()) for q in queries[:runs])
    ]
    return f"{statistics.median(times):.0f}"


def threshold_section(
    vectors: np.ndarray, queries: np.ndarray, sizes: list[int], probe: Probe
) -> list[str]:
    lines = [
        "| rows | flat p50 ms | flat p95 ms | ANN build s | ANN recall@10 | ANN p50 ms "
        "| ANN p95 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rows in sizes:
        db = DATA / f"threshold-{rows}"
        base = vectors[:rows]
        table = write_table(db, base, "siglip-base-patch16-224", "siglip-base-patch16-224")
        exact = exact_top(base, queries)
        flat = measure(table, queries[FEW], exact[FEW], Probe(flat=True))
        assert flat.recall > 0.999, f"flat search is not exact: {flat.recall}"
        started = time.perf_counter()
        photon_current(table)
        built = time.perf_counter() - started
        ann = measure(table, queries, exact, probe)
        lines.append(
            f"| {rows:,} | {flat.p50_ms:.1f} | {flat.p95_ms:.1f} | {built:.1f} | "
            f"{ann.recall:.3f} | {ann.p50_ms:.1f} | {ann.p95_ms:.1f} |"
        )
        print(lines[-1], flush=True)
        shutil.rmtree(db, ignore_errors=True)
    return [*lines, ""]


# --- the CLI ----------------------------------------------------------------------------

_PHASES = r"""
import sys, time
t0 = time.perf_counter()
def mark(name):
    global t0
    now = time.perf_counter()
    print(f"{name}\t{(now - t0) * 1000:.1f}")
    t0 = now
import photon_index.cli
mark("import photon_index.cli (typer, config)")
from photon_index.index import Index
mark("import the store: photon_index.index / lance")
index = Index(sys.argv[1])
table = index.table()
mark("open the table")
model = index.load_model(table.model_ref)
mark("find the model, check files")
from photon_index.embed import TextEncoder
from photon_index.query.search import Searcher
mark("import embed, models, query (onnxruntime, tokenizers)")
encoder = TextEncoder(model, device=index.settings.model.device, threads=0)
mark("load the text tower")
vector = encoder.encode(["a red circle"])[0]
mark("encode the query")
from photon_index.store.table import Nearest
how = Nearest(index.settings.search.nprobes, index.settings.search.refine_factor)
rows = table.nearest(vector, 10, how, ["path", "taken_at", "width", "height"]).to_pylist()
mark("ANN query (IVF_PQ, nprobes 20, refine 10)")
"""


TEXT = "a red circle"
STARTUP = "interpreter start and exit (wall minus the phases above)"


def cli_section(runs: int) -> list[str]:
    model_ref = "siglip-tiny-shapes"
    db = DATA / "cli-100k"
    vectors = Space(128, np.random.default_rng(SEED)).draw(100_000)
    table = write_table(db, vectors, "siglip-tiny-shapes", model_ref)
    table.build_vector_index(4096)  # what `photon index` builds above ann_threshold
    env = {**os.environ, "PHOTON_HOME": tempfile.mkdtemp(prefix="photon-bench-home-")}
    # The installed entry point, not a version manager's shim in front of it.
    photon = Path(sys.executable).with_name("photon")
    command = [str(photon if photon.is_file() else "photon"), "search", TEXT, "--db", str(db)]
    _output(command, env)  # page cache warm
    walls = [_wall(command, env) for _ in range(runs)]
    bare = [_wall([sys.executable, "-c", "pass"], env) for _ in range(3)]
    imports = {
        module: [_wall([sys.executable, "-c", f"import {module}"], env) for _ in range(3)]
        for module in ("lancedb", "lance")
    }
    phases = [_phases(db, env) for _ in range(runs)]
    lines = [
        f"Table: 100,000 rows, 128-d, model `siglip-tiny-shapes` (model_ref `{model_ref}`), "
        "IVF_PQ built by `ImageTable.build_vector_index(4096)`.",
        "",
        f'- `photon search "{TEXT}" --db DB`: {_spread(walls)} over {runs} runs',
        f"- for scale: `python -c pass` {_spread(bare)}, `python -c 'import lance'` "
        f"{_spread(imports['lance'])} (photon's read path), `python -c 'import lancedb'` "
        f"{_spread(imports['lancedb'])} (its write path, not imported by a search)",
        "",
        "Phases in one fresh process, median of the runs, ms:",
        "",
        *_phase_table(phases),
        "",
        "Largest cumulative imports under `import photon_index.index`, ms:",
        "",
        *_importtime([sys.executable, "-X", "importtime", "-c", "import photon_index.index"], env),
        "",
        _compare_lancedb(table),
    ]
    shutil.rmtree(db, ignore_errors=True)
    return [*lines, ""]


def _spread(seconds: list[float]) -> str:
    low, high = min(seconds), max(seconds)
    return f"median {statistics.median(seconds):.2f} s (min {low:.2f}, max {high:.2f})"


def _output(command: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True, input=stdin)
    return done.stdout


def _wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    _output(command, env)
    return time.perf_counter() - started


def _phases(db: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    out = _output([sys.executable, "-c", _PHASES, str(db)], env)
    wall = (time.perf_counter() - started) * 1000
    phases = {name: float(ms) for name, ms in (line.split("\t") for line in out.splitlines())}
    return {**phases, STARTUP: wall - sum(phases.values())}


def _phase_table(runs: list[dict[str, float]]) -> list[str]:
    medians = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    rows = ["| phase | ms |", "|---|---:|"]
    rows += [f"| {name} | {ms:.0f} |" for name, ms in medians.items()]
    return [*rows, f"| **whole process** | **{sum(medians.values()):.0f}** |"]


def _importtime(command: list[str], env: dict[str, str], top: int = 8) -> list[str]:
    err = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stderr
    rows = []
    for line in err.splitlines()[1:]:
        _, cumulative, name = (part.strip() for part in line.split("|"))
        rows.append((int(cumulative) / 1000, name))
    wanted = {"lancedb", "lance_namespace", "pyarrow", "numpy", "pydantic", "onnxruntime"}
    picked = [r for r in rows if r[1] in wanted or r[1].startswith("photon_index.")]
    top_rows = sorted(picked, reverse=True)[:top]
    return ["| module | ms |", "|---|---:|", *(f"| {name} | {ms:.0f} |" for ms, name in top_rows)]


def _compare_lancedb(table: ImageTable) -> str:
    """photon reads through pylance: does lancedb answer the same query the same way?"""
    queries = Space(128, np.random.default_rng(SEED + 1)).draw(20)
    wheres = [None, FILTERS["10 %"][0], FILTERS["1 %"][0]]
    how = Nearest(20, 10)
    same = 0
    for where in wheres:
        for vector in queries:
            ours = table.nearest(vector, K, how, ["path"], where).column("path").to_pylist()
            query = (
                table.writer.search(vector, vector_column_name="embedding")
                .distance_type("cosine")
                .nprobes(how.nprobes)
                .refine_factor(how.refine_factor)
                .select(["path", "_distance"])
                .limit(K)
            )
            if where:
                query = query.where(where, prefilter=True)
            same += ours == query.to_arrow().column("path").to_pylist()
    return (
        f"lancedb's own search returned the identical top 10, in order, for {same} of "
        f"{len(queries) * len(wheres)} queries (20 vectors; no filter, 10 % and 1 % prefilters)."
    )


# --- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--quick", action="store_true", help="fewer queries, sizes and indices")
    parser.add_argument("--sections", nargs="+", default=["threshold", "ann", "cli"])
    parser.add_argument("--indices", nargs="+", default=INDICES, choices=INDICES)
    parser.add_argument("--keep", action="store_true", help="keep the tables in benchmarks/data")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/search.py", *(argv or sys.argv[1:])])
    n_queries = 50 if args.quick else 200
    sizes = [5_000, 10_000] if args.quick else [5_000, 10_000, 20_000, 50_000, 100_000]
    indices = [i for i in args.indices if not (args.quick and i == "hnsw")]
    space = Space(DIM, np.random.default_rng(SEED))
    needed = [100_000, *(args.rows if "ann" in args.sections else [])]
    needed += sizes[-1:] if "threshold" in args.sections else []
    vectors = space.draw(max(needed))
    queries = space.draw(n_queries)  # held out: same distribution, in no table
    sections: dict[str, Callable[[], list[str]]] = {}
    if "threshold" in args.sections:
        sections["Flat vs ANN by table size (768-d)"] = lambda: threshold_section(
            vectors, queries, sizes, Probe(20, 10)
        )
    tables: dict[int, Corpus] = {}
    for rows in args.rows if "ann" in args.sections else []:
        for key in indices:
            title = f"ANN at {rows:,} rows (768-d): {key}"
            sections[title] = lambda r=rows, k=key: ann_section(
                corpus(vectors, queries, r, tables), queries, k
            )
    if "cli" in args.sections:
        runs = 3 if args.quick else 7
        sections["`photon search` wall time, 100k rows"] = partial(cli_section, runs)
    header = [
        "# Search benchmark",
        "",
        f"Date: {DATE}. Machine: {machine()}. The machine is shared with other jobs, so",
        "absolute times vary between runs: compare rows within one section (one run).",
        "",
        f"Data: {CENTRES} Gaussian clusters (lognormal sizes) around a common offset, with a",
        "power-law spectrum (variance along direction i ~ 1/i) in a random basis, L2-normalised;",
        f"{n_queries} held-out queries from the same distribution; "
        f"{_similarity(vectors[:100_000], queries)}.",
        "",
    ]
    blocks = _previous_blocks()
    for title, run in sections.items():
        load, started = _load(), time.perf_counter()
        body = run()
        stamp = (
            f"`{command}` on {DATE}: {time.perf_counter() - started:.0f} s, "
            f"load average {load} at start, {_load()} at end."
        )
        blocks[title] = "\n".join([f"## {title}", "", stamp, "", *body]).rstrip("\n") + "\n"
        RESULTS.parent.mkdir(parents=True, exist_ok=True)  # after each section: runs are long
        RESULTS.write_text("\n".join([*header, *(blocks[t] for t in sorted(blocks, key=_order))]))
    if not args.keep:
        shutil.rmtree(DATA, ignore_errors=True)
    print(f"wrote {RESULTS}")


def _previous_blocks() -> dict[str, str]:
    """Sections of the last results file, so one run can redo a single section."""
    if not RESULTS.is_file():
        return {}
    parts = RESULTS.read_text().split("\n## ")[1:]
    return {part.split("\n", 1)[0]: "## " + part.rstrip("\n") + "\n" for part in parts}


def _order(title: str) -> tuple[int, int, int]:
    rows = int("".join(c for c in title.split(" rows")[0] if c.isdigit()) or 0)
    kind = 0 if title.startswith("Flat") else 1 if title.startswith("ANN") else 2
    keys = list(INDICES)
    key = title.rsplit(": ", 1)[-1]
    return kind, rows, keys.index(key) if key in keys else 0


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB RAM"


def _similarity(vectors: np.ndarray, queries: np.ndarray) -> str:
    scores = queries @ vectors.T
    top = -np.sort(-scores, axis=1)[:, :K]
    return (
        f"mean cosine of a query to its 1st / 10th nearest of 100k rows {top[:, 0].mean():.2f} / "
        f"{top[:, -1].mean():.2f}, to a random row {scores.mean():.2f}"
    )


if __name__ == "__main__":
    main()

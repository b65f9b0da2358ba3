"""Duplicate pictures in the index, in three tiers. This module only finds them;
photon_index.actions moves, trashes or deletes them.

1. exact: the same bytes (content hash);
2. near: resized, re-encoded, cropped, brightened, watermarked, framed or screenshot
   copies, in two stages. Candidates: pHashes at most `phash_distance` bits apart, of
   the pictures or of the pictures with their borders trimmed (hashing.border_box).
   Verification: a candidate counts only when an independent signal agrees, the dHash
   of the same pictures (whole or trimmed, as the pHash that found it) within
   `dhash_distance` bits, and the embeddings have cosine at least `near_cosine` (the
   hashes see only grey: a recoloured picture is not a copy). Rows indexed before the
   second hashes existed are checked with what they have (a whole picture's pHash with
   the trimmed dHash; pHash alone within _UNVERIFIED_DISTANCE bits) until `photon
   index` fills their hashes in;
3. similar (optional): embeddings with cosine at least `similar_cosine` (the same scene,
   not a copy).

Tiers nest, so no file is a duplicate twice: each exact group is collapsed to its keeper
before the near tier runs, and each near group to its keeper before the similar tier.
A file is therefore listed as a duplicate in at most one group, while the keeper of a
stricter group can reappear in a looser one (as its keeper or as one of its duplicates).
Acting on every group never removes a keeper (actions/apply.py): a stricter group's
keeper listed as a looser group's duplicate stays, and goes in the next run, when it
is no group's keeper any more.

Two paths of one file (a hard link, or a file seen through a symlinked folder) are one
picture, never a duplicate pair: the second path is an alias, reported with its group
and never a duplicate. A real file is always kept before a symbolic link to a file,
which keeps nothing once its target goes (and its target may lie outside the library).

Each duplicate carries its evidence: the signals that made it one and their values.

Every duplicate is within the tier's threshold of the keeper itself: pairs are linked
into clusters (union-find), but a member that is close only to another member, not to
the keeper, is left out of the group (listed as `beyond`) and clustered again with the
other left-out members.

No tier compares all pairs: exact groups come from sorting content hashes, near pairs
from multi-index hashing (`hamming_pairs`), similar pairs from a blocked matrix product
(`cosine_pairs`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from itertools import combinations, pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from photon_index import files
from photon_index.errors import UsageError
from photon_index.store.schema import SECOND_HASHES
from photon_index.store.table import ImageTable

TIERS = ("exact", "near", "similar")
MAX_PHASH_DISTANCE = 63  # a distance of 64 bits would make every pair a near copy
_HASH_BITS = 64
# What a sort costs per hash, in candidate comparisons (about 30 ns each), for keys of up
# to 16 bits and for wider ones; measured with numpy on 1M hashes on a 2-core box. They
# weigh sorts against candidates when choosing the number of chunks.
_SORT_COST_16 = 3
_SORT_COST = 10
# Similarities computed per block of the matrix product: 2^25 float32 = 128 MiB.
_BLOCK_FLOATS = 1 << 25
# Near pairs whose embeddings are read at once: at 768-d, at most 24 MiB of vectors.
_PAIRS_PER_READ = 4096
# A near pair without the second look (a row indexed before the dHash) is one only
# within this many pHash bits: the measured best single-hash threshold.
_UNVERIFIED_DISTANCE = 6
# A dHash with fewer bits set than this, or fewer unset, is of a picture without detail.
_PLAIN_BITS = 4
CHOSEN = "chosen by you"  # the reason of a keeper the user picked
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


Evidence = dict[str, float | int | str | None]


@dataclass(frozen=True)
class DuplicateGroup:
    tier: str  # "exact" | "near" | "similar"
    keep: str  # path of the suggested keeper
    reason: str  # why this one is kept, e.g. "largest picture (4000×3000)"  # noqa: RUF003
    duplicates: list[str]  # the other paths, sorted; each within the threshold of keep
    distance: float  # largest to the keeper: 0 exact; Hamming bits (near); 1 - cosine (similar)
    # Other paths of the keeper's or a duplicate's file (same device and inode): the same
    # picture, never acted on.
    aliases: list[str] = field(default_factory=list)
    # Linked to the group through its members but beyond the threshold of the keeper:
    # left alone here (they may form a group of their own).
    beyond: list[str] = field(default_factory=list)
    # duplicate -> what made it one, measured from the suggested keeper: the content
    # hash (exact); Hamming bits of phash, phash_trimmed, dhash and dhash_whole, and the
    # embeddings' cosine (near); the cosine (similar)
    evidence: dict[str, Evidence] = field(default_factory=dict)

    def with_keeper(self, path: str) -> DuplicateGroup:
        """The group with the user's pick as its keeper (the suggested one becomes a
        duplicate). distance stays what it was measured from the suggested keeper."""
        members = [self.keep, *self.duplicates]
        if path not in members:
            raise UsageError(
                f"{path} is not in this group: pick its keeper or one of its duplicates"
            )
        others = sorted(p for p in members if p != path)
        return replace(self, keep=path, reason=CHOSEN, duplicates=others)


class _Strings:
    """A column of strings kept as Arrow holds it: a million paths as Python strings
    take twice the memory. Only the few rows that end up in groups are made str."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self.array = column.combine_chunks()

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int | np.integer) -> str:
        return self.array[int(i)].as_py()

    def take(self, ids: np.ndarray) -> list[str]:
        return self.array.take(pa.array(ids)).to_pylist()

    def labels(self) -> np.ndarray:
        """A label per row, equal for equal strings."""
        return pc.dictionary_encode(self.array).indices.to_numpy().astype(np.int64)


@dataclass(frozen=True)
class _Images:
    """The columns dedupe reads, one array each, in the table's row order."""

    paths: _Strings
    row_ids: np.ndarray  # for reading a few rows' embeddings (take_rows)
    content_hash: _Strings
    phash: np.ndarray  # uint64
    phash_trimmed: np.ndarray  # uint64; the phash where the row lacks it
    dhash: np.ndarray  # uint64 of the trimmed picture; 0 where the row lacks it
    dhash_whole: np.ndarray  # uint64; 0 where the row lacks it
    verifiable: np.ndarray  # bool: the row has phash_trimmed and dhash
    whole_verifiable: np.ndarray  # bool: the row has dhash_whole
    width: np.ndarray
    height: np.ndarray
    file_size: np.ndarray
    # µs since the epoch: taken_at, else mtime. Not ns, which overflow past 2262 (a
    # camera's clock can say anything).
    age: np.ndarray
    taken: np.ndarray  # bool: age is taken_at
    rank: np.ndarray  # place in keeper order: 0 is the best keeper of the whole table
    # bool: one of a RAW+JPEG pair (files.pair_key): kept first, never a duplicate
    paired: np.ndarray
    # id -> whether its path is a symbolic link, read only for rows that share a group
    links: dict[int, bool] = field(default_factory=dict)

    def is_link(self, i: int) -> bool:
        if i not in self.links:
            self.links[i] = os.path.islink(self.paths[i])
        return self.links[i]


# ids of a cluster -> a label per id, equal for linked ids
_Labeller = Callable[[np.ndarray], np.ndarray]
# keeper ids, member ids -> whether each member is within the threshold of its keeper
_Closeness = Callable[[np.ndarray, np.ndarray], np.ndarray]
# groups' members, keeper first -> each group's distance (largest to the keeper) and
# its other members' evidence
_Explain = Callable[[list[np.ndarray]], list[tuple[float, list[Evidence]]]]


def find_duplicates(
    table: ImageTable,
    *,
    phash_distance: int,
    dhash_distance: int,
    near_cosine: float,
    similar_cosine: float | None,
    dismissed: Sequence[frozenset[str]] = (),
) -> list[DuplicateGroup]:
    """Groups of duplicates, exact then near then similar (None: no similar tier), each
    tier's in keeper path order. Near copies are within phash_distance bits (either
    pHash), dhash_distance bits (dHash) and near_cosine of their keeper. A group whose
    content hashes all lie in one dismissed set is left out, and its pictures stay apart
    for the looser tiers (where such a group is left out again)."""
    for name, bits in (("pHash", phash_distance), ("dHash", dhash_distance)):
        if not 0 <= bits <= MAX_PHASH_DISTANCE:
            raise UsageError(
                f"the {name} distance must be 0 to {MAX_PHASH_DISTANCE} bits, not {bits}"
            )
    for cosine in (near_cosine, similar_cosine):
        if cosine is not None and not -1 <= cosine <= 1:
            raise UsageError(f"the cosine must be between -1 and 1, not {cosine}")
    images = _read(table)
    labels = images.content_hash.labels()
    alias_of = _aliases(_clusters(np.arange(len(images.paths)), labels, images), images)
    ids = np.setdiff1d(np.arange(len(images.paths)), np.fromiter(alias_of, np.int64))
    aliases: dict[int, list[str]] = {}
    for alias, of in alias_of.items():
        aliases.setdefault(of, []).append(images.paths[alias])

    kept = _not_dismissed(images, dismissed)

    def tier(name: str, label: _Labeller, close: _Closeness, explain: _Explain) -> None:
        nonlocal ids
        found = [(m, b) for m, b in _complete(ids, label, close, images) if kept(m)]
        found = [(m, b) for m, b in ((_unpaired(m, images), b) for m, b in found) if len(m) > 1]
        explained = explain([m for m, _ in found])
        groups.extend(
            _group(name, m, b, images, e, aliases)
            for (m, b), e in zip(found, explained, strict=True)
        )
        ids = _without_duplicates(ids, [m for m, _ in found])

    groups: list[DuplicateGroup] = []
    tier("exact", lambda i: labels[i], _always, lambda ms: [_same_bytes(images, m) for m in ms])
    near = _Near(table, images, phash_distance, dhash_distance, near_cosine)
    tier("near", near.labels, near.close, near.explain)
    if similar_cosine is not None:
        vectors = _embeddings(table, images)
        tier(
            "similar",
            lambda i: _components(len(i), cosine_pairs(vectors[i], similar_cosine)),
            lambda k, m: np.einsum("ij,ij->i", vectors[k], vectors[m]) >= similar_cosine,
            lambda ms: [_cosine_spread(vectors, m) for m in ms],
        )
    return sorted(groups, key=lambda g: (TIERS.index(g.tier), g.keep))


@dataclass(frozen=True)
class _Near:
    """The near tier's rule: candidates by either pHash, verified by the dHash and the
    embeddings."""

    table: ImageTable
    images: _Images
    phash_distance: int
    dhash_distance: int
    near_cosine: float

    def labels(self, ids: np.ndarray) -> np.ndarray:
        """Components of the verified candidate pairs among ids."""
        images = self.images
        found = [
            _candidate_pairs(hashes[ids], self.phash_distance)
            for hashes in (images.phash, images.phash_trimmed)
        ]
        pairs = np.unique(np.concatenate(found), axis=0)
        if len(pairs):
            pairs = pairs[self.close(ids[pairs[:, 0]], ids[pairs[:, 1]])]
        return _components(len(ids), pairs)

    def close(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ok = self._hashes_agree(a, b)
        ok[ok] = _cosines(self.table, self.images.row_ids, a[ok], b[ok]) >= self.near_cosine
        return ok

    def _hashes_agree(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Either pHash within phash_distance, and the dHash of the same pictures (whole
        or trimmed) within dhash_distance, both pictures having detail (_detailed). A
        row lacking the whole picture's dHash has its whole pHash checked with the
        trimmed dHash (the rule before it existed); a row lacking both, with nothing
        but _UNVERIFIED_DISTANCE."""
        images = self.images
        bits = {name: _bits(images, name, a, b) for name in _HASHES}
        trimmed = images.verifiable[a] & images.verifiable[b]
        trimmed &= _detailed(images.dhash[a]) & _detailed(images.dhash[b])
        whole = images.whole_verifiable[a] & images.whole_verifiable[b]
        whole &= _detailed(images.dhash_whole[a]) & _detailed(images.dhash_whole[b])
        by_trimmed = trimmed & (bits["phash_trimmed"] <= self.phash_distance)
        by_trimmed &= bits["dhash"] <= self.dhash_distance
        # Rows from before the whole dHash: their whole pHash checked with the trimmed one.
        before = ~(images.whole_verifiable[a] & images.whole_verifiable[b]) & trimmed
        whole_check = np.where(whole, bits["dhash_whole"], bits["dhash"])
        by_whole = (whole | before) & (whole_check <= self.dhash_distance)
        by_whole &= bits["phash"] <= self.phash_distance
        # Rows lacking the second hashes: pHash alone. A plain picture is not one of them.
        bare = ~(images.verifiable[a] & images.verifiable[b])
        bare &= ~(images.whole_verifiable[a] & images.whole_verifiable[b])
        unverified = bare & (bits["phash"] <= min(self.phash_distance, _UNVERIFIED_DISTANCE))
        return by_trimmed | by_whole | unverified

    def explain(self, groups: list[np.ndarray]) -> list[tuple[float, list[Evidence]]]:
        """Each group's distance (largest pHash distance, either pHash, to the keeper) and
        each duplicate's signals. The cosines of all groups are read in one pass."""
        if not groups:
            return []
        images = self.images
        keepers = np.concatenate([np.full(len(m) - 1, m[0]) for m in groups])
        others = np.concatenate([m[1:] for m in groups])
        bits = {name: _bits(images, name, keepers, others) for name in _HASHES}
        cosines = _cosines(self.table, images.row_ids, keepers, others)
        verified = images.verifiable[keepers] & images.verifiable[others]
        whole = images.whole_verifiable[keepers] & images.whole_verifiable[others]
        evidence: list[Evidence] = [
            {
                "phash": int(p),
                "phash_trimmed": int(t) if v else None,
                "dhash": int(d) if v else None,
                "dhash_whole": int(w) if vw else None,
                "cosine": round(float(c), 4),
            }
            for p, t, d, v, w, vw, c in zip(
                bits["phash"].tolist(),
                bits["phash_trimmed"].tolist(),
                bits["dhash"].tolist(),
                verified.tolist(),
                bits["dhash_whole"].tolist(),
                whole.tolist(),
                cosines.tolist(),
                strict=True,
            )
        ]
        spread = np.where(verified, np.minimum(bits["phash"], bits["phash_trimmed"]), bits["phash"])
        found, start = [], 0
        for members in groups:
            end = start + len(members) - 1
            found.append((float(spread[start:end].max()), evidence[start:end]))
            start = end
        return found


_HASHES = ("phash", "phash_trimmed", "dhash", "dhash_whole")


def _detailed(dhash: np.ndarray) -> np.ndarray:
    """Whether each dHash comes from a picture with detail across it. A plain or smoothly
    shaded picture (a clear sky, a blank page, a black frame) has a dHash of nearly all
    0 or all 1 bits and a pHash of ties, the same as any other such picture's: its
    hashes are no evidence of a copy (benchmarks/results/dedupe.md)."""
    ones = np.bitwise_count(dhash)
    return (ones >= _PLAIN_BITS) & (ones <= _HASH_BITS - _PLAIN_BITS)


def _bits(images: _Images, name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance of hash `name` between the rows a[i] and b[i]."""
    column = getattr(images, name)
    return np.bitwise_count(column[a] ^ column[b])


def _candidate_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Pairs of positions whose hashes are at most max_distance bits apart, a sparse
    cover: positions sharing a hash are chained one to the next, and each pair of close
    distinct hashes is one pair of their first positions: no quadratic number of pairs
    for a run of equal hashes. Only the pairs that pass verification are linked, so a
    run whose first position fails it with another run's first is not linked to that
    run (its members may still be, through other hashes)."""
    unique, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    close = first[hamming_pairs(unique, max_distance)]
    order = np.argsort(inverse.reshape(-1), kind="stable")
    same = inverse.reshape(-1)[order[1:]] == inverse.reshape(-1)[order[:-1]]
    chained = np.stack([order[:-1][same], order[1:][same]], axis=1)
    return np.concatenate([close.reshape(-1, 2), chained]).astype(np.int64)


def _same_bytes(images: _Images, members: np.ndarray) -> tuple[float, list[Evidence]]:
    digest = images.content_hash[members[0]]
    return 0.0, [{"content_hash": digest} for _ in members[1:]]


def _not_dismissed(
    images: _Images, dismissed: Sequence[frozenset[str]]
) -> Callable[[np.ndarray], bool]:
    """Whether a group (member ids) is not within any one dismissed set of hashes."""
    sets_with: dict[str, list[frozenset[str]]] = {}
    for hashes in dismissed:
        for h in hashes:
            sets_with.setdefault(h, []).append(hashes)

    def kept(members: np.ndarray) -> bool:
        hashes = set(images.content_hash.take(members))
        candidates = sets_with.get(next(iter(hashes)), [])
        return not any(hashes <= candidate for candidate in candidates)

    return kept


def _unpaired(members: np.ndarray, images: _Images) -> np.ndarray:
    """The group without the files of RAW+JPEG pairs but its keeper: a picture's two
    files are not copies of each other, and neither goes for a copy elsewhere."""
    return np.r_[members[:1], members[1:][~images.paired[members[1:]]]]


def _always(keepers: np.ndarray, members: np.ndarray) -> np.ndarray:
    return np.ones(len(members), dtype=bool)


def _complete(
    ids: np.ndarray, label: _Labeller, close: _Closeness, images: _Images
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Groups of ids as (members, keeper first; left beyond the keeper's threshold).

    Union-find chains pairs: A~B and B~C put A, B and C in one cluster though C may be
    far from A. So only the members within the threshold of the cluster's keeper join its
    group; the others are clustered again among themselves until none is left."""
    found: list[tuple[np.ndarray, np.ndarray]] = []
    pending = ids
    while pending.size > 1:
        clusters = _clusters(pending, label(pending), images)
        if not clusters:
            break
        sizes = [len(c) for c in clusters]
        members = np.concatenate(clusters)
        keepers = np.repeat([c[0] for c in clusters], sizes)
        near = close(keepers, members) | (keepers == members)
        left: list[np.ndarray] = []
        for cluster, ok in zip(clusters, np.split(near, np.cumsum(sizes)[:-1]), strict=True):
            within, beyond = cluster[ok], cluster[~ok]
            if len(within) > 1:
                found.append((within, beyond))
            left.append(beyond)
        pending = np.concatenate(left) if left else np.empty(0, dtype=np.int64)
    return found


def _aliases(exact: list[np.ndarray], images: _Images) -> dict[int, int]:
    """id -> id of the better path of the same file, for paths that name a file another
    row names too (same device and inode, or the very same path). Only rows with the same
    content hash can be one file, so only exact clusters are looked at on disk."""
    alias_of: dict[int, int] = {}
    for cluster in exact:
        seen: dict[object, int] = {}
        for i in cluster.tolist():  # best keeper first
            path = images.paths[i]
            keys: list[object] = [path]
            try:
                stat = os.stat(path)  # through symlinks, as the indexer read it
                keys.append((stat.st_dev, stat.st_ino))
            except OSError:
                pass  # gone or unreadable: the action's checks will leave it alone
            first = next((seen[k] for k in keys if k in seen), None)
            if first is not None:
                alias_of[i] = first
            for key in keys:
                seen.setdefault(key, i if first is None else first)
    return alias_of


def hamming_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Every pair (i, j), i < j, of distinct uint64 hashes at most max_distance bits apart.

    Multi-index hashing by the generalised pigeonhole principle: cut the 64 bits into m
    chunks. Hashes at most T bits apart differ in at most T chunks, so they agree on all
    bits of some m - T chunks. For each (m - T)-subset of chunks, sorting the hashes
    masked to its bits puts every such pair next to each other, and only those candidates
    are compared. m trades C(m, m - T) sorts against fewer candidates per sort and is
    chosen from the table size; 1M hashes at T = 6 take 28 sorts of 16-bit keys.
    """
    n = len(hashes)
    if n < 2 or max_distance == 0:
        return np.empty((0, 2), dtype=np.int64)
    chunks = _chunk_count(n, max_distance)
    found = [
        _sharing_pairs(hashes, subset, max_distance)
        for subset in _subsets(chunks, chunks - max_distance)
    ]
    # A pair agreeing on several subsets is found once for each.
    codes = np.unique(np.concatenate([np.minimum(a, b) * n + np.maximum(a, b) for a, b in found]))
    return np.stack([codes // n, codes % n], axis=1)


def cosine_pairs(vectors: np.ndarray, min_cosine: float) -> np.ndarray:
    """Every pair (i, j), i < j, of unit rows whose cosine is at least min_cosine.

    A blocked matrix product: exact, and at up to a few 100k pictures faster than one
    ANN query per picture (benchmarks/results/dedupe.md); blocks of rows keep the
    similarities in memory under 128 MiB however large the library.
    """
    n = len(vectors)
    rows = max(1, _BLOCK_FLOATS // max(n, 1))
    found = [np.empty((0, 2), dtype=np.int64)]
    for start in range(0, n, rows):
        similarity = vectors[start : start + rows] @ vectors[start:].T
        i, j = np.nonzero(similarity >= min_cosine)
        upper = j > i  # column j of the block is row start + j
        found.append(np.stack([i[upper], j[upper]], axis=1).astype(np.int64) + start)
    return np.concatenate(found)


def _read(table: ImageTable) -> _Images:
    names = ["path", "content_hash", "phash", "width", "height", "file_size", "mtime_ns"]
    # A table made before the second hashes lacks their columns until a writer adds them.
    names += [name for name in SECOND_HASHES if name in table.schema.names]
    data = table.with_row_ids([*names, "taken_at"])
    # A video's frames (files.frame_path) are not files: videos are left out.
    frames = files.is_frame(data.column("path"))
    if frames.any():
        data = data.filter(pa.array(~frames))
    phash = _hash_values(data.column("phash"))
    trimmed, dhash, dhash_whole = (
        _hash_values(data.column(name)) if name in names else np.zeros(len(phash), np.uint64)
        for name in SECOND_HASHES
    )
    valid = {
        name: (data.column(name) if name in names else pa.nulls(len(phash)))
        .is_valid()
        .to_numpy(zero_copy_only=False)
        for name in SECOND_HASHES
    }
    verifiable = valid["phash_trimmed"] & valid["dhash"]
    taken_at = data.column("taken_at").to_numpy().astype("datetime64[us]")
    taken = ~np.isnat(taken_at)
    age = np.where(taken, taken_at.view(np.int64), data.column("mtime_ns").to_numpy() // 1000)
    width, height = data.column("width").to_numpy(), data.column("height").to_numpy()
    file_size = data.column("file_size").to_numpy()
    paths = _Strings(data.column("path"))
    pixels = width.astype(np.int64) * height
    paired = files.paired(data.column("path"))
    # Keeper order: one of a RAW+JPEG pair, then most pixels, then largest file, then
    # oldest, then path (for ties).
    # lexsort wants each path's rank, which is the inverse of argsort's permutation.
    # Arrow sorts the UTF-8 strings as they are (in code point order, as Python would):
    # numpy would copy them as UTF-32, 280 MB for a million 70-character paths.
    by_path = pc.sort_indices(paths.array).to_numpy()
    path_rank = np.empty(len(paths), dtype=np.int64)
    path_rank[by_path] = np.arange(len(paths))
    order = np.lexsort((path_rank, age, -file_size, -pixels, ~paired))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return _Images(
        paths=paths,
        row_ids=data.column("_rowid").to_numpy(),
        content_hash=_Strings(data.column("content_hash")),
        phash=phash,
        phash_trimmed=np.where(verifiable, trimmed, phash),
        dhash=dhash,
        dhash_whole=dhash_whole,
        verifiable=verifiable,
        whole_verifiable=valid["dhash_whole"],
        width=width,
        height=height,
        file_size=file_size,
        age=age,
        taken=taken,
        rank=rank,
        paired=paired,
    )


def _embeddings(table: ImageTable, images: _Images) -> np.ndarray:
    """The embeddings of the rows _read kept (it leaves videos' frames out), in order."""
    data = table.with_row_ids(["embedding"])
    vectors = _fixed_size_values(data.column("embedding")).reshape(-1, table.dim)
    kept = np.isin(data.column("_rowid").to_numpy(), images.row_ids)
    return vectors if kept.all() else vectors[kept]


def _cosines(table: ImageTable, row_ids: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cosine of each pair of ids (a[i], b[i]). Only their rows' embeddings are read,
    a block of pairs at a time: the near tier compares a fraction of the pictures, and
    the whole column is GBs at 1M rows."""
    cosines = np.empty(len(a), dtype=np.float32)
    for start in range(0, len(a), _PAIRS_PER_READ):
        block = slice(start, start + _PAIRS_PER_READ)
        ids, where = np.unique(np.concatenate([a[block], b[block]]), return_inverse=True)
        column = table.take_rows(row_ids[ids].tolist(), ["embedding"]).column("embedding")
        vectors = _fixed_size_values(column).reshape(-1, table.dim)
        first, second = np.split(where.reshape(-1), 2)
        cosines[block] = np.einsum("ij,ij->i", vectors[first], vectors[second])
    return cosines


def _hash_values(column: pa.ChunkedArray) -> np.ndarray:
    """A column of 8-byte hashes as uint64 (MSB first); a null one is 0."""
    array = column.combine_chunks()
    values = array.values.slice(array.offset * 8, len(array) * 8)  # null rows' slots too
    values = pc.fill_null(values, 0).to_numpy(zero_copy_only=False).astype(np.uint8)
    hashes = np.ascontiguousarray(values.reshape(-1, 8)).view(">u8").reshape(-1)
    return np.where(array.is_valid().to_numpy(zero_copy_only=False), hashes, 0).astype(np.uint64)


def _fixed_size_values(column: pa.ChunkedArray) -> np.ndarray:
    return column.combine_chunks().flatten().to_numpy()


def _clusters(ids: np.ndarray, labels: np.ndarray, images: _Images) -> list[np.ndarray]:
    """ids sharing a label, two or more, each best keeper first."""
    order = np.lexsort((images.rank[ids], labels))
    ids, labels = ids[order], labels[order]
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    shared = ends - starts > 1
    spans = zip(starts[shared], ends[shared], strict=True)
    return [_real_first(ids[s:e], images) for s, e in spans]


def _real_first(cluster: np.ndarray, images: _Images) -> np.ndarray:
    """The cluster, in keeper order, with its real files before its symbolic links: a
    link kept for a real file that goes would keep nothing of the library. Only here,
    not in rank: a link is looked up on disk only for a file that has copies."""
    links = np.array([images.is_link(i) for i in cluster.tolist()])
    return cluster[np.argsort(links, kind="stable")]


def _without_duplicates(ids: np.ndarray, clusters: list[np.ndarray]) -> np.ndarray:
    if not clusters:
        return ids
    return np.setdiff1d(ids, np.concatenate([c[1:] for c in clusters]))


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find: a label for each of n nodes, equal within a connected component."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs.tolist():
        parent[root(i)] = root(j)
    labels = np.arange(n)
    linked = np.unique(pairs)  # every other node is alone: its own label
    labels[linked] = [root(i) for i in linked.tolist()]
    return labels


def _chunk_count(n: int, max_distance: int) -> int:
    """The number of chunks m that minimises the estimated work for random hashes: each
    (m - T)-subset of chunks costs a sort and about n²/2^(key bits + 1) candidates."""

    def cost(m: int) -> float:
        agree = m - max_distance
        key_bits = _HASH_BITS * agree / m
        per_hash = _SORT_COST_16 if key_bits <= 16 else _SORT_COST
        return math.comb(m, agree) * (per_hash * n + n * n / 2 ** (key_bits + 1))

    return min(range(max_distance + 1, min(_HASH_BITS, max_distance + 6) + 1), key=cost)


def _subsets(chunks: int, agree: int) -> list[list[tuple[int, int]]]:
    """Each subset of `agree` of the `chunks` near-equal chunks of 64 bits, as a list of
    (lowest bit, width) per chunk."""
    edges = [round(_HASH_BITS * c / chunks) for c in range(chunks + 1)]
    return [list(s) for s in combinations([(lo, hi - lo) for lo, hi in pairwise(edges)], agree)]


def _packed_keys(hashes: np.ndarray, subset: list[tuple[int, int]]) -> np.ndarray:
    """The subset's bits side by side, in the smallest unsigned type that holds them:
    numpy sorts 16-bit keys by radix, several times faster than wider ones."""
    keys = np.zeros(len(hashes), dtype=np.uint64)
    shift = 0
    for low, width in subset:
        keys |= ((hashes >> np.uint64(low)) & np.uint64((1 << width) - 1)) << np.uint64(shift)
        shift += width
    return keys.astype(np.uint16 if shift <= 16 else np.uint32 if shift <= 32 else np.uint64)


def _sharing_pairs(
    hashes: np.ndarray, subset: list[tuple[int, int]], max_distance: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of indices equal on the subset's bits and at most max_distance bits apart."""
    keys = _packed_keys(hashes, subset)
    order = np.argsort(keys, kind="stable")
    keys, ordered = keys[order], hashes[order]
    firsts, seconds = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    # Sorted positions p whose key equals the one `gap` places later. In a sorted array
    # they are a subset of the previous gap's, so the loop costs one step per candidate.
    at = np.flatnonzero(keys[1:] == keys[:-1])
    gap = 1
    while at.size:
        close = at[np.bitwise_count(ordered[at] ^ ordered[at + gap]) <= max_distance]
        firsts.append(order[close])
        seconds.append(order[close + gap])
        gap += 1
        at = at[at + gap < len(keys)]
        at = at[keys[at + gap] == keys[at]]
    return np.concatenate(firsts), np.concatenate(seconds)


def _cosine_spread(embeddings: np.ndarray, members: np.ndarray) -> tuple[float, list[Evidence]]:
    keeper, others = embeddings[members[0]], embeddings[members[1:]]
    cosines = [round(float(c), 4) for c in others @ keeper]
    return round(1 - min(cosines), 4), [{"cosine": c} for c in cosines]


def _group(
    tier: str,
    members: np.ndarray,
    beyond: np.ndarray,
    images: _Images,
    explained: tuple[float, list[Evidence]],
    aliases: dict[int, list[str]],
) -> DuplicateGroup:
    keep, *others = members.tolist()
    distance, evidence = explained
    runner_up = min(others, key=lambda i: (images.is_link(i), images.rank[i]))
    return DuplicateGroup(
        tier=tier,
        keep=images.paths[keep],
        reason=_reason(images, keep, runner_up),
        duplicates=sorted(images.paths.take(np.asarray(others))),
        distance=distance,
        aliases=sorted(a for i in members.tolist() for a in aliases.get(i, [])),
        beyond=sorted(images.paths[i] for i in beyond.tolist()),
        evidence={images.paths[i]: e for i, e in zip(others, evidence, strict=True)},
    )


def _reason(images: _Images, keep: int, runner_up: int) -> str:
    """What made the keeper win over the next best file of its group."""
    if images.is_link(runner_up) and not images.is_link(keep):
        return "the real file (the others are symbolic links)"
    if images.paired[keep]:
        return "one of a RAW+JPEG pair (the camera's two files of one picture)"
    w, h = int(images.width[keep]), int(images.height[keep])
    if w * h != int(images.width[runner_up]) * int(images.height[runner_up]):
        return f"largest picture ({w}×{h})"  # noqa: RUF001
    if images.file_size[keep] != images.file_size[runner_up]:
        return f"largest file ({_size(int(images.file_size[keep]))})"
    if images.age[keep] != images.age[runner_up]:
        when = _EPOCH + timedelta(microseconds=int(images.age[keep]))
        what = "taken" if images.taken[keep] else "modified"
        return f"oldest ({what} {when:%Y-%m-%d %H:%M})"
    return "first by path (otherwise identical)"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"

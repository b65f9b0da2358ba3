"""Search: texts and pictures, each with a weight, combined into one query vector and
matched against the index, optionally restricted by folder, date or an SQL filter.

Query syntax (as in rclip): a term is a text or the path of a picture; `--add TERM` and
`--sub TERM` add or subtract more terms; `WEIGHT:TERM` scales one (e.g. `--add 2:stripes`).
The library API also takes pictures as bytes (an upload), and a ready-made vector.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from photon_index.config import MAX_RESULTS, Settings
from photon_index.errors import ImageError, UsageError
from photon_index.files import file_of, is_raw, pair_key, split_frame
from photon_index.store.schema import arrow_to_pandas, image_id
from photon_index.store.table import ImageTable, Nearest, sql_quote

if TYPE_CHECKING:
    import pandas as pd

    from photon_index.embed.encoder import Encoders

_WEIGHT = re.compile(r"^([+-]?\d+(?:\.\d+)?):(.*)$", re.DOTALL)
# The days the date filters can name exactly: mtime_ns is int64 nanoseconds, and Lance
# casts a TIMESTAMP literal to nanoseconds too, so both hold 1677-09-21 to 2262-04-11.
# A bound outside them is moved onto them (a filter from year 1 keeps everything).
FIRST_DAY = date(1678, 1, 1)
LAST_DAY = date(2262, 1, 1)
SCORE_PROBABILITY = "probability"  # SigLIP's sigmoid: a calibrated text-picture match
SCORE_COSINE = "cosine"  # cosine similarity, for picture and combined queries
MAX_WEIGHT = 1000.0  # a term's weight at most, either way: 400 nines would make inf, NaN


@dataclass(frozen=True)
class Term:
    kind: str  # "text" or "image"
    value: str  # the text, the picture's path, or a name for uploaded bytes
    weight: float
    data: bytes | None = None  # an uploaded picture's bytes


# A hit as to_arrow() writes it, in the order of Hit's fields.
HIT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("rank", pa.int32()),
        pa.field("path", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("distance", pa.float64()),
        pa.field("taken_at", pa.timestamp("us")),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("at", pa.float64()),
    ]
)


@dataclass(frozen=True)
class Filters:
    under: Path | None = None
    after: date | None = None
    before: date | None = None
    where: str | None = None
    camera: str | None = None  # exactly as the camera column holds it
    min_score: float | None = None  # hits scoring below it are left out
    tags: tuple[str, ...] = ()  # only pictures with every one of these tags (README, "Tags")

    def __post_init__(self) -> None:
        if self.after is not None and self.before is not None and self.after >= self.before:
            raise UsageError(
                f"--after {self.after} is not before --before {self.before} (which is "
                "exclusive): no picture can match; swap or widen the dates"
            )

    def sql(self) -> str | None:
        """The filter as LanceDB SQL; dates are EXIF DateTimeOriginal, else file mtime."""
        parts = []
        if self.under is not None:
            folder = str(Path(os.path.abspath(self.under.expanduser()))).rstrip(os.sep) + os.sep
            parts.append(f"starts_with(path, {sql_quote(folder)})")
        if self.after is not None and self.after > FIRST_DAY:
            parts.append(_date_clause(">=", min(self.after, LAST_DAY)))
        if self.before is not None and self.before < LAST_DAY:
            parts.append(_date_clause("<", max(self.before, FIRST_DAY)))
        if self.camera is not None:
            parts.append(f"camera = {sql_quote(self.camera)}")
        if self.where:
            parts.append(f"({checked_where(self.where)})")
        return " AND ".join(parts) or None


@dataclass(frozen=True)
class Hit:
    id: str  # schema.image_id of its row's path (for a video, of the frame's)
    rank: int
    path: str  # the file
    score: float
    distance: float  # cosine distance, 1 - cosine similarity
    taken_at: datetime | None
    width: int
    height: int
    at: float | None = None  # a video's best-matching frame: seconds from its start


@dataclass(frozen=True)
class SearchResults:
    score: str  # SCORE_PROBABILITY or SCORE_COSINE
    hits: list[Hit]

    def to_dict(self) -> dict[str, Any]:
        """For JSON: dates as ISO 8601 text."""
        hits = [{**asdict(h), "taken_at": _iso(h.taken_at)} for h in self.hits]
        return {"score_kind": self.score, "hits": hits}

    def to_arrow(self) -> pa.Table:
        """One row per hit; the schema's metadata holds score_kind."""
        rows = [asdict(h) for h in self.hits]
        schema = HIT_SCHEMA.with_metadata({"score_kind": self.score})
        return pa.Table.from_pylist(rows, schema=schema)

    def to_pandas(self) -> pd.DataFrame:
        return arrow_to_pandas(self.to_arrow())

    def by_date(self) -> SearchResults:
        """The same hits, newest first by EXIF date; those without one last, by rank.
        Each keeps its rank by relevance."""
        taken = attrgetter("taken_at")
        dated = sorted((h for h in self.hits if h.taken_at), key=taken, reverse=True)
        return SearchResults(self.score, dated + [h for h in self.hits if not h.taken_at])


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def parse_terms(
    query: str | None,
    add: Sequence[str] = (),
    sub: Sequence[str] = (),
    pictures: Sequence[bytes] = (),
    *,
    files: bool = True,
) -> list[Term]:
    """The terms of a query; pictures are uploaded pictures' bytes, each weighing 1;
    files: whether a term that names a file is that picture."""
    raw = [(t, 1.0) for t in ([query] if query else [])]
    raw += [(t, 1.0) for t in add] + [(t, -1.0) for t in sub]
    terms = [_term(text, sign, files) for text, sign in raw]
    terms += [
        Term("image", f"uploaded picture {i}", 1.0, bytes(data))
        for i, data in enumerate(pictures, 1)
    ]
    if not terms:
        raise UsageError("nothing to search for: give a text, an image path, or --add TERM")
    return terms


def _term(text: str, sign: float, files: bool) -> Term:
    weight, value = 1.0, text
    match = _WEIGHT.match(text)
    if match and not (files and _is_file(Path(text))):
        weight, value = float(match.group(1)), match.group(2)
        if not abs(weight) <= MAX_WEIGHT:
            raise UsageError(
                f"the weight {match.group(1)[:20]} is too large: use one from "
                f"-{MAX_WEIGHT:g} to {MAX_WEIGHT:g}"
            )
    kind = "image" if files and _is_file(Path(value).expanduser()) else "text"
    if kind == "text" and not value.strip():
        raise UsageError("an empty text can't be searched for")
    return Term(kind, value, sign * weight)


def _is_file(path: Path) -> bool:
    """Whether a query term names a picture file. Any term is tried as a path first, so
    one the OS can't take as a name (over 255 bytes, a NUL) is a text, not a crash."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def checked_where(where: str) -> str:
    """The user's SQL filter, once it is sure to stay one condition when wrapped in
    parentheses and ANDed with --in/--after/--before.

    Lance's parser stops at the first complete expression and ignores the rest, so
    `1=1) OR (1=1` would close our parenthesis and OR away the other filters, and a
    parse check of the filter alone can't catch it. Hence a lexical check: parentheses
    outside quotes must balance and never close more than they opened; comments, `;`
    and `$` (dollar quoting), which could hide or end text, are refused."""
    depth, quote = 0, ""
    for i, ch in enumerate(where):
        if quote:
            # Lance reads no backslash escapes, not even in E'...': only a doubled quote,
            # which closes and reopens the string, the same for counting.
            quote = "" if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        elif ch in ";$" or where.startswith(("--", "/*"), i):
            raise UsageError(f"--where: {where!r} may not contain comments, ';' or '$'")
        elif ch in "()":
            depth += 1 if ch == "(" else -1
            if depth < 0:
                break
    if quote or depth != 0:
        raise UsageError(f"--where: {where!r} has unbalanced quotes or parentheses")
    return where


def printable(path: str) -> str:
    """A path as text for a terminal: control characters (a newline, ESC, which could
    forge lines or drive the terminal), bidirectional controls (which reorder what
    follows them) and undecodable bytes are shown escaped, as
    Python writes them (\\n, \\x1b); --print0 and --json keep paths exact."""
    return "".join(_escape(ch) if _hidden(ch) else ch for ch in path)


# Bidirectional controls: a U+202E in a name shows "gpj.exe" as "exe.jpg".
_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _hidden(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cs") or ch in "\u2028\u2029" or ch in _BIDI


def _escape(ch: str) -> str:
    if "\udc80" <= ch <= "\udcff":  # a byte the file system name held that isn't UTF-8
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return repr(ch)[1:-1]


class Searcher:
    """Searches one table. Each tower is built only when a query needs it, so a text
    search never loads the vision model and a search by an indexed picture loads neither;
    the Encoders keep them for the next search."""

    def __init__(self, table: ImageTable, encoders: Encoders, settings: Settings) -> None:
        self.table = table
        self.encoders = encoders
        self.model = encoders.model
        self.settings = settings

    def search(
        self,
        terms: list[Term],
        filters: Filters,
        limit: int,
        *,
        among: np.ndarray | None = None,
    ) -> SearchResults:
        """among: row ids the hits must be among (those with the filter's tags)."""
        _check_limit(limit)
        filters.sql()  # before the model loads: a bad filter fails fast
        kind = _score_kind(terms)
        return self.nearest(self.query_vector(terms), kind, filters, limit, among=among)

    def tagged(
        self, rows: np.ndarray, lowest: np.ndarray, filters: Filters, limit: int
    ) -> SearchResults:
        """The pictures with the filter's tags alone, no text: rows (best first) and the
        lowest logit of the tags of each; scored by that logit's probability."""
        _check_limit(limit)
        allowed = self.table.ids_where(filters.sql())
        if allowed is not None:
            kept = np.isin(rows, allowed)
            rows, lowest = rows[kept], lowest[kept]
        columns = ["path", "taken_at", "width", "height"]
        asked = limit
        while True:
            found = self.table.take_rows(rows[:asked].tolist(), columns).to_pylist()
            for row, value in zip(found, lowest[:asked].tolist(), strict=True):
                row["_lowest"] = value
            shown = _one_per_picture(found, None)
            if len(shown) >= limit or asked >= len(rows):
                break
            asked *= 4  # frames of one video or a RAW+JPEG pair took several places
        hits: list[Hit] = []
        for row in shown[:limit]:
            value = row["_lowest"]
            score = round(1.0 / (1.0 + math.exp(-value)), 6)
            if filters.min_score is not None and score < filters.min_score:
                break
            cosine = (value - self.model.logit_bias) / self.model.logit_scale
            hits.append(_hit(row, len(hits) + 1, score, 1.0 - cosine))
        return SearchResults(SCORE_PROBABILITY, hits)

    def by_vector(
        self,
        vector: np.ndarray,
        filters: Filters,
        limit: int,
        *,
        exclude: str | None = None,
        among: np.ndarray | None = None,
    ) -> SearchResults:
        """The pictures nearest to vector (any length: it is normalised), by cosine;
        exclude: a path left out of the results (the picture a "more like this" is of)."""
        _check_limit(limit)
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (self.table.dim,):
            raise UsageError(
                f"the vector has shape {vector.shape}; "
                f"this index's embeddings have {self.table.dim} dimensions"
            )
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm < 1e-6:
            raise UsageError("the vector must be finite and not zero")
        return self.nearest(
            vector / norm, SCORE_COSINE, filters, limit, exclude=exclude, among=among
        )

    def nearest(
        self,
        vector: np.ndarray,
        kind: str,
        filters: Filters,
        limit: int,
        *,
        exclude: str | None = None,
        among: np.ndarray | None = None,
    ) -> SearchResults:
        """The best limit hits for a unit query vector, scored as kind; among: row ids
        the hits must be among, searched exactly."""
        search = self.settings.search
        how = Nearest(search.nprobes, search.refine_factor, search.filtered_exact_rows)
        columns = ["path", "taken_at", "width", "height"]
        where, among = filters.sql(), None if among is None else np.sort(among)
        # One more, for the excluded path to take the place of.
        asked = limit + (exclude is not None)
        while True:
            if among is not None:
                found = self.table.nearest_among(vector, asked, columns, among, where).to_pylist()
            else:
                found = self.table.nearest(vector, asked, how, columns, where).to_pylist()
            rows = _one_per_picture(found, exclude)
            # Frames of one video, or a RAW and its JPEG, took several places: ask more.
            if len(rows) >= limit or len(found) < asked:
                break
            asked *= 4
        rows = rows[:limit]
        hits = []
        for row in rows:
            score = self._score(1.0 - row["_distance"], kind)
            if filters.min_score is not None and score < filters.min_score:
                break  # rows come best first
            hits.append(_hit(row, len(hits) + 1, score, float(row["_distance"])))
        return SearchResults(kind, hits)

    def query_vector(self, terms: list[Term]) -> np.ndarray:
        total = np.zeros(self.table.dim, dtype=np.float32)
        texts = [t for t in terms if t.kind == "text"]
        if texts:
            encoded = self.encoders.text().encode([t.value for t in texts])
            for term, vector in zip(texts, encoded, strict=True):
                total += term.weight * vector
        for term in terms:
            if term.kind == "image":
                total += term.weight * self.image_vector(term)
        norm = float(np.linalg.norm(total))
        if norm < 1e-6:
            raise UsageError("the query terms cancel each other out: change their weights")
        return total / norm

    def image_vector(self, term: Term) -> np.ndarray:
        """The stored embedding when the picture is indexed, else the vision tower's."""
        from photon_index.decode import read_bytes
        from photon_index.hashing import content_hash

        data = term.data
        if data is None:
            try:
                data = read_bytes(Path(term.value).expanduser())
            except ImageError as e:
                raise ImageError(f"{term.value}: {e}") from e
        stored = self.table.rows_by_hash([content_hash(data)])
        if stored:
            return next(iter(stored.values())).embedding
        return self._embed_picture(data, term.value)

    def _embed_picture(self, data: bytes, name: str) -> np.ndarray:
        from photon_index.decode import decode_file

        encoder = self.encoders.image()
        size = (encoder.preprocess.width, encoder.preprocess.height)
        max_pixels = self.settings.index.max_pixels
        try:
            picture = decode_file(name, data, max_pixels=max_pixels, draft=size)
        except ImageError as e:
            raise ImageError(f"{name}: {e}") from e
        return encoder.encode([picture.image])[0]

    def _score(self, cosine: float, kind: str) -> float:
        if kind == SCORE_COSINE:
            return round(cosine, 6)
        from photon_index.embed import text_image_probability

        return round(float(text_image_probability(np.float64(cosine), self.model)), 6)


def _hit(row: dict[str, Any], rank: int, score: float, distance: float) -> Hit:
    path, at = split_frame(row["path"])
    return Hit(
        id=image_id(row["path"]),
        rank=rank,
        path=path,
        score=score,
        distance=distance,
        taken_at=row["taken_at"],
        width=row["width"],
        height=row["height"],
        at=at,
    )


def _one_per_picture(rows: list[dict[str, Any]], exclude: str | None) -> list[dict[str, Any]]:
    """The rows (best first) of different pictures: a video is shown by its best frame,
    a RAW and the JPEG beside it by the better of the two. exclude: a row path whose
    picture is left out."""
    shown: set[tuple[str, ...]] = set() if exclude is None else _picture(exclude)[0]
    kept = []
    for row in rows:
        claims, conflicts = _picture(row["path"])
        if not conflicts & shown:
            shown |= claims
            kept.append(row)
    return kept


def _picture(path: str) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """What a row stands for, and what it may not be shown beside: its file, and for a
    RAW or a JPEG, its side of the pair its folder and stem make."""
    file = file_of(path)
    claims, conflicts = {("file", file)}, {("file", file)}
    pair = pair_key(file)
    if pair is not None:
        raw = is_raw(file)
        claims.add(("raw" if raw else "jpeg", pair))
        conflicts.add(("jpeg" if raw else "raw", pair))
    return claims, conflicts


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_RESULTS:
        raise UsageError(f"the number of results must be 1 to {MAX_RESULTS:,}, not {limit}")


def _score_kind(terms: list[Term]) -> str:
    single_text = len(terms) == 1 and terms[0].kind == "text" and terms[0].weight > 0
    return SCORE_PROBABILITY if single_text else SCORE_COSINE


def _date_clause(op: str, day: date) -> str:
    """EXIF time where the camera recorded one, else the file's modification time."""
    midnight = datetime(day.year, day.month, day.day)
    exif = f"taken_at {op} CAST({sql_quote(midnight.isoformat(sep=' '))} AS TIMESTAMP)"
    # Whole seconds times 10**9 in integers: a float of nanoseconds loses the last digits.
    mtime = f"mtime_ns {op} {round(midnight.timestamp()) * 1_000_000_000}"
    return f"(({exif}) OR (taken_at IS NULL AND {mtime}))"

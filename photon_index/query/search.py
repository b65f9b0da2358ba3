"""Search: texts and pictures, each with a weight, combined into one query vector and
matched against the index, optionally restricted by folder, date or an SQL filter.

Query syntax (as in rclip): a term is a text or the path of a picture; `--add TERM` and
`--sub TERM` add or subtract more terms; `WEIGHT:TERM` scales one (e.g. `--add 2:stripes`).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np

from photon_index.config import MAX_RESULTS, Settings
from photon_index.errors import ImageError, UsageError
from photon_index.models import ModelFiles
from photon_index.store.table import ImageTable, Nearest, sql_quote

_WEIGHT = re.compile(r"^([+-]?\d+(?:\.\d+)?):(.+)$", re.DOTALL)
# The days the date filters can name exactly: mtime_ns is int64 nanoseconds, and Lance
# casts a TIMESTAMP literal to nanoseconds too, so both hold 1677-09-21 to 2262-04-11.
# A bound outside them is moved onto them (a filter from year 1 keeps everything).
FIRST_DAY = date(1678, 1, 1)
LAST_DAY = date(2262, 1, 1)
SCORE_PROBABILITY = "probability"  # SigLIP's sigmoid: a calibrated text-picture match
SCORE_COSINE = "cosine"  # cosine similarity, for picture and combined queries


@dataclass(frozen=True)
class Term:
    kind: str  # "text" or "image"
    value: str
    weight: float


@dataclass(frozen=True)
class Filters:
    under: Path | None = None
    after: date | None = None
    before: date | None = None
    where: str | None = None

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
        if self.where:
            parts.append(f"({checked_where(self.where)})")
        return " AND ".join(parts) or None


@dataclass(frozen=True)
class Hit:
    rank: int
    path: str
    score: float
    distance: float  # cosine distance, 1 - cosine similarity
    taken_at: datetime | None
    width: int
    height: int


@dataclass(frozen=True)
class SearchResults:
    score: str  # SCORE_PROBABILITY or SCORE_COSINE
    hits: list[Hit]


def parse_terms(query: str | None, add: Sequence[str] = (), sub: Sequence[str] = ()) -> list[Term]:
    raw = [(t, 1.0) for t in ([query] if query else [])]
    raw += [(t, 1.0) for t in add] + [(t, -1.0) for t in sub]
    if not raw:
        raise UsageError("nothing to search for: give a text, an image path, or --add TERM")
    return [_term(text, sign) for text, sign in raw]


def _term(text: str, sign: float) -> Term:
    weight, value = 1.0, text
    match = _WEIGHT.match(text)
    if match and not _is_file(Path(text)):
        weight, value = float(match.group(1)), match.group(2)
    kind = "image" if _is_file(Path(value).expanduser()) else "text"
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
    forge lines or drive the terminal) and undecodable bytes are shown escaped, as
    Python writes them (\\n, \\x1b); --print0 and --json keep paths exact."""
    return "".join(_escape(ch) if _hidden(ch) else ch for ch in path)


def _hidden(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cs") or ch in "\u2028\u2029"


def _escape(ch: str) -> str:
    if "\udc80" <= ch <= "\udcff":  # a byte the file system name held that isn't UTF-8
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return repr(ch)[1:-1]


class Searcher:
    """Loads each tower only when a query needs it, so a text search never reads the
    vision model and a search by an already indexed picture loads neither."""

    def __init__(self, table: ImageTable, model: ModelFiles, settings: Settings) -> None:
        self.table = table
        self.model = model
        self.settings = settings

    def search(self, terms: list[Term], filters: Filters, limit: int) -> SearchResults:
        if not 1 <= limit <= MAX_RESULTS:
            raise UsageError(f"the number of results must be 1 to {MAX_RESULTS:,}, not {limit}")
        where = filters.sql()  # before the model loads: a bad filter fails fast
        vector = self.query_vector(terms)
        search = self.settings.search
        how = Nearest(search.nprobes, search.refine_factor, search.filtered_exact_rows)
        columns = ["path", "taken_at", "width", "height"]
        rows = self.table.nearest(vector, limit, how, columns, where).to_pylist()
        kind = _score_kind(terms)
        hits = [
            Hit(
                rank=i + 1,
                path=row["path"],
                score=self._score(1.0 - row["_distance"], kind),
                distance=float(row["_distance"]),
                taken_at=row["taken_at"],
                width=row["width"],
                height=row["height"],
            )
            for i, row in enumerate(rows)
        ]
        return SearchResults(kind, hits)

    def query_vector(self, terms: list[Term]) -> np.ndarray:
        total = np.zeros(self.table.dim, dtype=np.float32)
        texts = [t for t in terms if t.kind == "text"]
        if texts:
            from photon_index.embed import TextEncoder

            encoder = TextEncoder(self.model, device=self.settings.model.device, threads=0)
            for term, vector in zip(texts, encoder.encode([t.value for t in texts]), strict=True):
                total += term.weight * vector
        for term in terms:
            if term.kind == "image":
                total += term.weight * self.image_vector(Path(term.value).expanduser())
        norm = float(np.linalg.norm(total))
        if norm < 1e-6:
            raise UsageError("the query terms cancel each other out: change their weights")
        return total / norm

    def image_vector(self, path: Path) -> np.ndarray:
        """The stored embedding when the picture is indexed, else the vision tower's."""
        from photon_index.decode import read_bytes
        from photon_index.hashing import content_hash

        try:
            data = read_bytes(path)
        except ImageError as e:
            raise ImageError(f"{path}: {e}") from e
        stored = self.table.rows_by_hash([content_hash(data)])
        if stored:
            return next(iter(stored.values())).embedding
        return self._embed_picture(data, path)

    def _embed_picture(self, data: bytes, path: Path) -> np.ndarray:
        from photon_index.decode import decode
        from photon_index.embed import ImageEncoder

        encoder = ImageEncoder(self.model, device=self.settings.model.device, threads=0)
        size = (encoder.preprocess.width, encoder.preprocess.height)
        try:
            picture = decode(data, max_pixels=self.settings.index.max_pixels, draft=size)
        except ImageError as e:
            raise ImageError(f"{path}: {e}") from e
        return encoder.encode([picture.image])[0]

    def _score(self, cosine: float, kind: str) -> float:
        if kind == SCORE_COSINE:
            return round(cosine, 6)
        from photon_index.embed import text_image_probability

        return round(float(text_image_probability(np.float64(cosine), self.model)), 6)


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

"""What the web app's forms and addresses carry, parsed into the library's terms: a
search (box, uploaded picture, "more like this", filters, sort) and the pictures that
were uploaded to search with."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar
from urllib.parse import urlencode

from photon_index.config import MAX_RESULTS
from photon_index.errors import ImageError, PhotonError, UsageError

if TYPE_CHECKING:
    from photon_index.index import Index
    from photon_index.query.search import Filters, SearchResults

PAGE = 60  # pictures per page of the result grid
# An uploaded picture's pixels at most, far below index.max_pixels: the header is read
# first, so a small file that would decode to gigabytes is refused before decoding.
UPLOAD_PIXELS = 50_000_000
# Searches with an uploaded picture decoding and embedding at once, each up to a few
# hundred MB; the others wait their turn up to BUSY_WAIT seconds, then get a 503.
DECODES = 2
BUSY_WAIT = 30.0
_decoding = threading.BoundedSemaphore(DECODES)
DEFAULT_K = 600  # results a search fetches at most (ten pages)
SORTS = ("relevance", "date")

V = TypeVar("V")


class Busy(PhotonError):
    """The server is decoding as many uploaded pictures as it takes at once (503)."""


class Recent(Generic[V]):
    """The last few values put in, by key; the oldest go first. Thread-safe: routes run
    in a thread pool."""

    def __init__(self, count: int, max_bytes: int | None = None) -> None:
        self.count = count
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, value: V, size: int = 0) -> None:
        with self._lock:
            self._items[key] = (value, size)
            self._items.move_to_end(key)
            while len(self._items) > self.count or (
                self.max_bytes is not None
                and len(self._items) > 1
                and sum(s for _, s in self._items.values()) > self.max_bytes
            ):
                self._items.popitem(last=False)

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            return None if item is None else item[0]


class Uploads(Recent[bytes]):
    """Pictures uploaded to search with. The server holds them, so typing more words,
    paging and the picture page's ←/→ can search with one again without sending it
    again; the address carries only its key."""

    def __init__(self) -> None:
        super().__init__(count=16, max_bytes=512 * 2**20)

    def add(self, data: bytes) -> str:
        if not data:
            raise UsageError("the uploaded picture is empty")
        check_upload(data)
        key = hashlib.sha256(data).hexdigest()[:16]
        self.put(key, data, len(data))
        return key

    def picture(self, key: str) -> bytes:
        data = self.get(key)
        if data is None:
            raise UsageError("the server no longer holds that uploaded picture: upload it again")
        return data


def check_upload(data: bytes) -> None:
    """UsageError if an uploaded picture's header says it has over UPLOAD_PIXELS pixels;
    one that cannot be read is left to the library, which says why."""
    from photon_index.decode import pixel_size

    try:
        width, height = pixel_size(data)
    except ImageError:
        return
    if width * height > UPLOAD_PIXELS:
        raise UsageError(
            f"the uploaded picture has {width}x{height} pixels, above this server's limit "
            f"of {UPLOAD_PIXELS:,}: upload a smaller one"
        )


def parse_box(text: str) -> tuple[str | None, list[str], list[str]]:
    """The search box as the CLI's query, --add and --sub: a word that starts with + or -
    begins a term added or subtracted, which runs to the next such word.
    'horse +stripes -green field' -> ('horse', ['stripes'], ['green field'])."""
    query: list[str] = []
    terms: list[tuple[str, list[str]]] = []
    for word in text.split():
        if len(word) > 1 and word[0] in "+-":
            terms.append((word[0], [word[1:]]))
        elif terms:
            terms[-1][1].append(word)
        else:
            query.append(word)
    add = [" ".join(words) for sign, words in terms if sign == "+"]
    sub = [" ".join(words) for sign, words in terms if sign == "-"]
    return " ".join(query) or None, add, sub


@dataclass(frozen=True)
class SearchForm:
    """One search as the search page's form and its links carry it."""

    q: str = ""
    picture: str = ""  # key of an uploaded picture (Uploads)
    like: str = ""  # image id: pictures like this one, while there are no words or picture
    folder: str = ""  # only pictures under this folder (`in`)
    after: date | None = None
    before: date | None = None
    camera: str = ""
    min_score: float | None = None
    sort: str = "relevance"
    k: int = DEFAULT_K
    page: int = 1
    tags: tuple[str, ...] = ()  # only pictures with every one of these (`tag`, repeatable)
    # Parameters as given, for links that keep the form as the person filled it.
    given: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> SearchForm:
        """From an address's or a form's fields; a bad value is a UsageError naming it."""
        text = {k: str(params.get(k, "")).strip() for k in _FIELDS}
        sort = text["sort"] or "relevance"
        if sort not in SORTS:
            raise UsageError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        # A form or an address may repeat `tag`; a plain mapping holds one.
        getlist = getattr(params, "getlist", None)
        given_tags = getlist("tag") if getlist else [params.get("tag", "")]
        tags = tuple(dict.fromkeys(t.strip() for t in given_tags if str(t).strip()))
        return cls(
            q=str(params.get("q", "")),
            picture=text["picture"],
            like=checked_id(text["like"]) if text["like"] else "",
            folder=text["in"],
            after=_day(text["after"], "after"),
            before=_day(text["before"], "before"),
            camera=text["camera"],
            min_score=_number(text["min_score"], "min_score", -1.0, 1.0),
            sort=sort,
            k=int(_number(text["k"], "k", 1, MAX_RESULTS) or DEFAULT_K),
            page=int(_number(text["page"], "page", 1, MAX_RESULTS) or 1),
            tags=tags,
            given=tuple((k, text[k] if k != "q" else str(params.get("q", ""))) for k in _FIELDS),
        )

    @property
    def empty(self) -> bool:
        return not (self.q.strip() or self.picture or self.like or self.tags)

    @property
    def liking(self) -> bool:
        """A "more like this" search: words or a picture, once given, search instead."""
        return bool(self.like) and not self.q.strip() and not self.picture

    @property
    def filtered(self) -> bool:
        return any((self.folder, self.after, self.before, self.camera, self.min_score is not None))

    def filters(self) -> Filters:
        from photon_index.query.search import Filters

        # The server's working folder means nothing to the person at the browser.
        if self.folder and not os.path.isabs(self.folder):
            raise UsageError(f"in must be a full path to a folder, not {self.folder!r}")
        return Filters(
            under=Path(self.folder) if self.folder else None,
            after=self.after,
            before=self.before,
            camera=self.camera or None,
            min_score=self.min_score,
            tags=self.tags,
        )

    def query(self, tags: Sequence[str] | None = None, **changes: str | int) -> str:
        """This form's address query, with changes (tags: the `tag` filters instead of
        this form's); empty fields are left out."""
        values = {k: v for k, v in self.given if k != "page"}
        values.update({k: str(v) for k, v in changes.items()})
        pairs = [(k, v) for k, v in values.items() if v != ""]
        return urlencode(pairs + [("tag", t) for t in (self.tags if tags is None else tags)])

    def with_tag(self, tag: str) -> str:
        """This form's address query with one more tag filter."""
        return self.query(tags=[*self.tags, tag] if tag not in self.tags else self.tags)

    def without_tag(self, tag: str) -> str:
        return self.query(tags=[t for t in self.tags if t != tag])

    def run(self, index: Index, upto: int, pictures: Sequence[bytes] = ()) -> SearchResults:
        """The results, at least the first `upto` (all k when sorted by date: the date
        order is that of the k best matches); pictures: the uploaded one's bytes."""
        limit = self.k if self.sort == "date" else min(self.k, upto)
        filters = self.filters()
        if self.liking:
            results = index.similar(self.like, limit=limit, filters=filters)
        else:
            query, add, sub = parse_box(self.q)
            if pictures and not _decoding.acquire(timeout=BUSY_WAIT):
                raise Busy("the server is busy with other pictures: try again in a moment")
            try:
                results = index.search(
                    query,
                    add=add,
                    sub=sub,
                    pictures=pictures,
                    limit=limit,
                    filters=filters,
                    files=False,
                )
            finally:
                if pictures:
                    _decoding.release()
        return results.by_date() if self.sort == "date" else results


_FIELDS = (
    "q",
    "picture",
    "like",
    "in",
    "after",
    "before",
    "camera",
    "min_score",
    "sort",
    "k",
    "page",
)
_IMAGE_ID = re.compile(r"[0-9a-f]{16}")


def checked_id(image_id: str) -> str:
    """An image id as the index makes them, else NotFoundError: whatever else is in an
    address never reaches the library."""
    from photon_index.errors import NotFoundError

    if not _IMAGE_ID.fullmatch(image_id):
        raise NotFoundError(f"no picture {image_id[:40]!r} in the index")
    return image_id


def _day(text: str, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{name} must be a date as YYYY-MM-DD, not {text!r}") from None


def _number(text: str, name: str, low: float, high: float) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name} must be a number, not {text!r}") from None
    if not low <= value <= high:  # NaN too
        raise UsageError(f"{name} must be a number from {low:g} to {high:g}, not {text!r}")
    return value

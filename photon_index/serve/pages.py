"""The HTML pages: search, picture, duplicates, library, and the API's docs. Each works
as plain links and forms; htmx (when the browser runs scripts) makes the search update
as one types, the grid scroll on, and the library page follow a running index."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from photon_index.errors import NotFoundError, PhotonError
from photon_index.index import Index
from photon_index.serve import duplicates
from photon_index.serve.app import status_of
from photon_index.serve.forms import PAGE, SearchForm, checked_id

if TYPE_CHECKING:
    from photon_index.query.search import Hit
    from photon_index.tags import TagCount

router = APIRouter(include_in_schema=False)
GROUPS_PAGE = 20  # duplicate groups per page
CHIPS = 24  # the library's most common tags shown above the results


def _index(request: Request) -> Index:
    return request.app.state.index


def _render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    response = request.app.state.templates.TemplateResponse(
        request, name, context, status_code=status
    )
    response.headers["Vary"] = "HX-Request"  # a page and its fragment share an address
    return response


def _pictures(request: Request, form: SearchForm) -> list[bytes]:
    return [request.app.state.uploads.picture(form.picture)] if form.picture else []


@dataclass(frozen=True)
class Grid:
    """One page of a search's results, as the grid shows it."""

    form: SearchForm
    score: str  # the kind of score: "probability" or "cosine"
    hits: list[Hit]  # this page's
    offset: int  # of the first hit on this page in the whole list
    more: bool  # whether a next page may hold more


def _grid(request: Request, form: SearchForm) -> Grid | None:
    if form.empty:
        return None
    upto = form.page * PAGE
    results = form.run(_index(request), upto + 1, _pictures(request, form))
    start = (form.page - 1) * PAGE
    hits = results.hits[start:upto]
    return Grid(form, results.score, hits, start, len(results.hits) > upto)


@router.get("/")
def search_page(request: Request) -> Response:
    form, grid, error, status = SearchForm(q=request.query_params.get("q", "")), None, "", 200
    try:
        form = SearchForm.parse(request.query_params)
        grid = _grid(request, form)
    except PhotonError as e:
        error, status = str(e), status_of(e)
    # htmx asks for the results alone, except when it restores a page from history.
    headers = request.headers
    partial = "hx-request" in headers and "hx-history-restore-request" not in headers
    name = "_results.html" if partial else "search.html"
    context = {"form": form, "grid": grid, "error": error}
    if not partial:  # the chips count every picture's tags: not on each keystroke
        context["chips"] = _chips(_index(request))
    return _render(request, name, context, status)


def _chips(index: Index) -> list[TagCount]:
    """The library's most common tags; none before it is tagged."""
    try:
        return index.tags()[:CHIPS]
    except PhotonError:
        return []


@router.get("/results")
def more_results(request: Request) -> Response:
    """The next page of cards, for the grid's infinite scroll."""
    try:
        form = SearchForm.parse(request.query_params)
        return _render(request, "_cards.html", {"grid": _grid(request, form)})
    except PhotonError as e:  # e.g. the uploaded picture is no longer held
        context = {"error": str(e), "grid": None, "form": SearchForm()}
        return _render(request, "_results.html", context, status_of(e))


@router.post("/search")
async def upload_search(request: Request) -> Response:
    """The search form sent whole (Enter, or a picture chosen, dropped or pasted): the
    picture is kept by the server, and the browser goes to the search's address."""
    fields = await request.form()
    text = {k: v for k, v in fields.items() if isinstance(v, str)}
    form = SearchForm.parse(text)
    changes: dict[str, str] = {}
    upload = fields.get("upload")
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read()
        changes["picture"] = request.app.state.uploads.add(data)
    return RedirectResponse(f"/?{form.query(**changes)}", status_code=303)


@router.get("/pictures/{image_id}")
def picture_page(request: Request, image_id: str) -> Response:
    index = _index(request)
    record = index.image(checked_id(image_id))
    if record is None:
        raise NotFoundError(f"no picture {image_id} in the index")
    form = SearchForm.parse(request.query_params)
    at = _position(request.query_params.get("at", ""))
    context: dict[str, Any] = {"record": record, "form": form, "at": at}
    context["tags"] = index.stored_tags(record.path)
    context.update(_neighbours(request, form, image_id, at))
    context["groups"] = duplicates.views(index, index.duplicates_of(image_id))
    return _render(request, "picture.html", context)


def _position(text: str) -> int | None:
    # ASCII digits only: '²'.isdigit() is True, but int() refuses it.
    return int(text) if text.isascii() and text.isdigit() and int(text) < 10**6 else None


def _neighbours(
    request: Request, form: SearchForm, image_id: str, at: int | None
) -> dict[str, Any]:
    """The pictures before and after this one in the search it was opened from, as
    (id, position) pairs, for ←/→. None where there is none or the search is gone."""
    if form.empty or at is None:
        return {"prev": None, "next": None}
    try:
        hits = form.run(_index(request), at + 2, _pictures(request, form)).hits
    except PhotonError:  # e.g. the uploaded picture is no longer held: no neighbours
        return {"prev": None, "next": None}
    ids = [h.id for h in hits]
    if at >= len(ids) or ids[at] != image_id:
        if image_id not in ids:
            return {"prev": None, "next": None}
        at = ids.index(image_id)
    return {
        "prev": (ids[at - 1], at - 1) if at > 0 else None,
        "next": (ids[at + 1], at + 1) if at + 1 < len(ids) else None,
    }


@router.get("/duplicates")
def duplicates_page(request: Request) -> Response:
    index = _index(request)
    similar = request.query_params.get("similar") == "1"
    page = _position(request.query_params.get("page", "")) or 1
    groups = index.dedupe(similar=similar)
    shown = groups[(page - 1) * GROUPS_PAGE : page * GROUPS_PAGE]
    report = request.app.state.reports.get(request.query_params.get("report", ""))
    context = {
        "groups": duplicates.views(index, shown),
        "total": len(groups),
        "copies": sum(len(g.duplicates) for g in groups if g.tier != "similar"),
        "alike": sum(len(g.duplicates) for g in groups if g.tier == "similar"),
        "similar": similar,
        "page": page,
        "pages": max(1, -(-len(groups) // GROUPS_PAGE)),
        "report": report,
    }
    return _render(request, "duplicates.html", context)


@router.post("/duplicates/actions")
async def duplicates_action(request: Request) -> Response:
    """An action from the duplicates page: `act` is ACTION:KEY (one group) or ACTION:all
    (every group of copies on the page), ACTION-similar:KEY (a group of similar pictures,
    from its own buttons), or undo; the outcome shows on the page it goes back to."""
    fields = await request.form()
    text = {k: v for k, v in fields.multi_items() if isinstance(v, str)}
    action, _, target = str(fields.get("act", "")).partition(":")
    action, alike = action.removesuffix("-similar"), action.endswith("-similar")
    if target == "all":  # copies only: similar pictures go by their own buttons
        keys = [str(k) for k in fields.getlist("group") if not duplicates.is_similar(str(k))]
    else:
        keys = [target]
    choices = [
        duplicates.Choice(k, text.get(f"keep-{k}") or None, _members(text.get(f"members-{k}")))
        for k in keys
        if k
    ]
    similar = fields.get("similar") == "1"  # the page shows similar pictures

    def run() -> duplicates.Outcome:
        with request.app.state.writes:
            try:
                report = duplicates.act(
                    _index(request),
                    action,
                    choices,
                    similar=alike,
                    destination=text.get("destination", ""),
                )
            except PhotonError as e:
                return duplicates.Outcome.failure(action, str(e), text.get("destination", ""))
        return duplicates.outcome(action, report, text.get("destination", ""))

    outcome = await run_in_threadpool(run)
    key = secrets.token_hex(8)
    request.app.state.reports.put(key, outcome)
    back = f"/duplicates?report={key}" + ("&similar=1" if similar else "")
    page = str(fields.get("page", ""))
    if _position(page) not in (None, 1):
        back += f"&page={page}"
    return RedirectResponse(back, status_code=303)


@router.get("/library")
def library_page(request: Request) -> Response:
    status = _index(request).status()
    return _render(request, "library.html", {"status": status})


@router.get("/library/progress")
def library_progress(request: Request) -> Response:
    """The last run's block, which the library page polls while a run goes on."""
    status = _index(request).status()
    return _render(request, "_progress.html", {"status": status})


@router.get("/docs")
def api_docs(request: Request) -> Response:
    """The API, from its OpenAPI schema (Swagger UI would load from a CDN)."""
    schema = request.app.openapi()
    routes = [
        (path, method.upper(), operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]
    return _render(request, "docs.html", {"routes": routes, "info": schema["info"]})


def _members(shown: str | None) -> frozenset[str] | None:
    """The image ids a group's form showed (None from a form without them)."""
    return None if shown is None else frozenset(filter(None, shown.split(",")))

"""The web app: FastAPI over one long-lived Index. HTML pages (pages.py) and the JSON API
(api.py) are thin: they parse a request, call the library, and render what it returns."""

from __future__ import annotations

import threading
from collections.abc import Collection
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from photon_index.errors import (
    ConfigError,
    DatabaseError,
    FileChangedError,
    ModelError,
    NotFoundError,
    PhotonError,
)
from photon_index.index import Index
from photon_index.serve.forms import PAGE, Busy, Recent, Uploads
from photon_index.serve.security import LOOPBACK_HOSTS, Guard
from photon_index.sizes import human_size

HERE = Path(__file__).parent
MAX_UPLOAD = 64 * 2**20  # bytes in one request body: the largest picture one can search with


def create_app(
    index: Index,
    *,
    token: str | None = None,
    hosts: Collection[str] | None = LOOPBACK_HOSTS,
    max_upload: int = MAX_UPLOAD,
) -> FastAPI:
    """The app serving index. token: required of every request but /api/health (None:
    none, for a loopback bind); hosts: the Host names it answers (None: any)."""
    from photon_index import __version__
    from photon_index.serve import api, pages

    app = FastAPI(
        title="photon",
        version=__version__,
        summary="Search and dedupe a local photo library.",
        docs_url=None,  # Swagger UI loads from a CDN: /docs is our own page (pages.py)
        redoc_url=None,
    )
    app.state.index = index
    app.state.templates = templates()
    app.state.uploads = Uploads()
    app.state.reports = Recent[Any](count=32)  # dedupe outcomes, for the page after a POST
    app.state.writes = threading.Lock()  # one dedupe action at a time
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(PhotonError, _photon_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _bug)
    app.add_middleware(Guard, token=token, hosts=hosts, max_body=max_upload)
    return app


def templates() -> Jinja2Templates:
    jinja = Jinja2Templates(directory=HERE / "templates")
    jinja.env.filters["size"] = human_size
    jinja.env.filters["day"] = _day
    jinja.env.filters["when"] = _when
    jinja.env.filters["basename"] = lambda path: Path(path).name
    jinja.env.globals["thumb"] = thumbnail_url
    jinja.env.globals["PAGE"] = PAGE
    return jinja


def thumbnail_url(image_id: str, size: int = 256, content_hash: str | None = None) -> str:
    """A thumbnail's address; with the picture's content hash it is cached for good."""
    version = f"&v={content_hash[:16]}" if content_hash else ""
    return f"/api/images/{image_id}/thumbnail?size={size}{version}"


def status_of(error: PhotonError) -> int:
    """The HTTP status of a library error: the request's fault is 4xx; a database or
    model that cannot be used is the server's state, 503."""
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, FileChangedError):
        return 409  # the file is not what was indexed any more: index again
    if isinstance(error, (DatabaseError, ModelError, ConfigError, Busy)):
        return 503
    return 400


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(request: Request, status: int, message: str) -> Response:
    # A message may echo what was sent, lone surrogates included: escape what UTF-8 can't.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    page = request.app.state.templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )
    return page


async def _photon_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, PhotonError)
    return error_response(request, status_of(error), " ".join(str(error).splitlines()))


async def _invalid_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = "; ".join(_problem(e) for e in error.errors())
    if wants_json(request):
        return JSONResponse({"error": problems}, status_code=422)
    return error_response(request, 400, problems)


def _problem(error: dict[str, Any]) -> str:
    """'k: Input should be less than or equal to 10000', naming the field as sent."""
    where = [str(p) for p in error["loc"]]
    if len(where) > 1 and where[0] in ("query", "path", "body", "header"):
        where = where[1:]
    return f"{'.'.join(where)}: {error['msg']}"


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    message = error.detail if isinstance(error.detail, str) else "bad request"
    if error.status_code == 404 and message == "Not Found":
        message = f"nothing at {request.url.path}"
    response = error_response(request, error.status_code, message)
    response.headers.update(error.headers or {})
    return response


async def _bug(request: Request, error: Exception) -> Response:
    """A true bug: a 500 the browser or client can show instead of a dropped connection.
    Starlette raises the error again once this is sent, and uvicorn logs its traceback."""
    message = "the server failed on this request (a bug; the server's log has the details)"
    if wants_json(request):
        return JSONResponse({"error": message}, status_code=500)
    return HTMLResponse(f"<!doctype html><title>photon</title><h1>500</h1><p>{message}</p>", 500)


def _day(value: datetime | date | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "-"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"

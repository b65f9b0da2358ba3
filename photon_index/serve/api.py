"""The JSON API under /api (OpenAPI at /openapi.json, read at /docs). Pictures are named
by their image id, a stable opaque key: no address ever holds a file's path."""

from __future__ import annotations

import logging
import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from photon_index.config import MAX_RESULTS
from photon_index.errors import FileChangedError, NotFoundError, PhotonError, UsageError
from photon_index.index import Index
from photon_index.serve import duplicates
from photon_index.serve.forms import SearchForm, check_upload, checked_id
from photon_index.store.location import is_remote

router = APIRouter(prefix="/api", tags=["api"])
log = logging.getLogger("photon.serve")

# The content type of each format the index records: an original is served as what
# the index decoded it as, never as what its name or bytes might suggest.
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # a camera JPEG with a preview in its MP extension
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "HEIF": "image/heif",
    "AVIF": "image/avif",
}
IMMUTABLE = "public, max-age=31536000, immutable"

K = Annotated[int | None, Query(ge=1, le=MAX_RESULTS, description="Results (default: 10).")]
In = Annotated[str | None, Query(alias="in", description="Only pictures under this folder.")]
After = Annotated[date | None, Query(description="Taken on or after (YYYY-MM-DD).")]
Before = Annotated[date | None, Query(description="Taken before (YYYY-MM-DD).")]
Camera = Annotated[str | None, Query(description="Only pictures from this camera.")]
MinScore = Annotated[float | None, Query(ge=-1, le=1, description="Leave out lower scores.")]
Sort = Annotated[Literal["relevance", "date"], Query(description="Order of the results.")]


def _index(request: Request) -> Index:
    return request.app.state.index


@router.get("/health", summary="Whether the index is readable (for monitoring; no token)")
def health(request: Request) -> JSONResponse:
    try:
        status = _index(request).status()
    except PhotonError:
        # Open to anyone who can reach the server: the details stay in its log.
        log.exception("health check failed")
        return JSONResponse({"ok": False, "error": "the index cannot be read"}, status_code=503)
    if not status.exists:
        return JSONResponse({"ok": False, "error": "no index yet"}, status_code=503)
    return JSONResponse(
        {
            "ok": True,
            "database": "readable",
            "model": status.model,
            "rows": status.rows,
            "version": status.version,
        }
    )


@router.get("/search", summary="Search by text; +term and -term add and subtract terms")
def search(
    request: Request,
    q: Annotated[str, Query(description="Text, e.g. `horse +stripes -field`.")],
    k: K = None,
    folder: In = None,
    after: After = None,
    before: Before = None,
    camera: Camera = None,
    min_score: MinScore = None,
    sort: Sort = "relevance",
    tag: Annotated[
        list[str] | None,
        Query(description="Only pictures with this tag (repeatable: all of them)."),
    ] = None,
) -> dict[str, Any]:
    index = _index(request)
    k = k or index.settings.search.limit
    form = SearchForm(
        q=q,
        folder=folder or "",
        after=after,
        before=before,
        camera=camera or "",
        min_score=min_score,
        sort=sort,
        k=k,
        tags=tuple(t for t in tag or () if t.strip()),
    )
    return form.run(index, k).to_dict()


class VectorSearch(BaseModel):
    """A search by a query vector, e.g. one from another tool with the same model."""

    model_config = ConfigDict(allow_inf_nan=False, populate_by_name=True)

    vector: list[float] = Field(min_length=1, max_length=8192)
    k: int | None = Field(None, ge=1, le=MAX_RESULTS)
    folder: str | None = Field(None, alias="in")
    after: date | None = None
    before: date | None = None
    camera: str | None = None
    min_score: float | None = Field(None, ge=-1, le=1)
    sort: Literal["relevance", "date"] = "relevance"


_UPLOAD_FIELDS: dict[str, Any] = {
    "picture": {"type": "string", "format": "binary", "description": "The picture."},
    "q": {"type": "string", "description": "Text to combine with it (+term, -term)."},
    "k": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS},
    "in": {"type": "string"},
    "after": {"type": "string", "format": "date"},
    "before": {"type": "string", "format": "date"},
    "camera": {"type": "string"},
    "min_score": {"type": "number", "minimum": -1, "maximum": 1},
    "sort": {"type": "string", "enum": ["relevance", "date"]},
}


@router.post(
    "/search",
    summary="Search by an uploaded picture (multipart, with optional text) or by a vector (JSON)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["picture"],
                        "properties": _UPLOAD_FIELDS,
                    }
                },
                "application/json": {"schema": VectorSearch.model_json_schema(by_alias=True)},
            },
        }
    },
)
async def search_by(request: Request) -> dict[str, Any]:
    index = _index(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            body = VectorSearch.model_validate_json(await request.body())
        except ValidationError as e:
            raise RequestValidationError(e.errors(), body=None) from None
        form = SearchForm(
            folder=body.folder or "",
            after=body.after,
            before=body.before,
            camera=body.camera or "",
            min_score=body.min_score,
            sort=body.sort,
        )
        vector = np.asarray(body.vector, dtype=np.float32)
        limit = body.k or index.settings.search.limit
        results = await run_in_threadpool(
            index.search_vector, vector, limit=limit, filters=form.filters()
        )
        return (results.by_date() if body.sort == "date" else results).to_dict()
    if kind != "multipart/form-data":
        raise UsageError("send a picture as multipart/form-data, or a vector as JSON")
    fields = await request.form()
    picture = fields.get("picture")
    if not isinstance(picture, UploadFile):
        raise UsageError("send the picture as the multipart field 'picture'")
    data = await picture.read()
    if not data:
        raise UsageError("the uploaded picture is empty")
    check_upload(data)
    text = {name: value for name, value in fields.items() if isinstance(value, str)}
    form = SearchForm.parse({**text, "k": text.get("k") or str(index.settings.search.limit)})
    results = await run_in_threadpool(form.run, index, form.k, [data])
    return results.to_dict()


@router.get("/images/{image_id}", summary="A picture's metadata")
def image(request: Request, image_id: str) -> dict[str, Any]:
    record = _record(_index(request), image_id)
    return {
        **jsonable_encoder(record),
        "thumbnail": f"/api/images/{record.id}/thumbnail",
        "file": f"/api/images/{record.id}/file",
    }


@router.get(
    "/images/{image_id}/thumbnail",
    summary="A picture's thumbnail (WebP, cached; `size` is its longer side in pixels)",
    response_class=FileResponse,
)
def thumbnail(
    request: Request,
    image_id: str,
    size: Annotated[int, Query(ge=32, le=2048)] = 256,
    v: Annotated[
        str | None,
        Query(description="The picture's content hash (its first 16 hex digits or more)."),
    ] = None,
) -> Response:
    path = _index(request).thumbnail(checked_id(image_id), size)
    # The cache names a thumbnail by its picture's content hash and its size: an ETag
    # that changes exactly when the thumbnail does. An address that names the content
    # (v) can be cached for good; one that does not is checked again each time.
    etag = f'"{path.stem}"'
    fixed = v is not None and len(v) >= 16 and path.stem.startswith(v)
    headers = {"Cache-Control": IMMUTABLE if fixed else "no-cache", "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return FileResponse(path, media_type="image/webp", headers=headers)


@router.get(
    "/images/{image_id}/file",
    summary="The original picture, as its indexed format's content type",
    response_class=FileResponse,
)
def original(request: Request, image_id: str) -> Response:
    record = _record(_index(request), image_id)
    media = MEDIA_TYPES.get(record.format.upper())
    if media is None:
        raise NotFoundError(f"picture {record.id} is a {record.format} file, which is not served")
    if is_remote(record.path):  # an s3:// object: its bytes, checked against the index
        return Response(_index(request).original(record.id), media_type=media)
    try:
        stat = os.stat(record.path)
    except OSError as e:
        raise NotFoundError(
            f"picture {record.id} is in the index but cannot be read ({e.strerror}): "
            "run `photon index` again"
        ) from e
    # Only what was indexed is served, not a file that took its place since.
    indexed_us = round(record.mtime.timestamp() * 1e6)
    if stat.st_size != record.file_size or abs(stat.st_mtime_ns // 1000 - indexed_us) > 1:
        raise FileChangedError(
            f"picture {record.id} changed since it was indexed: run `photon index` again"
        )
    return FileResponse(
        record.path,
        media_type=media,
        filename=Path(record.path).name,
        content_disposition_type="inline",
    )


@router.get("/images/{image_id}/similar", summary="Pictures like this one")
def similar(
    request: Request,
    image_id: str,
    k: K = None,
    folder: In = None,
    after: After = None,
    before: Before = None,
    camera: Camera = None,
    min_score: MinScore = None,
) -> dict[str, Any]:
    index = _index(request)
    k = k or index.settings.search.limit
    form = SearchForm(
        like=checked_id(image_id),
        folder=folder or "",
        after=after,
        before=before,
        camera=camera or "",
        min_score=min_score,
        k=k,
    )
    return form.run(index, k).to_dict()


@router.get("/duplicates", summary="Groups of duplicates, each with its suggested keeper")
def list_duplicates(
    request: Request,
    similar: Annotated[
        bool, Query(description="Also groups of similar pictures: the same scene, not copies.")
    ] = False,
) -> dict[str, Any]:
    groups = _index(request).dedupe(similar=similar)
    return {"groups": [group_json(g) for g in groups]}


def group_json(group: Any) -> dict[str, Any]:
    from photon_index.store.schema import image_id

    def named(paths: list[str]) -> list[dict[str, str]]:
        return [{"id": image_id(p), "path": p} for p in paths]

    return {
        "key": duplicates.group_key(group),
        "tier": group.tier,
        "keep": {"id": image_id(group.keep), "path": group.keep},
        "reason": group.reason,
        "duplicates": [
            {**d, "evidence": group.evidence.get(d["path"], {})} for d in named(group.duplicates)
        ],
        "distance": group.distance,
        "aliases": named(group.aliases),
        "beyond": named(group.beyond),
    }


class GroupChoice(BaseModel):
    key: str = Field(description="The group's `key` from GET /api/duplicates.")
    keep: str | None = Field(None, description="Image id of the picture to keep instead.")
    members: list[str] | None = Field(
        None,
        description="Image ids of the group's keeper and duplicates as shown by GET "
        "/api/duplicates: the action is refused if the group has changed since.",
    )


class DuplicateAction(BaseModel):
    action: Literal["move", "trash", "dismiss", "undo"] = Field(
        description="move or trash the copies (journaled; undo puts the last batch back), "
        "or dismiss: remember the group as not duplicates."
    )
    groups: list[GroupChoice] = Field(default_factory=list)
    destination: str = Field("", description="move: the folder (outside the library).")
    similar: bool = Field(
        False,
        description="Move or trash groups of similar pictures (tier `similar`: the same "
        "scene, not copies) too; without it such a group is refused.",
    )


@router.post("/duplicates/actions", summary="Move, trash or dismiss duplicates, or undo")
def duplicate_action(request: Request, body: DuplicateAction) -> dict[str, Any]:
    choices = [
        duplicates.Choice(g.key, g.keep, None if g.members is None else frozenset(g.members))
        for g in body.groups
    ]
    with request.app.state.writes:
        outcome = duplicates.act(
            _index(request),
            body.action,
            choices,
            similar=body.similar,
            destination=body.destination,
        )
    if body.action == "dismiss":
        return {"dismissed": [c.key for c in choices]}
    return jsonable_encoder(outcome)


def _record(index: Index, image_id: str) -> Any:
    record = index.image(checked_id(image_id))
    if record is None:
        raise NotFoundError(f"no picture {image_id} in the index")
    return record

"""The `photon` command: parses arguments, calls the library, prints. Heavy modules are
imported inside the commands so `photon --help` and searches start fast."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from photon_index.config import Settings
from photon_index.errors import PhotonError

app = typer.Typer(
    help="Local-first AI photo library: index, search and dedupe your pictures.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="List, download and locate models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="Index folder (default: user data dir or $PHOTON_HOME/db)."),
]
ModelOption = Annotated[str | None, typer.Option("--model", help="Registry name or model folder.")]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="auto, cpu, cuda, coreml or directml.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _settings(device: str | None = None) -> Settings:
    return Settings.load().with_overrides("model", device=device)


def _json(value: Any) -> str:
    def default(o: Any) -> Any:
        if dataclasses.is_dataclass(o):
            return dataclasses.asdict(o)
        if isinstance(o, (datetime, date)):
            return o.isoformat()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(type(o).__name__)

    return json.dumps(value, default=default, ensure_ascii=False)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="Folders (or files) to index.")],
    db: DbOption = None,
    model: ModelOption = None,
    device: DeviceOption = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Embedding processes.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images per model call.")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Glob of paths to leave out (repeatable).")
    ] = None,
    prune: Annotated[
        bool, typer.Option(help="Remove files that disappeared from the index.")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Add new and changed pictures under PATHS to the index."""
    from photon_index.index import Index

    settings = _settings(device)
    settings = settings.with_overrides(
        "index",
        workers=workers,
        batch_size=batch_size,
        prune=prune,
        exclude=[*settings.index.exclude, *(exclude or [])],
    )
    progress = not as_json and sys.stderr.isatty()
    report = Index(db, settings=settings).update(paths, model=model, progress=progress)
    if as_json:
        typer.echo(_json(report))
        return
    for failure in report.failures:
        typer.echo(f"failed: {failure.path}: {failure.error}", err=True)
    pruned = f"{report.removed} removed" if prune else "pruning off"
    typer.echo(
        f"{report.discovered} discovered, {report.indexed} indexed, {report.reused} reused, "
        f"{report.skipped} unchanged, {pruned}, {report.failed} failed "
        f"in {report.elapsed:.1f} s ({report.images_per_second:.1f} images/s)"
    )


@app.command()
def search(
    query: Annotated[
        str | None, typer.Argument(help="Text, or the path of a picture, to search for.")
    ] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Search by this picture.")] = None,
    add: Annotated[
        list[str] | None, typer.Option("--add", help="Add a text or picture (WEIGHT:TERM).")
    ] = None,
    sub: Annotated[
        list[str] | None, typer.Option("--sub", help="Subtract a text or picture (WEIGHT:TERM).")
    ] = None,
    limit: Annotated[int | None, typer.Option("-k", "--limit", min=1, help="Results.")] = None,
    under: Annotated[Path | None, typer.Option("--in", help="Only pictures under DIR.")] = None,
    after: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Taken on or after DATE.")
    ] = None,
    before: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Taken before DATE.")
    ] = None,
    where: Annotated[str | None, typer.Option(help="SQL filter on the table's columns.")] = None,
    db: DbOption = None,
    device: DeviceOption = None,
    as_json: JsonOption = False,
    paths: Annotated[bool, typer.Option("--paths", help="Print only paths, one a line.")] = False,
) -> None:
    """Find pictures by text ("dog on beach"), by picture (--image cat.jpg), or both."""
    from photon_index.index import Index
    from photon_index.query.search import Filters

    if image is not None:
        if query is not None:
            add = [query, *(add or [])]
        query = str(image)
    filters = Filters(
        under=under,
        after=after.date() if after else None,
        before=before.date() if before else None,
        where=where,
    )
    results = Index(db, settings=_settings(device)).search(
        query, add=add or [], sub=sub or [], limit=limit, filters=filters
    )
    if as_json:
        typer.echo(
            _json([{**dataclasses.asdict(h), "score_kind": results.score} for h in results.hits])
        )
    elif paths:
        for hit in results.hits:
            typer.echo(hit.path)
    elif not results.hits:
        typer.echo("no matches", err=True)
    else:
        label = "match" if results.score == "probability" else "cosine"
        typer.echo(f"{'#':>3}  {label:>7}  {'date':10}  path")
        for hit in results.hits:
            day = hit.taken_at.date().isoformat() if hit.taken_at else "-"
            typer.echo(f"{hit.rank:>3}  {hit.score:7.4f}  {day:10}  {hit.path}")


@app.command()
def dedupe(
    db: DbOption = None,
    similar: Annotated[
        bool, typer.Option("--similar", help="Also group pictures of the same scene.")
    ] = False,
    distance: Annotated[
        int | None, typer.Option(min=0, max=64, help="Largest pHash distance of near copies.")
    ] = None,
    cosine: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Smallest cosine for --similar.")
    ] = None,
    move_to: Annotated[
        Path | None, typer.Option(help="Move the copies here, keeping their relative paths.")
    ] = None,
    delete: Annotated[bool, typer.Option(help="Delete the copies (needs --yes).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --delete.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Find exact copies, near copies and (--similar) the same scene; report, move or delete."""
    from photon_index.errors import UsageError
    from photon_index.index import Index

    if delete and not yes:
        raise UsageError("--delete removes files for good: add --yes to confirm")
    if delete and move_to:
        raise UsageError("choose one of --move-to and --delete")
    index = Index(db, settings=_settings())
    groups = index.dedupe(similar=similar, phash_distance=distance, similar_cosine=cosine)
    action = None
    if move_to:
        action = index.move_duplicates(groups, move_to)
    elif delete:
        action = index.delete_duplicates(groups)
    if as_json:
        done = dataclasses.asdict(action) if action else {"moved": [], "deleted": [], "failed": []}
        typer.echo(_json({"groups": groups, **done}))
        return
    for group in groups:
        typer.echo(f"[{group.tier}] keep {group.keep}  ({group.reason})")
        for path in group.duplicates:
            typer.echo(f"    {path}")
    copies = sum(len(g.duplicates) for g in groups)
    typer.echo(f"{len(groups)} groups, {copies} copies")
    if action:
        for path, error in action.failed:
            typer.echo(f"failed: {path}: {error}", err=True)
        typer.echo(
            f"{len(action.moved)} moved, {len(action.deleted)} deleted, {len(action.failed)} failed"
        )


@app.command()
def demo(
    folder: Annotated[
        Path | None, typer.Option("--dir", help="Where to put the demo (default: a new temp dir).")
    ] = None,
) -> None:
    """Draw pictures, index, search and dedupe them with the bundled tiny model, offline."""
    import tempfile

    from photon_index.demo import run_demo

    workdir = folder or Path(tempfile.mkdtemp(prefix="photon-demo-"))
    for line in run_demo(workdir, _settings()):
        typer.echo(line)


@app.command()
def optimize(db: DbOption = None) -> None:
    """Compact the index and rebuild its ANN index (after large changes)."""
    from photon_index.index import Index

    Index(db, settings=_settings()).optimize()
    typer.echo("optimized")


@app.command()
def info(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show the index: where it is, its model, rows, size and version."""
    from photon_index.index import Index

    settings = _settings()
    details = Index(db, settings=settings).info()
    if as_json:
        typer.echo(
            _json({**dataclasses.asdict(details), "config_file": settings.paths.config_file})
        )
        return
    if not details.exists:
        typer.echo(f"no index at {details.db} yet: run `photon index FOLDER`")
        return
    typer.echo(f"index:    {details.db}")
    typer.echo(f"model:    {details.model} ({details.dim}-d)")
    typer.echo(f"rows:     {details.rows}")
    typer.echo(f"size:     {_size(details.size_bytes)}")
    typer.echo(f"version:  {details.version}")
    typer.echo(f"indices:  {', '.join(details.indices) or 'none (exact search)'}")
    typer.echo(f"config:   {settings.paths.config_file}")


@app.command()
def process(
    image: Annotated[Path, typer.Argument(help="A picture file.")],
    model: ModelOption = None,
    device: DeviceOption = None,
) -> None:
    """Print one picture's metadata, hashes, embedding and timings as JSON."""
    from photon_index.models import load_model
    from photon_index.models.download import resolve_endpoint
    from photon_index.process import process_image

    settings = _settings(device)
    loaded = load_model(
        model or settings.model.name,
        settings.paths.models,
        endpoint=resolve_endpoint(settings.model.endpoint),
        progress=sys.stderr.isatty(),
    )
    result = process_image(
        image,
        loaded,
        device=settings.model.device,
        threads=settings.model.threads,
        max_pixels=settings.index.max_pixels,
    )
    typer.echo(_json(result))


@models_app.command("list")
def models_list(as_json: JsonOption = False, device: DeviceOption = None) -> None:
    """Known models: installed or not, size on disk, where."""
    from photon_index.embed.encoder import preferred_device
    from photon_index.models import list_models

    settings = _settings(device)
    statuses = list_models(settings.paths.models)
    active = preferred_device(settings.model.device)
    if as_json:
        typer.echo(_json({"device": active, "models": statuses}))
        return
    for s in statuses:
        state = "bundled" if s.bundled else ("installed" if s.installed else "not installed")
        typer.echo(f"{s.name:36} {state:14} {_size(s.size_bytes):>9}  {s.path}")
    typer.echo(f"device: {active}")


@models_app.command("download")
def models_download(
    name: Annotated[
        str | None, typer.Argument(help="Model name (default: the configured one).")
    ] = None,
) -> None:
    """Download a model (resumes partial downloads, verifies checksums)."""
    from photon_index.models import get_spec, model_path
    from photon_index.models.download import download_model, resolve_endpoint

    settings = _settings()
    spec = get_spec(name or settings.model.name)
    folder = model_path(spec.name, settings.paths.models)
    download_model(
        spec,
        folder,
        endpoint=resolve_endpoint(settings.model.endpoint),
        progress=sys.stderr.isatty(),
    )
    typer.echo(f"{spec.name} is ready in {folder}")


@models_app.command("path")
def models_path(
    name: Annotated[
        str | None, typer.Argument(help="Model name (default: the configured one).")
    ] = None,
) -> None:
    """Print the folder a model lives in (copy files there for offline installs)."""
    from photon_index.models import model_path

    settings = _settings()
    typer.echo(model_path(name or settings.model.name, settings.paths.models))


def main() -> None:
    try:
        app()
    except PhotonError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo(
            "interrupted: everything committed so far is kept; run again to continue", err=True
        )
        sys.exit(130)

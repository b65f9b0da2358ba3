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

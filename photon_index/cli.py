"""The `photon` command: parses arguments, calls the library, prints. Heavy modules are
imported inside the commands so `photon --help` and searches start fast."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from photon_index.config import Settings
from photon_index.errors import PhotonError
from photon_index.sizes import human_size

try:  # recent typer vendors click; older versions use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

app = typer.Typer(
    help="Local-first AI photo library: index, search and dedupe your pictures.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="List, download and locate models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Index folder or s3://BUCKET/PREFIX (default: user data dir or $PHOTON_HOME/db).",
    ),
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


@app.command()
def index(
    paths: Annotated[
        list[str], typer.Argument(help="Folders (or files), or s3://BUCKET/PREFIX, to index.")
    ],
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
    forget_missing: Annotated[
        bool,
        typer.Option(
            "--forget-missing",
            help="Also remove the pictures under PATHS that are missing or empty now "
            "(kept by default: an unmounted drive looks like that).",
        ),
    ] = False,
    thumbnails: Annotated[
        bool,
        typer.Option("--thumbnails", help="Also make 256-px thumbnails of the pictures it reads."),
    ] = False,
    engine: Annotated[
        str, typer.Option(help="local (worker processes) or ray (pip install 'photon-index[ray]').")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="With --engine ray: the cluster (auto, ray://HOST:PORT); default local."),
    ] = None,
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
    _stop_on_sigterm()
    report = Index(db, settings=settings).update(
        paths,
        model=model,
        progress=progress,
        forget_missing=forget_missing,
        thumbnails=thumbnails,
        engine=engine,
        address=address,
    )
    if as_json:
        typer.echo(_json(report))
        return
    for failure in report.failures:
        typer.echo(f"failed: {failure.path}: {failure.error}", err=True)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    pruned = f"{report.removed} removed" if prune else "pruning off"
    typer.echo(
        f"{report.discovered} discovered, {report.indexed} indexed, {report.reused} reused, "
        f"{report.skipped} unchanged, {pruned}, {report.failed} failed, {report.tagged} tagged "
        f"in {report.elapsed:.1f} s ({report.images_per_second:.1f} images/s)"
    )
    if report.rehashed:
        typer.echo(
            f"{report.rehashed} pictures indexed before were hashed again for dedupe "
            f"in {report.rehash_elapsed:.1f} s"
        )


def _stop_on_sigterm() -> None:
    """A service manager or `kill` stops a run with SIGTERM: the same clean stop as
    Ctrl-C (workers stopped, what is done committed, exit 130)."""
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _quiet_lance() -> None:
    """Lance warns of every empty IVF partition each time a batch adds rows to the
    vector index: dozens of lines per batch of a long watch. Read when lance is first
    imported, so before that."""
    import os

    os.environ.setdefault("LANCE_LOG", "error")


@app.command()
def watch(
    paths: Annotated[list[Path], typer.Argument(help="Folders (or files) to keep indexed.")],
    db: DbOption = None,
    model: ModelOption = None,
    device: DeviceOption = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Embedding processes.")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Glob of paths to leave out (repeatable).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each event as a line of JSON.")
    ] = False,
) -> None:
    """Index PATHS, then keep the index in step with them as files come, change, move
    and go, until Ctrl-C."""
    _quiet_lance()
    from photon_index.index import Index
    from photon_index.watch import WatchEvent

    settings = _settings(device)
    settings = settings.with_overrides(
        "index", workers=workers, exclude=[*settings.index.exclude, *(exclude or [])]
    )

    def show(event: WatchEvent) -> None:
        if as_json:
            typer.echo(_json(event))
            return
        for line in event.lines():
            typer.echo(line, err=line.startswith(("warning:", "failed:")))

    _stop_on_sigterm()
    report = Index(db, settings=settings).watch(paths, model=model, on_event=show)
    if as_json:
        typer.echo(_json({"kind": "stopped", "report": report}))
        return
    typer.echo(
        f"stopped: {report.batches} batches, {report.indexed} indexed, {report.reused} "
        f"reused, {report.removed} removed, {report.failed} failed"
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
    limit: Annotated[
        int | None, typer.Option("-k", "--limit", min=1, max=10_000, help="Results (1-10,000).")
    ] = None,
    under: Annotated[Path | None, typer.Option("--in", help="Only pictures under DIR.")] = None,
    after: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Taken on or after DATE.")
    ] = None,
    before: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Taken before DATE.")
    ] = None,
    where: Annotated[str | None, typer.Option(help="SQL filter on the table's columns.")] = None,
    camera: Annotated[
        str | None, typer.Option(help="Only pictures from this camera, e.g. 'Canon EOS R5'.")
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(
            "--min-score", min=-1.0, max=1.0, help="Leave out hits scoring below this (-1 to 1)."
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Only pictures with this tag (repeatable: all of them)."),
    ] = None,
    db: DbOption = None,
    device: DeviceOption = None,
    as_json: JsonOption = False,
    paths: Annotated[bool, typer.Option("--paths", help="Print only paths, one a line.")] = False,
    print0: Annotated[
        bool,
        typer.Option("--print0", "-0", help="Print only paths, each ended by a NUL (xargs -0)."),
    ] = False,
) -> None:
    """Find pictures by text ("dog on beach"), by picture (--image cat.jpg), or both."""
    import os

    from photon_index.errors import UsageError
    from photon_index.index import Index
    from photon_index.query.search import Filters, printable

    if as_json and print0:
        raise UsageError("choose one of --json and --print0")
    # A path given as an option must exist: a missing --image is not a text to search
    # for, and a missing --in folder would quietly match nothing.
    if image is not None and not image.expanduser().is_file():
        raise UsageError(f"--image {printable(str(image))}: no such picture file")
    if under is not None and not under.expanduser().is_dir():
        raise UsageError(f"--in {printable(str(under))}: no such folder")
    if image is not None:
        if query is not None:
            add = [query, *(add or [])]
        query = str(image)
    filters = Filters(
        under=under,
        after=after.date() if after else None,
        before=before.date() if before else None,
        where=where,
        camera=camera,
        min_score=min_score,
        tags=tuple(tag or ()),
    )
    results = Index(db, settings=_settings(device)).search(
        query, add=add or [], sub=sub or [], limit=limit, filters=filters
    )
    if as_json:
        typer.echo(_json(results.to_dict()))
    elif print0:  # the exact bytes of each path, which may hold any character but NUL
        sys.stdout.buffer.write(b"".join(os.fsencode(h.path) + b"\0" for h in results.hits))
        sys.stdout.flush()
    elif paths:
        for hit in results.hits:
            typer.echo(printable(hit.path))
    elif not results.hits:
        typer.echo("no matches", err=True)
    else:
        label = "match" if results.score == "probability" else "cosine"
        typer.echo(f"{'#':>3}  {label:>7}  {'date':10}  path")
        for hit in results.hits:
            day = hit.taken_at.date().isoformat() if hit.taken_at else "-"
            at = "" if hit.at is None else f"  (frame at {hit.at:.1f} s)"
            typer.echo(f"{hit.rank:>3}  {hit.score:7.4f}  {day:10}  {printable(hit.path)}{at}")


@app.command()
def tags(
    picture: Annotated[
        Path | None, typer.Argument(help="A picture (indexed or not): its tags.")
    ] = None,
    recompute: Annotated[
        bool,
        typer.Option("--recompute", help="Tag every picture anew (after a vocabulary change)."),
    ] = False,
    db: DbOption = None,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """The library's tags with counts, or a picture's tags with their probabilities."""
    from photon_index.errors import UsageError
    from photon_index.index import Index
    from photon_index.query.search import printable

    index = Index(db, settings=_settings(device))
    if picture is not None and recompute:
        raise UsageError("--recompute tags the whole library: use it without PICTURE")
    if recompute:
        report = index.retag()
        if as_json:
            typer.echo(_json(report))
            return
        typer.echo(
            f"{report.pictures} pictures tagged from {report.vocabulary} tags "
            f"({report.tagged} with at least one) in {report.seconds:.1f} s"
        )
        return
    if picture is not None:
        scores = index.tags_of(picture)
        if as_json:
            typer.echo(_json({"path": str(picture), "tags": scores}))
        elif not scores:
            typer.echo(f"no tags for {printable(str(picture))}", err=True)
        for score in [] if as_json else scores:
            typer.echo(f"{score.probability:7.4f}  {score.tag}")
        return
    counts = index.tags()
    if as_json:
        typer.echo(_json(counts))
        return
    for count in counts:
        typer.echo(f"{count.count:>7}  {count.tag}")
    if not counts:
        typer.echo("no picture has a tag", err=True)


@app.command()
def dedupe(
    db: DbOption = None,
    similar: Annotated[
        bool, typer.Option("--similar", help="Also group pictures of the same scene.")
    ] = False,
    distance: Annotated[
        int | None, typer.Option(min=0, max=63, help="Largest pHash distance of near candidates.")
    ] = None,
    cosine: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Smallest cosine for --similar.")
    ] = None,
    move_to: Annotated[
        str | None,  # not Path, which makes an empty DIR (a variable unset) the current one
        typer.Option(help="Move the copies here, below their full paths (outside the library)."),
    ] = None,
    delete: Annotated[
        bool, typer.Option("--delete", help="Send the copies to the system trash (see --undo).")
    ] = False,
    permanent: Annotated[
        bool,
        typer.Option("--permanent", help="With --delete: delete for good, no undo (needs --yes)."),
    ] = False,
    delete_similar: Annotated[
        bool,
        typer.Option(
            "--delete-similar", help="With --delete: remove the similar tier's pictures too."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --delete --permanent.")] = False,
    undo: Annotated[
        bool, typer.Option("--undo", help="Put back the last batch moved or trashed.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Find exact copies, near copies and (--similar) the same scene; report, move, trash
    or delete them. Every action is journaled in the index folder; --undo puts it back."""
    from photon_index.errors import UsageError
    from photon_index.index import Index
    from photon_index.query.search import printable

    moving = move_to is not None  # an empty one too: move_duplicates refuses it
    if undo and (moving or delete):
        raise UsageError("--undo puts back the last batch: use it without --move-to or --delete")
    if delete and moving:
        raise UsageError("choose one of --move-to and --delete")
    if (permanent or delete_similar) and not delete:
        raise UsageError("--permanent and --delete-similar go with --delete")
    if permanent and not yes:
        raise UsageError("--delete --permanent removes files for good: add --yes to confirm")
    index = Index(db, settings=_settings())
    if undo:
        _print_undo(index.undo(), as_json)
        return
    groups = index.dedupe(similar=similar, phash_distance=distance, similar_cosine=cosine)
    action = None
    if move_to is not None:
        action = index.move_duplicates(groups, move_to)
    elif delete and permanent:
        action = index.delete_duplicates(groups, similar=delete_similar)
    elif delete:
        action = index.trash_duplicates(groups, similar=delete_similar)
    if as_json:
        empty = {"moved": [], "trashed": [], "deleted": [], "failed": [], "batch": None}
        done = dataclasses.asdict(action) if action else empty
        typer.echo(_json({"groups": groups, **done}))
        return
    for group in groups:
        typer.echo(f"[{group.tier}] keep {printable(group.keep)}  ({group.reason})")
        for path in group.duplicates:
            typer.echo(f"    {printable(path)}")
        for path in group.aliases:
            typer.echo(f"    {printable(path)}  (same file as a path above: left alone)")
        for path in group.beyond:
            typer.echo(f"    {printable(path)}  (beyond the threshold of the keeper: left alone)")
    copies = sum(len(g.duplicates) for g in groups)
    typer.echo(f"{len(groups)} groups, {copies} copies")
    if action:
        for path, error in action.failed:  # the reason may name other paths
            typer.echo(f"left alone: {printable(path)}: {printable(error)}", err=True)
        typer.echo(
            f"{len(action.moved)} moved, {len(action.trashed)} trashed, "
            f"{len(action.deleted)} deleted for good, {len(action.failed)} left alone"
            + ("; undo with `photon dedupe --undo`" if action.moved or action.trashed else "")
        )


def _print_undo(report: Any, as_json: bool) -> None:
    from photon_index.query.search import printable

    if as_json:
        typer.echo(_json(report))
        return
    for path, error in report.failed:
        typer.echo(f"not put back: {printable(path)}: {printable(error)}", err=True)
    typer.echo(
        f"batch {report.batch} ({report.kind}): {len(report.restored)} put back, "
        f"{len(report.failed)} not"
        + ("; run `photon dedupe --undo` again to retry them" if report.retry else "")
    )
    if report.failed:
        raise typer.Exit(1)


@app.command()
def demo(
    folder: Annotated[
        Path | None, typer.Option("--dir", help="Where to put the demo (default: a new temp dir).")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Then open the web app on the demo library.")
    ] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of --serve.")] = 8750,
) -> None:
    """Draw pictures, index, search and dedupe them with the bundled tiny model, offline."""
    import tempfile

    from photon_index.demo import run_demo, serve_demo

    workdir = folder or Path(tempfile.mkdtemp(prefix="photon-demo-"))
    for line in run_demo(workdir, _settings()):
        typer.echo(line)
    if serve:
        serve_demo(workdir, _settings(), port=port, echo=typer.echo)


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; any but 127.0.0.1 or ::1 needs a token."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8750,
    token: Annotated[
        str | None,
        typer.Option(help="Token a browser must bring (default off 127.0.0.1: one made now)."),
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the web app in a browser.")
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Also keep the index in step with the folders it was built from."
        ),
    ] = False,
) -> None:
    """Serve the web app: search, pictures, duplicates and the library, and a JSON API."""
    if watch:
        _quiet_lance()
    from photon_index.index import Index
    from photon_index.serve import serve as run_server

    index = Index(db, settings=_settings())
    run_server(
        index,
        host=host,
        port=port,
        token=token,
        open_browser=open_browser,
        watch=watch,
        echo=typer.echo,
    )


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
    typer.echo(f"size:     {human_size(details.size_bytes)}")
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
        typer.echo(f"{s.name:36} {state:14} {human_size(s.size_bytes):>9}  {s.path}")
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


_INTERRUPTED = 130  # the exit code of a run stopped by Ctrl-C (128 + SIGINT)


def main() -> None:
    """Run the CLI: a PhotonError or a bad command line is one line on stderr and its
    exit code. Anything else keeps its traceback: it is a bug."""
    try:
        # Not standalone, so a usage error reaches us instead of becoming click's framed
        # multi-line message; --help and the like return their exit code instead.
        code = app(standalone_mode=False)
    except PhotonError as e:
        _fail(str(e), e.exit_code)
    except click_errors.NoArgsIsHelpError as e:
        e.show()  # a bare `photon`: the help is the answer
        sys.exit(e.exit_code)
    except click_errors.ClickException as e:
        ctx = getattr(e, "ctx", None)
        hint = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
        _fail(e.format_message().rstrip(".") + hint, e.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except KeyboardInterrupt:
        code = _INTERRUPTED
    if code == _INTERRUPTED:
        # typer turns Ctrl-C that no command reported (as an Interrupted error) into
        # this exit code, silently, before it can reach the except clause above.
        typer.echo(
            "interrupted: everything committed so far is kept; run again to continue", err=True
        )
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> NoReturn:
    # One line whatever the message holds (an engine's or a path's newlines included).
    typer.echo(f"error: {' '.join(message.splitlines())}", err=True)
    sys.exit(code)

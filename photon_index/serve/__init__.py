"""`photon serve`: the web app over an index (FastAPI and uvicorn, the `serve` extra).
They are imported only when it starts, so the other commands keep their start-up time.

    from photon_index import Index
    from photon_index.serve import serve
    serve(Index("~/photon-db"), port=8750)
"""

from __future__ import annotations

import secrets
import socket
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from photon_index.errors import UsageError

if TYPE_CHECKING:
    from photon_index.index import Index

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8750
MIN_TOKEN = 16
INSTALL_HINT = "photon serve needs the web app's packages: pip install 'photon-index[serve]'"


def serve(
    index: Index,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    open_browser: bool = False,
    watch: bool = False,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve index until Ctrl-C. Any host but a loopback one needs a token: token, else
    one made now and printed once, in the address to open. watch: keep the index in
    step with the folders it was built from meanwhile (photon_index/watch.py)."""
    try:
        import uvicorn

        from photon_index.serve.app import create_app
        from photon_index.serve.security import allowed_hosts, is_loopback
    except ModuleNotFoundError as e:
        raise UsageError(f"{INSTALL_HINT} ({e.name} is missing)") from e
    if token is not None and len(token) < MIN_TOKEN:
        raise UsageError(f"--token: use at least {MIN_TOKEN} characters, hard to guess")
    local = is_loopback(host)
    if not local and token is None:
        token = secrets.token_urlsafe(24)
    app = create_app(index, token=token, hosts=allowed_hosts(host))
    listener = _listen(host, port)
    url = f"http://{_address(host)}:{listener.getsockname()[1]}/"
    if token:
        url += f"?token={token}"
    echo(f"photon serves {index.db} at {url}")
    if token and local:
        echo("the token in that address is needed once per browser: keep it to yourself")
    elif token:
        echo("anyone who can reach this host needs the token in that address: share it with care")
    echo("press Ctrl-C to stop")
    if open_browser:
        webbrowser.open(url)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    with _watching(index, watch, echo):
        uvicorn.Server(config).run(sockets=[listener])


@contextmanager
def _watching(index: Index, watch: bool, echo: Callable[[str], None]) -> Iterator[None]:
    if not watch:
        yield
        return
    from photon_index.store.roots import read_roots
    from photon_index.watch import WatchEvent, watching

    roots = read_roots(index.db_path)
    if not roots:
        raise UsageError(
            f"--watch: the index at {index.db_path} records no folders yet; "
            "run `photon index FOLDER` first"
        )

    def show(event: WatchEvent) -> None:
        for line in event.lines():
            echo(line)

    with watching(index, roots, show):
        yield


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, so a taken port is one line here instead of uvicorn's exit,
    and a browser opened right away waits in the backlog instead of being refused."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as e:
        raise UsageError(
            f"cannot listen on {host} port {port} ({e.strerror or e}): "
            "choose another --port, or a --host of this machine"
        ) from e
    return listener


def _address(host: str) -> str:
    """How a browser reaches host: a wildcard bind by this machine's name."""
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host

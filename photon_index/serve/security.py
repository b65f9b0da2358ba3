"""The web app's guard: one ASGI middleware that every request passes before any route.

- Host: on a loopback bind only loopback host names are answered, so a page elsewhere
  cannot reach the app through DNS rebinding (its own name resolving to 127.0.0.1).
- Token: when the app has one (any bind but loopback), every route but /api/health needs
  it: `?token=` is exchanged for an HttpOnly cookie (and a redirect to a path of this
  server that drops it from the address bar), or it comes as `Authorization: Bearer`.
  Browsers send a host's cookies to every port of it, so the cookie, photon_PORT, holds
  a session value derived from the token, never the token: another service on the host
  that receives it cannot use it as ?token= or Bearer.
- Same origin: a state-changing request (anything but GET, HEAD, OPTIONS) that a browser
  marks as coming from another site is refused. Browsers send Sec-Fetch-Site or Origin
  with every such request; a request with neither is not from a browser (curl, a
  script), which cannot carry a victim's cookie, as in Go's CrossOriginProtection.
- Body size: a request body over the upload limit is refused (413) before it is read
  whole, whether it declares its length or is chunked.
- Headers: a Content-Security-Policy allowing only 'self', and no CORS headers ever.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
from collections.abc import Collection
from urllib.parse import quote, urlencode, urlsplit

from starlette.datastructures import URL, Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
OPEN_PATHS = frozenset({"/api/health"})  # for monitoring: no token, no secrets in it
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """Whether binding host keeps the server to this machine."""
    if host.strip("[]") in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> frozenset[str] | None:
    """The Host names a server bound to host answers: on a loopback bind the loopback
    names and the bound address itself (127.0.0.2 too); elsewhere any (None)."""
    return LOOPBACK_HOSTS | {host.strip("[]")} if is_loopback(host) else None


def session_value(token: str) -> str:
    """What the cookie holds: accepted as a cookie only, and useless as the token."""
    return hmac.new(token.encode(), b"photon-session", hashlib.sha256).hexdigest()


class TooLarge(Exception):
    """The request body passed the upload limit while it was being read."""


class Guard:
    """See the module docstring. hosts: the Host names answered (None: any)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        hosts: Collection[str] | None,
        max_body: int,
    ) -> None:
        self.app = app
        self.token = token
        self.session = session_value(token) if token is not None else None
        self.hosts = None if hosts is None else frozenset(hosts)
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is not None:
            await _with_headers(refusal)(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        read = 0

        async def counted_receive() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_body:
                    raise TooLarge
            return message

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except TooLarge:
            if started:
                raise
            await _with_headers(self._too_large(request))(scope, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        """The response that refuses this request, or None to let it through."""
        host = _host_name(request.headers.get("host", ""))
        if self.hosts is not None and host not in self.hosts:
            return _error(request, 400, f"this server does not answer for the host {host!r}")
        if self.token is not None and request.url.path not in OPEN_PATHS:
            refusal = self._token_refusal(request)
            if refusal is not None:
                return refusal
        if request.method not in SAFE_METHODS and not same_origin(request.headers, request.url):
            return _error(request, 403, "a request from another site may not change anything here")
        length = request.headers.get("content-length", "")
        if length.isascii() and length.isdigit() and int(length) > self.max_body:
            return self._too_large(request)
        return None

    def _token_refusal(self, request: Request) -> Response | None:
        assert self.token is not None and self.session is not None
        offered = request.query_params.get("token")
        if offered is not None and request.method == "GET":
            if not _equal(offered, self.token):
                return _unauthorized(request, "the token in the address is not this server's")
            # Exchange it for a cookie, and take it out of the address bar and history.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = _local_path(request.scope["path"]) + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            name = cookie_name(request)
            response.set_cookie(name, self.session, httponly=True, samesite="strict")
            return response
        cookie = request.cookies.get(cookie_name(request), "")
        bearer = request.headers.get("authorization", "")
        if _equal(cookie, self.session) or _equal(bearer, f"Bearer {self.token}"):
            return None
        return _unauthorized(request, "open the address with the token that photon serve printed")

    def _too_large(self, request: Request) -> Response:
        limit = self.max_body / 2**20
        return _error(request, 413, f"the upload is larger than this server's {limit:g} MB limit")


def cookie_name(request: Request) -> str:
    """photon_PORT: two servers on one host each keep their own cookie."""
    server = request.scope.get("server")
    return f"photon_{server[1]}" if server and server[1] else "photon"


def _local_path(path: str) -> str:
    """A request's (decoded) path as a redirect that stays on this server: `//evil.com/`
    or `/\\evil.com` would send the browser to another host."""
    return "/" + quote(path).lstrip("/")


def same_origin(headers: Headers, url: URL) -> bool:
    """Whether a browser says this request comes from a page of this server (a request
    without Sec-Fetch-Site, Origin and Referer is not from a browser)."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")  # none: typed in the address bar
    origin = headers.get("origin")
    if origin is None:
        referer = headers.get("referer")
        if referer is None:
            return True
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    own = f"{url.scheme}://{headers.get('host', '')}"
    return origin.lower() == own.lower()


def _host_name(host: str) -> str:
    """The name in a Host header, without its port."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _equal(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode(), expected.encode())


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


def _error(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    return HTMLResponse(_page(status, message), status_code=status)


def _unauthorized(request: Request, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=401)
    # A form that puts the token in the address, for someone who has only the token.
    form = (
        '<form method="get" action="/"><label>Token <input name="token" type="password" '
        'autocomplete="current-password" required></label> <button>Open</button></form>'
    )
    return HTMLResponse(_page(401, message, form), status_code=401)


def _page(status: int, message: str, extra: str = "") -> str:
    """A bare page for refusals, which happen before templates or the index are used."""
    return (
        '<!doctype html><html lang="en"><meta charset="utf-8"><title>photon</title>'
        f"<main><h1>{status}</h1><p>{html.escape(message)}</p>{extra}</main></html>"
    )


def _with_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS:
        response.headers[name.decode()] = value.decode()
    return response

"""Who may drive the service, and the headers that keep browsers from being used against it.

``Gate`` (ASGI middleware), in this order:

- with an API key, every path needs it except ``/healthz``, the page ``/`` and its static files;
- without one, the ``Host`` header must name this machine (``localhost``, ``127.0.0.1``, ``[::1]``, or a name
  given in ``allowed_hosts``): a page on another site that re-points its DNS name to 127.0.0.1 (DNS
  rebinding) is refused; and a request that changes anything (any method but GET/HEAD/OPTIONS) must come
  from the same origin, so a form on another website cannot enrol, remove or upload;
- every answer carries a Content-Security-Policy (with ``frame-ancestors 'none'``), ``X-Frame-Options:
  DENY``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``; API answers ``no-store``.

``ReadTimeout`` answers 408 and closes when a request body stalls (nothing for ``read_timeout`` seconds) or
trickles in slower than ``body_deadline`` allows.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from facetwin.service.http_errors import BodyGuard, BodyTripped, error_response

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_WITH_KEY = ("/", "/collection", "/healthz", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/", "/docs-assets/")
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")  # Swagger UI's inline start-up
HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


def host_name(host: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8000`` → ``::1``, ``Example.org:80`` → ``example.org``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def sent_key(headers: dict[str, str]) -> str | None:
    """The API key a request sent (``X-API-Key`` or ``Authorization: Bearer``)."""
    sent = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    if not sent and auth.lower().startswith("bearer "):
        sent = auth[7:].strip()
    return sent or None


def key_matches(headers: dict[str, str], api_key: str | None) -> bool:
    sent = sent_key(headers)
    return bool(api_key and sent and secrets.compare_digest(sent.encode(), api_key.encode()))


class Gate:
    """ASGI middleware: API key, Host allow-list, same-origin state changes, security headers."""

    def __init__(self, app, api_key: str | None, allowed_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.api_key = api_key or None
        self.allowed = LOOPBACK | {host_name(h) for h in allowed_hosts}

    def refusal(self, scope, headers: dict[str, str]):
        """``(status, sentence, extra headers)`` when the request is refused, else None."""
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if self.api_key:
            if path in PUBLIC_WITH_KEY or path.startswith(PUBLIC_PREFIXES) or key_matches(headers, self.api_key):
                return None
            reason = "a wrong API key was sent" if sent_key(headers) else "this server needs an API key"
            return 401, f"{reason}: send it as X-API-Key or Authorization: Bearer.", {"WWW-Authenticate": "Bearer"}
        host = headers.get("host", "")
        if host_name(host) not in self.allowed:
            return 403, (
                f"Host '{host[:100]}' is not this server: without an API key it answers only to its own names "
                "(localhost, 127.0.0.1, [::1] and those its operator allowed)."
            ), {}
        if method not in SAFE_METHODS and not self._same_origin(headers, host):
            return 403, "cross-origin request refused: only the server's own page may change or upload.", {}
        return None

    @staticmethod
    def _same_origin(headers: dict[str, str], host: str) -> bool:
        origin = headers.get("origin")
        if origin is not None:
            return origin.lower() in (f"http://{host.lower()}", f"https://{host.lower()}")
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        referer = headers.get("referer")
        if referer is not None:
            return referer.lower().startswith((f"http://{host.lower()}/", f"https://{host.lower()}/"))
        return True  # no browser marks at all: a command-line client, not a web page

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        path = scope.get("path", "")
        extra = list(HEADERS)
        extra.append((b"content-security-policy", (DOCS_CSP if path == "/docs" else CSP).encode()))
        if path.startswith("/v1/") or path == "/healthz":
            extra.append((b"cache-control", b"no-store"))

        async def secured_send(message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *[h for h in extra if h[0] not in present]]
            await send(message)

        refused = self.refusal(scope, headers)
        if refused is not None:
            status, sentence, more = refused
            await error_response(status, sentence, headers=more or None)(scope, receive, secured_send)
            return
        await self.app(scope, receive, secured_send)


class ReadTimeout(BodyGuard):
    """ASGI middleware: 408 (and the connection closed) when a request body stalls or trickles too slowly."""

    status = 408

    def __init__(self, app, read_timeout: float = 15.0, body_deadline: float = 120.0) -> None:
        super().__init__(app)
        self.read_timeout = float(read_timeout)
        self.body_deadline = float(body_deadline)

    def sentence(self, scope) -> str:
        return (
            f"the request body stalled: nothing arrived for {self.read_timeout:g} s, or it took longer than "
            f"{self.body_deadline:g} s."
        )

    def watch(self, receive, scope):
        deadline = time.monotonic() + self.body_deadline
        done = False

        async def timed_receive():
            nonlocal done
            if done:
                return await receive()
            wait = min(self.read_timeout, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0.001))
            except TimeoutError:
                raise BodyTripped() from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        return timed_receive

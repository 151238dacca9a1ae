"""HTTP errors of the service: the JSON error body, its documented statuses, and the upload-size limit."""

from __future__ import annotations

import re

from fastapi.responses import JSONResponse
from pydantic import BaseModel

DEFAULT_MAX_UPLOAD = 10 * 2**20
_CLI_HINT = re.compile(r"\s*\(use --no-face[^)]*\)")


class ErrorBody(BaseModel):
    """Every error answer: one sentence that names the file and the problem."""

    error: str


def error_responses(*codes: int) -> dict:
    text = {
        400: "a form field is missing or malformed",
        401: "the server has an API key and the call did not send it",
        403: "without an API key: a Host other than this machine, or a change from another origin",
        404: "no such person",
        413: "the request body is over the upload limit",
        415: "an upload is not an image facetwin can decode",
        422: "no face found in a photo",
        503: "no gallery configured, the gallery is busy (Retry-After), or no decision threshold (verify)",
    }
    return {code: {"model": ErrorBody, "description": text[code]} for code in codes}


class ServiceError(Exception):
    """An HTTP error with a status and one sentence."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class BodyTripped(Exception):
    """Raised from a watched ``receive`` when a :class:`BodyGuard` stops reading the request body."""


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def send_error(send, status: int, message: str) -> None:
    """Answer with ``{"error": message}`` at the raw ASGI level, closing the connection."""
    response = error_response(status, message, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


class BodyGuard:
    """ASGI middleware base: reads the request body through :meth:`watch`; once it trips (``BodyTripped``),
    whatever the app answers is dropped and ``status`` with :meth:`sentence` is sent instead."""

    status = 400

    def __init__(self, app) -> None:
        self.app = app

    def watch(self, receive):
        """An ``async`` receive that raises :class:`BodyTripped` when the body breaks this guard's rule."""
        raise NotImplementedError

    def sentence(self) -> str:
        raise NotImplementedError

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.guard(scope, receive, send)

    async def guard(self, scope, receive, send) -> None:
        state = {"tripped": False, "started": False}
        watched = self.watch(receive)

        async def tracked_receive():
            try:
                return await watched()
            except BodyTripped:
                state["tripped"] = True
                raise

        async def guarded_send(message) -> None:
            if state["tripped"]:
                return  # whatever the app makes of the cut body, the guard's answer replaces it
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, tracked_receive, guarded_send)
        except Exception:
            if not state["tripped"]:
                raise
        if state["tripped"] and not state["started"]:
            await send_error(send, self.status, self.sentence())


class UploadLimit(BodyGuard):
    """ASGI middleware: 413 when the body is over ``limit`` bytes, by Content-Length or counted while reading."""

    status = 413

    def __init__(self, app, limit: int) -> None:
        super().__init__(app)
        self.limit = int(limit)

    def sentence(self) -> str:
        return f"the upload is larger than the {self.limit / 2**20:g} MB this server accepts."

    async def guard(self, scope, receive, send) -> None:
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit:
                    await self._drain(receive)
                    await send_error(send, self.status, self.sentence())
                    return
        await super().guard(scope, receive, send)

    def watch(self, receive):
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTripped()
            return message

        return counted_receive

    async def _drain(self, receive, cap: int = 64 * 2**20) -> None:
        """Read (and drop) what the client already sent, up to ``cap``, so it gets the 413 rather than a reset."""
        seen = 0
        while seen <= cap:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


def web_message(message: str) -> str:
    """A library message without the CLI's advice (a web client has no ``--no-face`` flag)."""
    message = _CLI_HINT.sub("", message).strip()
    return message if message.endswith(".") else message + "."

"""HTTP errors of the service: the JSON error body, its documented statuses, and the upload-size limit."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from fastapi.responses import JSONResponse
from pydantic import BaseModel

DEFAULT_MAX_UPLOAD = 10 * 2**20
SMALL_BODY = 64 * 2**10  # the cluster routes take a name or a list of ids: a few kB at most
SMALL_BODY_PATHS = ("/v1/clusters",)
LINGER = 2.0  # seconds a refused body is still read (and dropped) after the 413, so the client sees the answer
LINGER_BYTES = 64 * 2**20
_CLI_ADVICE = re.compile(r"\s*\((?:[^()]*`[^()]*|[^()]*\s--[a-z][^()]*|--[a-z][^()]*)\)")  # "(run `...`)", "(use --x)"
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s/:;,'\"()]+/)*([^\s/:;,'\"()]+)")  # server paths: file name only


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

    def watch(self, receive, scope):
        """An ``async`` receive that raises :class:`BodyTripped` when the body breaks this guard's rule."""
        raise NotImplementedError

    def sentence(self, scope) -> str:
        raise NotImplementedError

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.guard(scope, receive, send)

    async def guard(self, scope, receive, send) -> None:
        state = {"tripped": False, "started": False}
        watched = self.watch(receive, scope)

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
            await send_error(send, self.status, self.sentence(scope))


class UploadLimit(BodyGuard):
    """ASGI middleware: 413 when the body is over ``limit`` bytes (``SMALL_BODY`` on the cluster routes), by
    Content-Length or counted while reading.

    A body declared too large is answered at once, before any of it is read, with ``Connection: close``; what the
    client may still be sending is read and dropped for at most ``LINGER`` seconds after the answer, so that it
    reads the 413 rather than a connection reset."""

    status = 413

    def __init__(self, app, limit: int) -> None:
        super().__init__(app)
        self.limit = int(limit)

    def limit_for(self, scope) -> int:
        return min(self.limit, SMALL_BODY) if scope.get("path", "").startswith(SMALL_BODY_PATHS) else self.limit

    def sentence(self, scope) -> str:
        limit = self.limit_for(scope)
        if limit < self.limit:
            return f"the request body is larger than the {limit // 2**10} kB this endpoint accepts."
        return f"the upload is larger than the {limit / 2**20:g} MB this server accepts."

    async def guard(self, scope, receive, send) -> None:
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit_for(scope):
                    await self._refuse_now(scope, receive, send)
                    return
        await super().guard(scope, receive, send)

    def watch(self, receive, scope):
        limit, received = self.limit_for(scope), 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTripped()
            return message

        return counted_receive

    async def _refuse_now(self, scope, receive, send) -> None:
        """The whole 413 goes out now; the response (and the connection) ends when the client stops sending, or
        after ``LINGER`` seconds."""
        response = error_response(self.status, self.sentence(scope), headers={"Connection": "close"})
        await send({"type": "http.response.start", "status": self.status, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": True})
        deadline, seen = time.monotonic() + LINGER, 0
        while seen <= LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(receive(), timeout=left)
            except Exception:  # noqa: BLE001 - a stalled, closed or broken client: stop listening
                break
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
            seen += len(message.get("body", b""))
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def web_message(message: str, private: tuple[str | Path, ...] = ()) -> str:
    """A library sentence for a web client: no advice about command-line flags or commands (a web client has
    none), and no server folders: each of ``private`` (an index, a gallery) is shown by its name, any other
    absolute path by its file name."""
    for path in private:
        for form in {str(path), os.path.realpath(path)}:
            message = message.replace(form, Path(form).name)
    message = _ABSOLUTE_PATH.sub(lambda m: m.group(1), _CLI_ADVICE.sub("", message)).strip()
    return message if message.endswith(".") else message + "."

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


class _BodyTooLarge(Exception):
    pass


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class UploadLimit:
    """ASGI middleware: 413 when the body is over ``limit`` bytes, by Content-Length or counted while reading."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = int(limit)

    def _message(self) -> str:
        return f"the upload is larger than the {self.limit / 2**20:g} MB this server accepts."

    async def _send_413(self, send) -> None:
        response = error_response(413, self._message(), headers={"Connection": "close"})
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit:
                    await self._drain(receive)
                    await self._send_413(send)
                    return
        state = {"received": 0, "exceeded": False, "started": False}

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["exceeded"] = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message) -> None:
            if state["exceeded"]:
                return  # whatever the app makes of the interrupted body, the answer is 413
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["exceeded"]:
                raise
        if state["exceeded"] and not state["started"]:
            await self._send_413(send)

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

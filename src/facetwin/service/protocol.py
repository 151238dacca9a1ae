"""uvicorn's HTTP/1.1 protocol with a deadline for request headers (``facetwin serve`` uses it).

uvicorn times out idle keep-alive connections, but not a client that opens a connection and sends its
request line and headers slowly, or never finishes them ("slowloris"): such connections would stay open
for ever. Here a connection that has not completed a request's headers ``HEADER_TIMEOUT`` seconds after it
opened, or after its previous answer, gets a JSON 408 and is closed. Bodies have their own deadlines
(``security.ReadTimeout``).
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0


def _answer_408(seconds: float) -> bytes:
    body = json.dumps({"error": f"the request headers did not arrive within {seconds:g} s."}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\nx-content-type-options: nosniff\r\n\r\n"
    )
    return head.encode() + body


class HeaderTimeoutProtocol(H11Protocol):
    """H11Protocol + a header deadline (see the module docstring)."""

    header_timeout = HEADER_TIMEOUT

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = None
        self._arm()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_headers() and not self.transport.is_closing():
            self._arm()
        else:
            self._disarm()

    def _expired(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.write(_answer_408(self.header_timeout))
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle keep-alive is uvicorn's own timeout; the next request's first bytes re-arm

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (e.g. a request line or headers over 16 kB): JSON like every other error."""
        body = json.dumps({"error": "malformed or oversized HTTP request (request line and headers: 16 kB at most)."})
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
            + f"content-length: {len(body)}\r\n\r\n{body}".encode()
        )
        self.transport.close()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

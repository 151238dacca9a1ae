"""A tiny HTTP/1.1 file server on 127.0.0.1 with Range support and programmable misbehaviour, for download tests."""

from __future__ import annotations

import http.server
import re
import socket
import threading


class Server:
    """A tiny HTTP/1.1 file server with Range support and programmable misbehaviour."""

    def __init__(self, payload: bytes, name: str = "vgg_face_weights.h5"):
        self.payload = payload
        self.drop_after: list[int] = []  # per request, in order: close the connection after this many bytes
        self.ignore_range = False
        self.requests: list[str | None] = []  # the Range header of every GET (None when absent)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                header = self.headers.get("Range")
                server.requests.append(header)
                data, start = server.payload, 0
                match = re.fullmatch(r"bytes=(\d+)-", header or "")
                if match and not server.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                limit = server.drop_after.pop(0) if server.drop_after else None
                if limit is not None:
                    self.wfile.write(body[:limit])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

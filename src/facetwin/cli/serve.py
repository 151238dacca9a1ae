"""`facetwin serve`: the HTTP API and web page on 127.0.0.1 (uvicorn)."""

from __future__ import annotations

import argparse
import math
import os
import socket

from facetwin.cli.options import add_face, add_model_arguments, model_from_args
from facetwin.errors import FacetwinError

WORKERS_MODES = ("lock", "replicas", "batch")  # facetwin.service.workers.MODES (not imported: keeps --help fast)

GALLERY_HELP = (
    "gallery file for the people endpoints (default: the model's own, shared with `facetwin enroll|identify|gallery`: "
    "$FACETWIN_HOME/galleries/MODEL.db, e.g. ~/.cache/facetwin/galleries/sface.db)"
)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound now: a port in use fails here, before anything says "serving"."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FacetwinError(f"cannot listen on {host}:{port} (unknown address: {exc.strerror or exc}).") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise FacetwinError(f"cannot listen on {host}:{port} ({exc.strerror or exc}).") from None
    sock.set_inheritable(True)
    return sock


def _return_memory_to_the_system() -> None:
    """glibc: large buffers (decoded photos) always in their own mappings, given back when freed, and few
    arenas; otherwise a long-running threaded server keeps the high-water mark of every burst as RSS."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: 1 MiB, fixed (no dynamic growth to 32 MiB)
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from facetwin.gallery.location import model_gallery
    from facetwin.service import create_app
    from facetwin.service.protocol import HeaderTimeoutProtocol

    if args.max_upload_mb <= 0 or not math.isfinite(args.max_upload_mb):
        raise FacetwinError(f"--max-upload-mb must be a positive number, got {args.max_upload_mb:g}.")
    if not 0 < args.port < 65536:
        raise FacetwinError(f"--port must be between 1 and 65535, got {args.port}.")
    sock = _listen(args.host, args.port)
    _return_memory_to_the_system()
    print(f"facetwin: loading model {args.model or args.backbone or 'sface'} ...", flush=True)
    model = model_from_args(args)
    gallery = args.gallery or model_gallery(model)
    key = os.environ.get("FACETWIN_API_KEY") or None
    app = create_app(
        model=model,
        gallery=gallery,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        api_key=key,
        allowed_hosts=tuple(args.allow_host or ()),
        index_path=args.index,
        **({"workers_mode": args.workers_mode} if args.workers_mode else {}),
        workers=args.workers,
    )
    where = f"http://{args.host}:{args.port}/"
    note = " (API key required: FACETWIN_API_KEY)" if key else " (no API key: this machine's Host names only)"
    config = uvicorn.Config(
        app, http=HeaderTimeoutProtocol, log_level=args.log_level, timeout_keep_alive=5, limit_concurrency=256,
        h11_max_incomplete_event_size=16384,
    )
    print(f"facetwin: serving {where} (API docs at {where}docs; gallery {gallery}){note}", flush=True)
    if args.index:
        print(f"facetwin: Collection view of {args.index} at {where}collection", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="HTTP API and web page (verify, embed, enroll, identify)",
        description="Serve the JSON API (/v1/verify, /v1/embed, /v1/identify, /v1/people...) and a web page at /. "
        "Binds 127.0.0.1 by default. With FACETWIN_API_KEY set in the environment, every API call needs that key "
        "(X-API-Key header or Authorization: Bearer).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument(
        "--allow-host", action="append", metavar="NAME",
        help="without an API key, also answer requests whose Host is NAME (repeatable; default: this machine's "
        "names only, which stops DNS-rebinding pages)",
    )
    add_model_arguments(p, backbone_flags=False)
    add_face(p)
    p.add_argument("--gallery", metavar="FILE", help=GALLERY_HELP)
    p.add_argument(
        "--index", metavar="INDEX_DIR",
        help="a `facetwin index` folder: /v1/find (the photos a person is in) and the Collection view at "
        "/collection (its clusters, biggest first, to name)",
    )
    p.add_argument(
        "--workers-mode", choices=WORKERS_MODES,
        help="how model calls run: lock (one at a time), replicas (one model copy per worker), batch (concurrent "
        "requests' faces embedded together); default: the fastest in benchmarks/service_load.py --modes",
    )
    p.add_argument(
        "--workers", type=int, metavar="N", help="model calls at once in replicas/batch mode (default: the cores)"
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=10.0, metavar="N", help="largest request body accepted (default 10)"
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default info)",
    )
    p.set_defaults(func=_run)

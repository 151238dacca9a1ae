"""`facetwin serve`: the HTTP API and web page on 127.0.0.1 (uvicorn)."""

from __future__ import annotations

import argparse
import os

from facetwin.cli.options import add_model_arguments, model_from_args
from facetwin.errors import FacetwinError

GALLERY_HELP = (
    "gallery file for the people endpoints (default: one per model in $FACETWIN_HOME/galleries, "
    "~/.cache/facetwin/galleries)"
)


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from facetwin.service import create_app

    if args.max_upload_mb <= 0:
        raise FacetwinError(f"--max-upload-mb must be positive, got {args.max_upload_mb:g}.")
    if not 0 < args.port < 65536:
        raise FacetwinError(f"--port must be between 1 and 65535, got {args.port}.")
    from facetwin.core.paths import home

    print(f"facetwin: loading model {args.model or args.backbone or 'sface'} ...", flush=True)
    model = model_from_args(args)
    gallery = args.gallery or home() / "galleries" / f"{model.fingerprint[:16]}.db"
    app = create_app(
        model=model,
        gallery=gallery,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        api_key=os.environ.get("FACETWIN_API_KEY") or None,
        index_path=args.index,
    )
    where = f"http://{args.host}:{args.port}/"
    key = " (API key required: FACETWIN_API_KEY)" if os.environ.get("FACETWIN_API_KEY") else ""
    print(f"facetwin: serving {where} (API docs at {where}docs; gallery {gallery}){key}", flush=True)
    if args.index:
        print(f"facetwin: Collection view of {args.index} at {where}collection", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    except OSError as exc:
        raise FacetwinError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}).") from None
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
    add_model_arguments(p, backbone_flags=False)
    p.add_argument(
        "--gallery", metavar="FILE",
        help=GALLERY_HELP,
    )
    p.add_argument("--index", metavar="INDEX_DIR", help="a `facetwin index` folder: adds the Collection view at "
                   "/collection (its clusters, biggest first, to name)")
    p.add_argument(
        "--max-upload-mb", type=float, default=10.0, metavar="N", help="largest request body accepted (default 10)"
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default info)",
    )
    p.set_defaults(func=_run)

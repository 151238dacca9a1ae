"""`facetwin serve`: the HTTP API and web page on 127.0.0.1 (uvicorn)."""

from __future__ import annotations

import argparse
import os

from ..errors import FacetwinError


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..service import create_app

    if args.max_upload_mb <= 0:
        raise FacetwinError(f"--max-upload-mb must be positive, got {args.max_upload_mb:g}.")
    if not 0 < args.port < 65536:
        raise FacetwinError(f"--port must be between 1 and 65535, got {args.port}.")
    model_spec = args.model or args.backbone or "sface"
    print(f"facetwin: loading model {model_spec} ...", flush=True)
    app = create_app(
        model=model_spec,
        gallery_path=args.gallery,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        api_key=os.environ.get("FACETWIN_API_KEY") or None,
        index_path=args.index,
    )
    where = f"http://{args.host}:{args.port}/"
    key = " (API key required: FACETWIN_API_KEY)" if os.environ.get("FACETWIN_API_KEY") else ""
    print(f"facetwin: serving {where} (API docs at {where}docs){key}", flush=True)
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
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="RUN_DIR", help="a trained run directory (facetwin train --out RUN_DIR)")
    which.add_argument("--backbone", metavar="NAME", help="plain pretrained backbone: sface (default) or vggface")
    p.add_argument("--gallery", metavar="FILE", help="gallery file for the people endpoints (enroll, identify)")
    p.add_argument("--index", metavar="INDEX_DIR", help="a facetwin index for /v1/find (the photos a person is in)")
    p.add_argument(
        "--max-upload-mb", type=float, default=10.0, metavar="N", help="largest request body accepted (default 10)"
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default info)",
    )
    p.set_defaults(func=_run)

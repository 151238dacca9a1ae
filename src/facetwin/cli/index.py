"""`facetwin index PHOTOS... --out INDEX_DIR`: every face of a photo collection into Parquet shards."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facetwin.cli.parser import backbone_source, existing_path
from facetwin.core.text import count

SHOWN_ERRORS = 20  # unreadable photos listed one a line; the rest are in manifest.json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "index",
        help="index every face of a photo collection (in-process or on Ray), resumable",
        description="Detect, align and embed every face of every photo under PHOTOS (folders walked recursively, "
        "text files listing paths, or photos) into INDEX_DIR: Parquet shards and a manifest. Photos are chosen by "
        "name ending and signature (JPEG, PNG, WebP, GIF, BMP, TIFF, PPM); other files (videos, .xmp sidecars, "
        "notes) are skipped and counted. Re-running adds only photos that are new or changed (path + SHA-256). "
        "Unreadable photos are listed with their reason.",
    )
    p.add_argument("photos", nargs="+", metavar="PHOTOS", help="folders, lists of paths (.txt) or photos")
    p.add_argument("--out", required=True, metavar="INDEX_DIR", help="the index folder (created or extended)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--backbone", type=backbone_source, metavar="NAME",
                       help="a plain backbone (default: the index's own model, else sface)")
    which.add_argument("--model", type=_run_dir_or_backbone, metavar="RUN_DIR",
                       help="a trained run directory (facetwin train --out RUN_DIR)")
    p.add_argument("--workers", type=int, metavar="N", help="run on Ray with N CPU workers")
    p.add_argument("--ray-address", metavar="ADDR", help="run on the Ray cluster at ADDR (e.g. auto or host:6379)")
    p.add_argument(
        "--engine", choices=["auto", "local", "ray"], default="auto",
        help="auto (default): Ray with --workers/--ray-address or past 2,000 photos, else in-process",
    )
    p.add_argument("--root", metavar="DIR",
                   help="the archive's root: paths are kept relative to it (default for a new index: the deepest "
                   "folder holding every photo); for an existing index, where its root is mounted now")
    p.add_argument("--shard-photos", type=int, default=1000, metavar="N", help="photos per shard (default 1000)")
    p.add_argument("--json", action="store_true", help="print the run's summary as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    p.set_defaults(func=_run)


def _run_dir_or_backbone(text: str) -> str:
    """``--model RUN_DIR``; a backbone name is still taken (earlier releases' ``index --model NAME``)."""
    if Path(text).is_dir():
        return text
    try:
        backbone_source(text)
    except argparse.ArgumentTypeError:
        return existing_path("folder", "run directory")(text)
    print(f"facetwin index: --model {text} is deprecated for a backbone name; use --backbone {text} (--model takes "
          "a trained run directory, as in every other command).", file=sys.stderr)
    return text


def _skipped(skipped: dict) -> str:
    """``3 files skipped, not photos: .mov 2, .xmp 1``."""
    kinds = ", ".join(f"{ending} {n:,}" for ending, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{count(sum(skipped.values()), 'file')} skipped, not photos: {kinds}"


def _run(args) -> int:
    import dataclasses

    from facetwin.collection import index
    from facetwin.errors import FacetwinError
    from facetwin.vision.io import ACCEPTED

    if args.shard_photos < 1:
        raise FacetwinError(f"--shard-photos must be at least 1, got {args.shard_photos}.")
    summary = index(
        args.photos, args.out, model=args.model or args.backbone, workers=args.workers, ray_address=args.ray_address,
        engine=args.engine, shard_photos=args.shard_photos, progress=not args.quiet and sys.stderr.isatty(),
        root=args.root,
    )
    sources = " ".join(args.photos)
    if summary.scanned == 0:
        skipped = f" ({_skipped(summary.skipped)})" if summary.skipped else ""
        raise FacetwinError(f"{sources}: no photos found{skipped}; accepted formats: {ACCEPTED}.")
    if summary.todo and summary.unreadable == summary.todo:
        last = summary.errors[-1]["reason"]  # this run's photos are the last the index recorded
        raise FacetwinError(
            f"{sources}: no photo could be read ({count(summary.todo, 'photo')} tried; {last.rstrip('.')}); "
            f"all are listed in {Path(summary.index) / 'manifest.json'}."
        )
    if args.json:
        print(json.dumps(dataclasses.asdict(summary)))
        return 0
    c = summary.counts
    print(
        f"{summary.index}: {count(summary.added_photos, 'photo')} added ({count(summary.added_faces, 'face')}) in "
        f"{summary.seconds:.1f} s, {summary.photos_per_second:.1f} photos/s on {summary.engine}; "
        f"the index holds {count(c['photos'], 'photo')}, {count(c['faces'], 'face')}, {c['errors']:,} unreadable, "
        f"{c['no_face']:,} without a face"
    )
    if summary.skipped:
        print(f"  {_skipped(summary.skipped)}")
    for error in summary.errors[:SHOWN_ERRORS]:
        print(f"  unreadable: {error['reason']}")
    if len(summary.errors) > SHOWN_ERRORS:
        print(f"  ... and {len(summary.errors) - SHOWN_ERRORS:,} more (see manifest.json)")
    return 0

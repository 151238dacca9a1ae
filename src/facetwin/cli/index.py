"""`facetwin index PHOTOS... --out INDEX_DIR`: every face of a photo collection into Parquet shards."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "index",
        help="index every face of a photo collection (in-process or on Ray), resumable",
        description="Detect, align and embed every face of every photo under PHOTOS (folders walked recursively, "
        "text files listing paths, or photos) into INDEX_DIR: Parquet shards and a manifest. Re-running adds only "
        "photos that are new or changed (path + SHA-256). Unreadable photos are listed with their reason.",
    )
    p.add_argument("photos", nargs="+", metavar="PHOTOS", help="folders, lists of paths (.txt) or photos")
    p.add_argument("--out", required=True, metavar="INDEX_DIR", help="the index folder (created or extended)")
    p.add_argument("--model", metavar="M", help="backbone name or trained run (default: the index's, or sface)")
    p.add_argument("--workers", type=int, metavar="N", help="run on Ray with N CPU workers")
    p.add_argument("--ray-address", metavar="ADDR", help="run on the Ray cluster at ADDR (e.g. auto or host:6379)")
    p.add_argument(
        "--engine", choices=["auto", "local", "ray"], default="auto",
        help="auto (default): Ray with --workers/--ray-address or past 2,000 photos, else in-process",
    )
    p.add_argument("--shard-photos", type=int, default=1000, metavar="N", help="photos per shard (default 1000)")
    p.add_argument("--json", action="store_true", help="print the run's summary as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import dataclasses

    from facetwin.collection import index
    from facetwin.errors import FacetwinError

    if args.shard_photos < 1:
        raise FacetwinError(f"--shard-photos must be at least 1, got {args.shard_photos}.")
    summary = index(
        args.photos, args.out, model=args.model, workers=args.workers, ray_address=args.ray_address,
        engine=args.engine, shard_photos=args.shard_photos, progress=not args.quiet,
    )
    if args.json:
        print(json.dumps(dataclasses.asdict(summary)))
        return 0
    c = summary.counts
    print(
        f"{summary.index}: {summary.added_photos} photo(s) added ({summary.added_faces} faces) in "
        f"{summary.seconds:.1f} s, {summary.photos_per_second:.1f} photos/s on {summary.engine}; "
        f"the index holds {c['photos']} photos, {c['faces']} faces, {c['errors']} unreadable, "
        f"{c['no_face']} without a face"
    )
    for error in summary.errors[:20]:
        print(f"  unreadable: {error['reason']}")
    if len(summary.errors) > 20:
        print(f"  ... and {len(summary.errors) - 20} more (see manifest.json)")
    return 0

"""`facetwin find PHOTO --index INDEX_DIR`: the photos of an index in which this person appears."""

from __future__ import annotations

import json

from facetwin.cli.options import add_face
from facetwin.cli.parser import existing_path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "find",
        help="find the photos of an index in which the person of PHOTO appears",
        description="The main face of PHOTO (the most prominent near the centre; --face largest for the largest) is "
        "searched among the faces of INDEX_DIR (a FAISS index kept beside it, extended with the faces added since); "
        "photos are listed best first with the face box and exact distance, down to the model's threshold.",
    )
    p.add_argument("photo", type=existing_path("file", "photo"), metavar="PHOTO",
        help="a photo of the person (its main face)")
    p.add_argument("--index", required=True, type=existing_path("folder", "facetwin index"), metavar="INDEX_DIR",
        help="an index made by facetwin index")
    p.add_argument("--top-k", type=int, default=20, metavar="K", help="at most K photos (default 20)")
    p.add_argument("--root", metavar="DIR", help="where the index's archive is mounted now, if it moved")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_face(p)
    p.set_defaults(func=_run)


def _run(args) -> int:
    from facetwin.cli.options import describe_face
    from facetwin.collection.find import Finder
    from facetwin.core.paths import printable
    from facetwin.errors import FacetwinError

    if args.top_k < 1:
        raise FacetwinError(f"--top-k must be at least 1, got {args.top_k}.")
    result = Finder(args.index, root=args.root).find(args.photo, args.top_k, face=args.face)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"{args.photo}: {describe_face(result.query)}")
    print(f"{len(result.hits)} photo(s) within distance {result.threshold:.4f} among {result.faces_searched} faces")
    for hit in result.hits:
        box = ", ".join(f"{v:.0f}" for v in hit.box)
        print(f"{hit.distance:.4f}  {printable(hit.path)}  face {hit.face} [{box}]")
    return 0

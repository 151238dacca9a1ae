"""`facetwin enroll`, `facetwin identify` and `facetwin gallery list|remove|stats`."""

from __future__ import annotations

import dataclasses
import json

from facetwin.cli.options import add_face, describe_face
from facetwin.errors import FacetwinError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "enroll", help="add photos of a person to a gallery",
        description="Embed the main face of each photo (the most prominent near the centre; --face largest for the "
        "largest) and add them to PERSON in the gallery (created if needed).",
    )
    p.add_argument("person", metavar="PERSON", help="the person's name")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos of the person (one face of each)")
    _gallery_options(p, model=True)
    add_face(p)
    p.set_defaults(func=_enroll)

    p = subparsers.add_parser(
        "identify", help="who in the gallery is this? ('unknown' beyond the threshold)",
        description="Find the people of the gallery nearest to the main face of IMAGE (the most prominent near the "
        "centre; --face largest for the largest); 'unknown' when none is within the model's threshold.",
    )
    p.add_argument("image", metavar="IMAGE", help="a photo (its main face)")
    p.add_argument("--top-k", type=int, default=1, metavar="K", help="how many candidates to list")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _gallery_options(p, model=True)
    add_face(p)
    p.set_defaults(func=_identify)

    p = subparsers.add_parser(
        "gallery", help="list, remove or count the people of a gallery; import an index",
        description="list: the people and how many embeddings each has; stats: counts, model and search method; "
        "remove PERSON: erase a person for good; import INDEX_DIR: enrol the faces of an index whose folders are "
        "named by person.",
    )
    p.add_argument("action", choices=["list", "remove", "stats", "import"])
    p.add_argument("person", nargs="?", metavar="PERSON", help="the person to remove (import: the INDEX_DIR)")
    _gallery_options(p, model=False)
    p.set_defaults(func=_manage)


def _gallery_options(p, *, model: bool) -> None:
    p.add_argument("--gallery", required=True, metavar="FILE", help="the gallery (SQLite file)")
    if model:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--model", metavar="RUN_DIR", help="a trained run (default: the gallery's own model)")
        group.add_argument("--backbone", metavar="NAME", help="a plain backbone (default: the gallery's own model)")


def _open(args, *, create: bool = False):
    """The gallery of ``--gallery``; only ``enroll`` may create it."""
    from facetwin.gallery import Gallery

    return Gallery(args.gallery, getattr(args, "model", None) or getattr(args, "backbone", None), create=create)


def _enroll(args) -> int:
    added = _open(args, create=True).enroll(args.person, args.images, face=args.face)
    print(f"enrolled {added} photo(s) of {args.person} in {args.gallery}")
    return 0


def _identify(args) -> int:
    from facetwin.core.validate import top_k

    top_k(args.top_k)
    result = _open(args).identify(args.image, top_k=args.top_k, face=args.face)
    if args.json:
        print(json.dumps(dataclasses.asdict(result)))
        return 0
    print(f"{result.person}  (search: {result.method}, threshold {result.threshold:.4f})")
    print(f"  {args.image}: {describe_face(result.face)}")
    for match in result.matches:
        print(f"  {match.person}: distance {match.distance:.4f}, probability {match.probability:.3f}")
    return 0


def _manage(args) -> int:
    if args.action == "import":
        from facetwin.collection.gallery_import import import_index

        if not args.person:
            raise FacetwinError("gallery import needs the INDEX_DIR to import.")
        print(json.dumps(import_index(args.person, args.gallery)))
        return 0
    gallery = _open(args)
    if args.action == "list":
        for person in gallery.people():
            print(f"{person.name}\t{person.embeddings} embedding(s)")
    elif args.action == "stats":
        print(json.dumps(gallery.stats(), indent=2))
    else:
        if not args.person:
            raise FacetwinError("gallery remove needs the PERSON to remove.")
        removed = gallery.remove(args.person)
        print(f"removed {args.person} ({removed} embedding(s)) from {args.gallery}; the file was vacuumed")
    return 0

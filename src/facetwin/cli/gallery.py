"""`facetwin enroll`, `facetwin identify` and `facetwin gallery list|remove|stats`."""

from __future__ import annotations

import dataclasses
import json

from facetwin.cli.options import add_face, describe_face
from facetwin.cli.parser import backbone_source, existing_path
from facetwin.core.text import count
from facetwin.errors import FacetwinError
from facetwin.gallery.results import IDENTIFY_TOP_K, MAX_IDENTIFY_TOP_K


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "enroll", help="add photos of a person to a gallery",
        description="Embed the main face of each photo (the most prominent near the centre; --face largest for the "
        "largest) and add them to PERSON in the gallery (created if needed).",
    )
    p.add_argument("person", metavar="PERSON", help="the person's name")
    p.add_argument("images", nargs="+", type=existing_path("file", "photo"), metavar="IMAGE",
        help="photos of the person (one face of each)")
    _gallery_options(p, model=True)
    add_face(p)
    p.set_defaults(func=_enroll)

    p = subparsers.add_parser(
        "identify", help="who in the gallery is this? ('unknown' beyond the threshold)",
        description="Find the people of the gallery nearest to the main face of IMAGE (the most prominent near the "
        "centre; --face largest for the largest); 'unknown' when none is within the model's threshold.",
    )
    p.add_argument("image", type=existing_path("file", "photo"), metavar="IMAGE", help="a photo (its main face)")
    p.add_argument("--top-k", type=int, default=IDENTIFY_TOP_K, metavar="K",
                   help=f"how many candidates to list (1-{MAX_IDENTIFY_TOP_K}, default {IDENTIFY_TOP_K})")
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
    p.add_argument("action", choices=["list", "remove", "stats", "import"], metavar="ACTION",
                   help="list, remove, stats or import")
    p.add_argument("person", nargs="?", metavar="PERSON", help="the person to remove (import: the INDEX_DIR)")
    _gallery_options(p, model=True)
    p.add_argument("--json", action="store_true", help="print JSON (stats, import)")
    p.set_defaults(func=_manage)


GALLERY_HELP = (
    "the gallery (SQLite file; default: the model's own, shared with `facetwin serve`: "
    "$FACETWIN_HOME/galleries/MODEL.db, e.g. ~/.cache/facetwin/galleries/sface.db)"
)


def _gallery_options(p, *, model: bool) -> None:
    p.add_argument("--gallery", metavar="FILE", help=GALLERY_HELP)
    if model:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--model", type=existing_path("folder", "run directory"), metavar="RUN_DIR",
            help="a trained run (default: the gallery's own model)")
        group.add_argument("--backbone", type=backbone_source, metavar="NAME",
            help="a plain backbone (default: the gallery's own model)")


def _open(args, *, create: bool = False):
    """The gallery of ``--gallery``, else the model's default one (the service's too); only ``enroll`` creates."""
    from facetwin.gallery import Gallery

    choice = getattr(args, "model", None) or getattr(args, "backbone", None)
    if args.gallery:
        return Gallery(args.gallery, choice, create=create)
    from facetwin.gallery.location import model_gallery
    from facetwin.loading import load

    model = load(choice or "sface")
    path = model_gallery(model)
    if not create and not path.is_file():
        raise FacetwinError(
            f"{path}: no gallery yet for model {model.source} (`facetwin enroll PERSON PHOTO...` or the web page of "
            "`facetwin serve` creates it; --gallery FILE names another)."
        )
    return Gallery(path, model, create=create)


def _enroll(args) -> int:
    gallery = _open(args, create=True)
    added = gallery.enroll(args.person, args.images, face=args.face)
    print(f"enrolled {count(added, 'photo')} of {args.person} in {gallery.path}")
    if added < len(args.images):
        print(f"{count(len(args.images) - added, 'photo')} already enrolled for {args.person}: skipped")
    return 0


def _identify(args) -> int:
    from facetwin.core.validate import top_k

    top_k(args.top_k, limit=MAX_IDENTIFY_TOP_K)
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
        done = import_index(args.person, args.gallery)
        if args.json:
            print(json.dumps(done))
            return 0
        notes = [f"{count(done['already_enrolled'], 'photo')} already there"] if done["already_enrolled"] else []
        if done["unnamed"]:
            notes.append(f"{count(done['unnamed'], 'photo')} outside a person's folder left out")
        print(f"enrolled {count(done['enrolled'], 'face')} of {count(done['people'], 'person')} from {args.person} "
              f"into {done['gallery']}" + (f" ({'; '.join(notes)})" if notes else ""))
        return 0
    gallery = _open(args)
    if args.action == "list":
        for person in gallery.people():
            print(f"{person.name}\t{count(person.embeddings, 'embedding')}")
    elif args.action == "stats":
        stats = gallery.stats()
        if args.json:
            print(json.dumps(stats))
        else:
            print(f"{stats['gallery']}: {count(stats['people'], 'person')}, {count(stats['embeddings'], 'embedding')}"
                  f", model {stats['model']}, search {stats['search']} ({stats['bytes']:,} bytes)")
    else:
        if not args.person:
            raise FacetwinError("gallery remove needs the PERSON to remove.")
        removed = gallery.remove(args.person)
        print(f"removed {args.person} ({count(removed, 'embedding')}) from {gallery.path}; the file was vacuumed")
    return 0

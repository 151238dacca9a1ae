"""`facetwin cluster INDEX_DIR` and `facetwin cluster name|merge|split|export|list INDEX_DIR ...`."""

from __future__ import annotations

import json

from facetwin.core.paths import printable
from facetwin.errors import FacetwinError

SHOWN = 50  # clusters printed (all of them with --json)
ACTIONS = {
    "name": "name INDEX_DIR CLUSTER_ID NAME",
    "merge": "merge INDEX_DIR CLUSTER_ID CLUSTER_ID...",
    "split": "split INDEX_DIR CLUSTER_ID [FACE_ID...]",
    "export": "export INDEX_DIR --gallery FILE",
    "list": "list INDEX_DIR",
}
USAGE = "facetwin cluster INDEX_DIR [--min-faces K] [--fresh] [--root DIR] [--json] | " + " | ".join(
    f"facetwin cluster {a}" for a in ACTIONS.values()
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cluster", help="group the faces of an index into people; name, merge, split, export them",
        usage=USAGE,
        description="INDEX_DIR alone: assign every face of the index a person cluster (or noise), with the model's "
        "calibrated merge distance as the scale (no tuning); later runs keep existing clusters and their ids and add "
        "the new faces from their own neighbours (the cost follows what was added). "
        "name: name a cluster; merge: merge clusters into the first; split: move faces to a new cluster (no faces: "
        "re-cut the cluster at a stricter threshold); export: enrol named clusters into a gallery; list: print the "
        "clusters. Stored in INDEX_DIR/clusters.parquet.",
    )
    p.add_argument("words", nargs="+", metavar="INDEX_DIR", help="INDEX_DIR, or an action and its arguments")
    p.add_argument("--min-faces", type=int, default=2, metavar="K",
                   help="smallest new cluster; smaller groups are noise (default 2)")
    p.add_argument("--fresh", action="store_true", help="re-cluster everything except the named clusters")
    p.add_argument("--gallery", metavar="FILE",
                   help="export: the gallery to enrol named clusters into; otherwise the gallery whose nearest person "
                   "the summary names for each cluster (default: the model's own gallery, if it exists)")
    p.add_argument("--root", metavar="DIR", help="where the index's archive is mounted now, if it moved (for the "
                   "sample photos shown)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)


def _ints(words: list[str], what: str) -> list[int]:
    try:
        return [int(w) for w in words]
    except ValueError:
        raise FacetwinError(f"{what} must be whole numbers, not {' '.join(words)!r}.") from None


def _run(args) -> int:
    from facetwin.collection import people

    words = args.words
    action = words[0] if words[0] in ACTIONS and len(words) > 1 else None
    if action is None:
        if len(words) != 1:
            raise FacetwinError(f"unknown cluster action '{words[0]}'; usage: {USAGE}.")
        return _show(people.cluster_index(words[0], min_faces=args.min_faces, fresh=args.fresh), args, words[0])
    root, rest = words[1], words[2:]
    if action == "list":
        return _show(people.summary(root), args, root)
    if action == "export":
        if not args.gallery:
            raise FacetwinError("cluster export needs --gallery FILE.")
        result = people.export_gallery(root, args.gallery)
        print(json.dumps(result) if args.json else f"enrolled {result['enrolled']} face(s) of {result['people']} "
              f"named people into {printable(args.gallery)} ({result['already_enrolled']} already there)")
        return 0
    if not rest or (action == "name" and len(rest) != 2):
        raise FacetwinError(f"usage: facetwin cluster {ACTIONS[action]}.")
    if action == "name":
        result = [people.name(root, _ints(rest[:1], "CLUSTER_ID")[0], rest[1])]
    elif action == "merge":
        result = [people.merge(root, _ints(rest, "cluster ids"))]
    else:
        result = people.split(root, _ints(rest[:1], "CLUSTER_ID")[0], _ints(rest[1:], "face ids"))
    if args.json:
        print(json.dumps(result))
    for c in [] if args.json else result:
        print(f"cluster {c['id']}: {c['faces']} face(s)" + (f", {printable(c['name'])}" if c["name"] else ""))
    return 0


def _show(summary: dict, args, root: str) -> int:
    """The summary, and for each cluster shown who is likely in it and a sample photo (:func:`people.describe`)."""
    from facetwin.collection import people

    shown = summary["list"] if args.json else summary["list"][:SHOWN]
    described, gallery = people.describe(root, shown, gallery=args.gallery, archive_root=args.root)
    if args.json:
        print(json.dumps({**summary, "list": described, "gallery": gallery}))
        return 0
    extra = ""
    if "new_faces" in summary:
        extra = (f"; {summary['mode']} run: {summary['new_faces']} new face(s), {summary['joined']} joined existing "
                 f"clusters, {summary['new_clusters']} new cluster(s)")
    cut = f" (merge distance {summary['merge_distance']:.3f})" if summary.get("merge_distance") else ""
    print(f"{printable(root)}: {summary['faces']} faces in {summary['clusters']} clusters ({summary['named']} named), "
          f"{summary['noise']} noise{extra}{cut}")
    if gallery is not None:
        print(f"  likely: the nearest person of {printable(gallery)} within the model's threshold")
    for c in described:
        parts = [printable(c["name"])] if c["name"] else []
        likely = c["likely"]
        if likely is not None:
            who, distance = printable(likely["person"]), likely["distance"]
            parts.append(f"likely {who} ({distance:.3f})" if likely["within_threshold"]
                         else f"nobody enrolled (nearest {who}, {distance:.3f})")
        if c["sample"]:
            parts.append(f"e.g. {printable(c['sample'])}")
        print(f"  cluster {c['id']:>5}: {c['faces']:>5} faces  " + "; ".join(parts))
    if len(summary["list"]) > SHOWN:
        print(f"  ... {len(summary['list']) - SHOWN} more (facetwin cluster list {printable(root)} --json)")
    return 0

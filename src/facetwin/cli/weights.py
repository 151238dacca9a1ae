"""`facetwin weights list | fetch NAME [--url URL] | import NAME FILE`: the weight files facetwin knows."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facetwin.errors import FacetwinError

KNOWN = ("vggface",)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="list, download or import backbone weights",
        description="List the weights facetwin knows, download them, or import a file you fetched yourself.",
    )
    sub = parser.add_subparsers(dest="weights_command", required=True, metavar="ACTION")

    p_list = sub.add_parser(
        "list", help="show each known weight file: where it lives, present or not, SHA-256",
        description="Show every model file facetwin knows (VGG-Face weights, the SFace and YuNet ONNX files): "
        "where it lives, whether it is present, and its SHA-256.",
    )
    p_list.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    p_list.set_defaults(func=_list)

    p_fetch = sub.add_parser(
        "fetch",
        help="download weights (resumable, checked) and convert them into the cache",
        description="Download weights with a progress bar; an interrupted download resumes when run again.",
    )
    p_fetch.add_argument("name", choices=KNOWN, help="which weights")
    p_fetch.add_argument("--url", help="download from this URL instead of the release URL")
    p_fetch.add_argument("--keep", type=Path, help="also keep the downloaded source file here")
    p_fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    p_fetch.add_argument("--force", action="store_true", help="download again even if the weights are present")
    p_fetch.set_defaults(func=_fetch)

    p_import = sub.add_parser(
        "import",
        help="convert a weights file you downloaded yourself into the cache",
        description="Check a weights file (e.g. deepface's vgg_face_weights.h5) and convert it once into "
        "$FACETWIN_HOME (safetensors, with the source SHA-256 recorded).",
    )
    p_import.add_argument("name", choices=KNOWN, help="which weights")
    p_import.add_argument("file", type=Path, help="the file to import (HDF5 for vggface)")
    p_import.set_defaults(func=_import)


def entries() -> list[dict]:
    """One dict per known weight: name, where, present, sha256 (of the source file), source."""
    from facetwin.backbones import vggface_weights as W

    rows = []
    path = W.default_path()
    row = {"name": "vggface", "where": str(path), "present": path.is_file(), "sha256": None, "source": W.WEIGHTS_URL}
    if path.is_file():
        try:
            meta = W._read_metadata(path)
            row["sha256"] = meta.get("source_sha256")
        except Exception:  # a damaged file shows as present without a digest
            row["sha256"] = None
    part = W.weights_dir() / "vgg_face_weights.h5.part"
    if part.is_file():
        row["partial_download"] = {"path": str(part), "bytes": part.stat().st_size}
    rows.append(row)
    from facetwin.core import assets

    return rows + assets.weight_entries()


def _list(args: argparse.Namespace) -> int:
    rows = entries()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = "present" if row.get("present") else "absent"
        digest = row.get("sha256") or "-"
        print(f"{row['name']:<10} {state:<8} {digest}  {row['where']}")
        if row.get("partial_download"):
            partial = row["partial_download"]
            print(f"           partial download: {partial['bytes']:,} bytes in {partial['path']} "
                  "(`facetwin weights fetch vggface` resumes it)")
        if not row.get("present") and row["name"] == "vggface":
            print("           get it with `facetwin weights fetch vggface` or `facetwin weights import vggface FILE`")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from facetwin.backbones import vggface_weights as W
    from facetwin.core import download

    url = args.url or W.WEIGHTS_URL
    if W.default_path().is_file() and not args.force:
        print(f"vggface: already present in {W.default_path()} (use --force to download again)")
        return 0
    # The partial file lives in the cache (or beside --keep) so a second `fetch` resumes it.
    target = args.keep or W.weights_dir() / "vgg_face_weights.h5"
    download.fetch(url, target, verify=W.check_h5, progress=not args.quiet, hint=W.IMPORT_HINT)
    loaded = W.import_h5(target)
    if not args.keep:
        target.unlink(missing_ok=True)
    print(f"vggface: {loaded.path} (source SHA-256 {loaded.sha256})")
    return 0


def _import(args: argparse.Namespace) -> int:
    from facetwin.backbones import vggface_weights as W

    if not args.file.is_file():
        raise FacetwinError(f"{args.file}: no such file.")
    loaded = W.import_h5(args.file)
    print(f"vggface: imported {args.file} into {loaded.path} (source SHA-256 {loaded.sha256})")
    return 0

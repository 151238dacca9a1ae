"""`facetwin weights list | fetch NAME | import NAME FILE [--accept-license]`: the weight files facetwin knows.

``vggface`` is converted into safetensors (``backbones/vggface/weights.py``); the research-licensed trunks
(``arcface-mbf``, ``edgeface-xs``, ``edgeface-xxs``) are checked and kept as they are
(``backbones/licensed.py``), once their licence is accepted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facetwin.errors import FacetwinError

LICENSED = ("arcface-mbf", "edgeface-xs", "edgeface-xxs")  # = the registry's entries with a weights file
KNOWN = ("vggface", *LICENSED)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="list, download or import backbone weights",
        description="List the weights facetwin knows, download them, or import a file you fetched yourself. "
        "arcface-mbf (InsightFace: non-commercial research only) and edgeface-xs/-xxs (Idiap: BSD-3-Clause code, "
        "trained on research-only data) need --accept-license once.",
    )
    sub = parser.add_subparsers(dest="weights_command", required=True, metavar="ACTION")

    p_list = sub.add_parser(
        "list", help="show each known weight file: where it lives, present or not, SHA-256, licence",
        description="Show every model file facetwin knows (VGG-Face, the research-licensed trunks, the SFace and "
        "YuNet ONNX files): where it lives, whether it is present, its SHA-256 and licence.",
    )
    p_list.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    p_list.set_defaults(func=_list)

    p_fetch = sub.add_parser(
        "fetch",
        help="download weights (resumable, checked) into the cache",
        description="Download weights with a progress bar; an interrupted download resumes when run again.",
    )
    p_fetch.add_argument("name", choices=KNOWN, help="which weights")
    p_fetch.add_argument("--url", help="download from this URL instead of the release URL")
    p_fetch.add_argument("--keep", type=Path, help="vggface: also keep the downloaded source file here")
    p_fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    p_fetch.add_argument("--force", action="store_true", help="download again even if the weights are present")
    _accept_option(p_fetch)
    p_fetch.set_defaults(func=_fetch)

    p_import = sub.add_parser(
        "import",
        help="check a weights file you downloaded yourself and add it to the cache",
        description="Check a weights file and add it to $FACETWIN_HOME/weights: deepface's vgg_face_weights.h5 "
        "(converted to safetensors), InsightFace's w600k_mbf.onnx or its int8 derivative, Idiap's "
        "edgeface_xs_q.pt / edgeface_xxs_q.pt / edgeface_xxs.pt. The file is recognised by its SHA-256 or its "
        "structure, which the model's fingerprint records.",
    )
    p_import.add_argument("name", choices=KNOWN, help="which weights")
    p_import.add_argument("file", type=Path, help="the file to import")
    _accept_option(p_import)
    p_import.set_defaults(func=_import)


def _accept_option(p) -> None:
    p.add_argument(
        "--accept-license", action="store_true",
        help="accept the weights' licence (research-licensed trunks; asked once, remembered in $FACETWIN_HOME)",
    )


def _vggface_row() -> dict:
    from facetwin.backbones.vggface import weights as W

    path = W.default_path()
    row = {"name": "vggface", "where": str(path), "present": path.is_file(), "sha256": None, "source": W.WEIGHTS_URL,
           "licence": "VGG-Face: research (University of Oxford); deepface's conversion, MIT"}
    if path.is_file():
        try:
            row["sha256"] = W._read_metadata(path).get("source_sha256")
        except Exception:  # a damaged file shows as present without a digest
            row["sha256"] = None
    part = W.weights_dir() / "vgg_face_weights.h5.part"
    if part.is_file():
        row["partial_download"] = {"path": str(part), "bytes": part.stat().st_size}
    return row


def _licensed_row(name: str) -> dict:
    from facetwin.backbones import licensed
    from facetwin.backbones.registry import entry

    found = entry(name)
    weights, record = found.weights, licensed.recorded(found)
    return {
        "name": name, "where": str(record.path if record else licensed.store_dir(name) / weights.filename),
        "present": bool(record and record.path.is_file()), "sha256": record.sha256 if record else None,
        "form": record.form if record else None, "source": weights.url,
        "licence": f"{weights.licence} ({weights.licence_url})", "licence_accepted": licensed.licence_accepted(found),
    }


def entries() -> list[dict]:
    """One dict per known weight: name, where, present, sha256 (of the source file), source, licence."""
    from facetwin.core import assets

    return [_vggface_row(), *(_licensed_row(n) for n in LICENSED), *assets.weight_entries()]


def _list(args: argparse.Namespace) -> int:
    rows = entries()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = "present" if row.get("present") else "absent"
        digest = row.get("sha256") or "-"
        print(f"{row['name']:<12} {state:<8} {digest}  {row['where']}")
        if row.get("licence"):
            print(f"             licence: {row['licence']}")
        if row.get("partial_download"):
            partial = row["partial_download"]
            print(f"             partial download: {partial['bytes']:,} bytes in {partial['path']} "
                  f"(`facetwin weights fetch {row['name']}` resumes it)")
        if not row.get("present") and row["name"] in KNOWN:
            accept = " --accept-license" if row["name"] in LICENSED else ""
            print(f"             get it with `facetwin weights fetch {row['name']}{accept}` or "
                  f"`facetwin weights import {row['name']} FILE{accept}`")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    if args.name in LICENSED:
        return _fetch_licensed(args)
    from facetwin.backbones.vggface import weights as W
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


def _fetch_licensed(args: argparse.Namespace) -> int:
    from facetwin.backbones import licensed
    from facetwin.backbones.registry import entry

    found = entry(args.name)
    licensed.require_licence(found, args.accept_license, "download them")
    present = licensed.recorded(found)
    if present is not None and present.path.is_file() and not args.force:
        print(f"{args.name}: already present in {present.path} (use --force to download again)")
        return 0
    if args.keep:
        raise FacetwinError("--keep applies to vggface only; the other weights are kept as downloaded.")
    got = licensed.fetch(found, args.url, progress=not args.quiet)
    print(f"{args.name}: {got.path} ({got.form}, SHA-256 {got.sha256}); licence: {found.weights.licence}")
    return 0


def _import(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise FacetwinError(f"{args.file}: no such file.")
    if args.name in LICENSED:
        from facetwin.backbones import licensed
        from facetwin.backbones.registry import entry

        found = entry(args.name)
        licensed.require_licence(found, args.accept_license, "import them")
        got = licensed.install(found, args.file)
        print(f"{args.name}: imported {args.file} into {got.path} ({got.form}, SHA-256 {got.sha256}); "
              f"licence: {found.weights.licence}")
        return 0
    from facetwin.backbones.vggface import weights as W

    loaded = W.import_h5(args.file)
    print(f"vggface: imported {args.file} into {loaded.path} (source SHA-256 {loaded.sha256})")
    return 0

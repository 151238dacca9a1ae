"""`facetwin embed IMAGE...`: face embeddings of photos (detection + alignment + backbone + head)."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

from facetwin.cli.options import add_face, add_model_arguments, add_no_face, describe_face, model_from_args
from facetwin.cli.parser import existing_path
from facetwin.core.paths import atomic_write_bytes, output_file
from facetwin.core.text import count
from facetwin.errors import FacetwinError


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def _run(args: argparse.Namespace) -> int:
    output_file(args.out, "--out", ".npy")
    model = model_from_args(args)
    crops, rows = [], []
    for image in args.images:
        found = model.face_crops(image, detect=not args.no_detect, no_face=args.no_face, all_faces=args.all_faces)
        for crop in found:
            crops.append(crop.crop)
            rows.append(crop)
    embeddings = model.embed_crops(np.stack(crops)).astype(np.float32)
    if args.out:
        out = Path(args.out)
        if out.suffix != ".npy":
            raise FacetwinError(f"{out}: the output file must end in .npy.")
        _save_npy(out, embeddings)
    backbone = model.backbone.describe()
    if args.json:
        doc = {
            "backbone": backbone.get("name", model.backbone.name),
            "layer": backbone.get("layer"),
            "model": str(Path(args.model).resolve()) if args.model else None,
            "fingerprint": model.fingerprint,
            "distance": model.distance,
            "embeddings": [[round(float(v), 7) for v in row] for row in embeddings],
            "files": [c.source for c in rows],
            "faces": [c.to_dict() for c in rows],
        }
        if args.out:
            doc["out"] = str(Path(args.out).resolve())
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
        return 0
    what = f"run {args.model}" if args.model else f"backbone {model.backbone.name}"
    print(f"{count(len(rows), 'embedding')} of {embeddings.shape[1]} values ({what}, {model.distance} distance)")
    for i, crop in enumerate(rows):
        where = describe_face(crop.to_dict()) if not args.all_faces or crop.face is None else _face_box(crop)
        head = ", ".join(f"{v:+.3f}" for v in embeddings[i, :4])
        print(f"[{i}] {crop.source}: {where}; [{head}, ...]")
    if args.out:
        print(f"saved {embeddings.shape[0]}×{embeddings.shape[1]} float32 array to {args.out}")
    return 0


def _face_box(crop) -> str:
    """Where one of several faces (``--all-faces``) is."""
    x, y, w, h = crop.face.box
    return f"face at x={x:.0f} y={y:.0f} w={w:.0f} h={h:.0f} (score {crop.face.score:.2f}; one of {crop.faces_found})"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "embed",
        help="face embeddings of photos",
        description="Detect the face in each photo (the main one: the most prominent near the centre, or the "
        "largest with --face largest, or every face with --all-faces, main first), align it for the backbone and "
        "print or save its embedding.",
    )
    p.add_argument("images", nargs="+", type=existing_path("file", "photo"), metavar="IMAGE",
        help="photo files (JPEG, PNG, WEBP, PGM, ...)")
    add_model_arguments(p)
    p.add_argument("--no-detect", action="store_true", help="use the whole image, resized, without detection")
    add_no_face(p)
    add_face(p)
    p.add_argument("--all-faces", action="store_true", help="one embedding per detected face (default: one per photo)")
    p.add_argument("--out", metavar="FILE.npy", help="save the (N, D) float32 embeddings as a .npy file")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object: backbone, layer, embeddings, files, faces"
    )
    p.set_defaults(func=_run)

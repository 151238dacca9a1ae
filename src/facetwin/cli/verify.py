"""`facetwin verify IMAGE_A IMAGE_B`: same person or not, with the distance, threshold and probability."""

from __future__ import annotations

import argparse
import json
import sys

from facetwin.cli.options import add_face, add_model_arguments, add_no_face, describe_face, model_from_args
from facetwin.cli.parser import existing_path


def _run(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    result = model.verify(args.image_a, args.image_b, no_face=args.no_face)
    if args.json:
        doc = result.to_dict()
        doc["model"] = model.source
        doc["fingerprint"] = model.fingerprint
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
        return 0
    verdict = "same person" if result.same else "different people"
    sign = "<=" if result.same else ">"
    print(
        f"{verdict}: {result.distance_kind} distance {result.distance:.4f} {sign} threshold {result.threshold:.4f}"
        f" (probability of same person {result.probability:.3f})"
    )
    for label, face in zip("AB", result.faces, strict=True):
        print(f"  {label}: {face['file']}: {describe_face(face)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="are two photos the same person?",
        description="Detect and align the main face of each photo (the most prominent near the centre; --face "
        "largest for the largest), embed both and compare the distance with the model's threshold. The output "
        "says how many faces each photo had and which was used. Exit status 0 when a decision was made (same or "
        "different), 2 on an error.",
    )
    p.add_argument("image_a", type=existing_path("file", "photo"), metavar="IMAGE_A", help="first photo")
    p.add_argument("image_b", type=existing_path("file", "photo"), metavar="IMAGE_B", help="second photo")
    add_model_arguments(p)
    add_no_face(p)
    add_face(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (same, distance, threshold, ...)")
    p.set_defaults(func=_run)

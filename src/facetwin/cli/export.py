"""`facetwin export RUN_DIR|BACKBONE --out OUT.onnx`: the whole embedding path of a model as one ONNX file."""

from __future__ import annotations

import argparse
import json
import sys


def _run(args: argparse.Namespace) -> int:
    from facetwin.export import export_onnx

    summary = export_onnx(args.target, args.out)
    if args.json:
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(f"wrote {summary['out']} ({summary['bytes'] / 1e6:.1f} MB)")
    print(f"  input  {summary['input']}: aligned face crops (see the file's metadata_props)")
    print(f"  output {summary['output']}; {summary['distance']} distance, threshold {summary['threshold']:.4f}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a model's embedding path (trunk + head) as one ONNX file",
        description="Write the trunk and head of a backbone or trained run as one ONNX graph: aligned uint8 RGB "
        "face crops (N, S, S, 3) in, embeddings out. How to detect and align the faces, the distance and the "
        "threshold are recorded in the file's metadata_props.",
    )
    p.add_argument("target", metavar="RUN_DIR|BACKBONE", help="a trained run directory or a backbone name (sface)")
    p.add_argument("--out", required=True, metavar="OUT.onnx", help="the ONNX file to write (atomically)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=_run)

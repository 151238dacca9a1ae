"""The ``facetwin`` command: a thin layer over the Python API, one module per sub-command group."""

from __future__ import annotations

import argparse
import sys

from ..errors import FacetwinError
from . import embed, evaluate, find, gallery, index, serve, train, verify, weights

_GROUPS = (weights, embed, verify, evaluate, train, gallery, index, find, serve)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; each group module adds its sub-commands through ``register``."""
    parser = argparse.ArgumentParser(prog="facetwin", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _GROUPS:
        group.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors become one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FacetwinError as exc:
        print(f"facetwin: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facetwin: interrupted.", file=sys.stderr)
        return 130

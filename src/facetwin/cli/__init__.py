"""The ``facetwin`` command: a thin layer over the Python API, one module per sub-command group."""

from __future__ import annotations

import argparse
import logging
import sys

from facetwin.cli import embed, evaluate, export, find, gallery, index, serve, train, verify, weights
from facetwin.errors import FacetwinError

_GROUPS = (verify, embed, gallery, index, find, serve, train, evaluate, export, weights)
DESCRIPTION = (
    "Face verification and recognition on a CPU: are two photos the same person, who is this, in which of my "
    "photos is this person, and training the paper's Siamese network on your own faces. Works offline with the "
    "built-in SFace model."
)
EPILOG = "Run `facetwin COMMAND --help` for the options of a command."


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; each group module adds its sub-commands through ``register``."""
    parser = argparse.ArgumentParser(prog="facetwin", description=DESCRIPTION, epilog=EPILOG)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for group in _GROUPS:
        group.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors become one line on stderr and exit status 2; no command lists the commands."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("facetwin").addHandler(handler)
    logging.getLogger("facetwin").setLevel(logging.INFO if not getattr(args, "quiet", False) else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except FacetwinError as exc:
        print(f"facetwin: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facetwin: interrupted.", file=sys.stderr)
        return 130

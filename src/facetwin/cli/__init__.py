"""The ``facetwin`` command: a thin layer over the Python API, one module per sub-command group."""

from __future__ import annotations

import argparse
import logging
import sys

from facetwin.cli import cluster, embed, evaluate, export, find, gallery, index, serve, train, verify, weights
from facetwin.cli.parser import Parser, parse
from facetwin.errors import FacetwinError, NoFaceError

_GROUPS = (verify, embed, gallery, index, find, cluster, serve, train, evaluate, export, weights)
DESCRIPTION = (
    "Face verification and recognition on a CPU: are two photos the same person, who is this, in which of my "
    "photos is this person, and training the paper's Siamese network on your own faces. Works offline with the "
    "built-in SFace model."
)
EPILOG = "Run `facetwin COMMAND --help` for the options of a command."


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facetwin")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; each group module adds its sub-commands through ``register``."""
    parser = Parser(prog="facetwin", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"facetwin {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for group in _GROUPS:
        group.register(subparsers)
    return parser


def _with_advice(exc: FacetwinError, args: argparse.Namespace) -> str:
    """The error's sentence, and how to go on where the command has an option for it."""
    message = str(exc)
    if isinstance(exc, NoFaceError) and getattr(args, "no_face", None) == "error":
        message = f"{message.rstrip('.')} (--no-face center uses a centred crop instead)."
    return message


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors become one line on stderr and exit status 2; no command lists the commands."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 0
    try:
        args = parse(parser, argv)
    except SystemExit as exc:  # argparse's own exit (error, --help, --version): its status, not an exception
        return int(exc.code or 0)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("facetwin").addHandler(handler)
    logging.getLogger("facetwin").setLevel(logging.INFO if not getattr(args, "quiet", False) else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except FacetwinError as exc:
        print(f"facetwin: error: {_with_advice(exc, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facetwin: interrupted.", file=sys.stderr)
        return 130

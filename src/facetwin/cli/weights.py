"""`facetwin weights`: placeholder until its issue lands (a helper replaces this file)."""


def register(subparsers) -> None:
    subparsers.add_parser("weights", help="(in progress)")

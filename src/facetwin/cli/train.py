"""`facetwin train`: placeholder until its issue lands (a helper replaces this file)."""


def register(subparsers) -> None:
    subparsers.add_parser("train", help="(in progress)")

"""`facetwin serve`: placeholder until its issue lands (a helper replaces this file)."""


def register(subparsers) -> None:
    subparsers.add_parser("serve", help="(in progress)")

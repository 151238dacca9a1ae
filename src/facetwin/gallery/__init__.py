"""Known people: a SQLite store of their embeddings (``store.py``) and an ANN index for large ones (``index.py``)."""

from facetwin.gallery.store import Gallery, IdentifyResult, Match, PersonInfo

__all__ = ["Gallery", "IdentifyResult", "Match", "PersonInfo"]

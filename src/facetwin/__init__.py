"""facetwin: face verification and recognition by VGG-Face transfer learning and a Siamese network.

The public names live in :mod:`facetwin.api`; they are imported on first use, so ``import facetwin``
(and the command line) stays fast until a model is actually needed.
"""

from __future__ import annotations

from facetwin.errors import FacetwinError


def index(photos, out, **options):
    """Index every face of a photo collection (see :func:`facetwin.collection.index`)."""
    from .collection import index as _index

    return _index(photos, out, **options)


def find(photo, index, **options):
    """The photos of an index in which the person of ``photo`` appears (see :func:`facetwin.collection.find.find`)."""
    from .collection.find import find as _find

    return _find(photo, index, **options)


__version__ = "0.1.0"
__all__ = [
    "FacetwinError", "Gallery", "Model", "Verification", "__version__", "evaluate", "find", "index", "load", "train"
]


def __getattr__(name: str):
    if name in __all__:
        from facetwin import api

        return getattr(api, name)
    raise AttributeError(f"module 'facetwin' has no attribute {name!r}")

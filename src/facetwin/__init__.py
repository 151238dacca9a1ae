"""facetwin: face verification and recognition by VGG-Face transfer learning and a Siamese network."""

from .errors import FacetwinError
from .evaluate import evaluate
from .gallery import Gallery
from .model import Model, Verification, load
from .train import train


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

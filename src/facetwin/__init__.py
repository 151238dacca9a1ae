"""facetwin: face verification and recognition by VGG-Face transfer learning and a Siamese network."""

from .errors import FacetwinError
from .evaluate import evaluate
from .gallery import Gallery
from .model import Model, Verification, load
from .train import train

__version__ = "0.1.0"
__all__ = ["FacetwinError", "Gallery", "Model", "Verification", "__version__", "evaluate", "load", "train"]

"""facetwin's public Python API, in one place: load a model, verify and embed, train, evaluate, keep a gallery.

>>> import facetwin
>>> model = facetwin.load("sface")             # a backbone name, or a trained run directory (see loading.py)
>>> model.verify("a.jpg", "b.jpg").same
>>> facetwin.train("people/", out="runs/mine")   # the paper's Siamese head on your own faces
>>> facetwin.evaluate("pairs.txt", "images/", model="runs/mine")
>>> facetwin.Gallery("people.db").identify("someone.jpg")
>>> facetwin.index(["photos/"], "photos.index")      # every face of every photo, in-process or on Ray
>>> facetwin.find("someone.jpg", "photos.index")       # the photos this person is in
"""

from __future__ import annotations

from facetwin.collection.find import find
from facetwin.collection.indexer import index
from facetwin.errors import FacetwinError
from facetwin.evaluation.protocol import evaluate
from facetwin.gallery import Gallery
from facetwin.loading import is_run_dir, load
from facetwin.model import Model, Verification
from facetwin.training.run import train

__all__ = [
    "FacetwinError", "Gallery", "Model", "Verification", "evaluate", "find", "index", "is_run_dir", "load", "train"
]

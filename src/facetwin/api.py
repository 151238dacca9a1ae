"""facetwin's public Python API, in one place: load a model, verify and embed, train, evaluate, keep a gallery.

>>> import facetwin
>>> model = facetwin.load("sface")             # a backbone name, or a trained run directory (see loading.py)
>>> model.verify("a.jpg", "b.jpg").same
>>> facetwin.train("people/", out="runs/mine")   # the paper's Siamese head on your own faces
>>> facetwin.evaluate("pairs.txt", "images/", model="runs/mine")
>>> facetwin.Gallery("people.db").identify("someone.jpg")
"""

from __future__ import annotations

from facetwin.errors import FacetwinError
from facetwin.evaluation.protocol import evaluate
from facetwin.gallery import Gallery
from facetwin.loading import is_run_dir, load
from facetwin.model import Model, Verification
from facetwin.training.run import train

__all__ = ["FacetwinError", "Gallery", "Model", "Verification", "evaluate", "is_run_dir", "load", "train"]

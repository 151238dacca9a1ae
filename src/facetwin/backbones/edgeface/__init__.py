"""Idiap's EdgeFace (EdgeNeXt trunks, 512-d), our own PyTorch EdgeNeXt loading Idiap's state dicts (``network.py``,
``weights.py``, ``backbone.py``). Weights fetched or imported once; trained on research-only data."""

from facetwin.backbones.entry import Entry, WeightsFile

_BASE = "https://gitlab.idiap.ch/bob/bob.paper.tbiom2023_edgeface/-/raw/master/checkpoints"
_LICENCE = ("BSD-3-Clause (Idiap's code and checkpoints), but trained on WebFace12M, whose terms are for research: "
            "commercial users should check")
_LICENCE_URL = "https://gitlab.idiap.ch/bob/bob.paper.tbiom2023_edgeface"


def _weights(variant: str, known: dict[str, str]) -> WeightsFile:
    return WeightsFile(
        filename=f"edgeface_{variant}.pt", url=f"{_BASE}/edgeface_{variant}_q.pt", known=known,
        recognise=f"facetwin.backbones.edgeface.weights:recognise_{variant}", licence=_LICENCE,
        licence_url=_LICENCE_URL,
    )


ENTRIES = (
    Entry("edgeface-xs", "facetwin.backbones.edgeface.backbone:EdgeFaceBackbone",
          "Idiap's EdgeFace-XS (EdgeNeXt-X-Small; research data), 512-d", {"variant": "xs"},
          _weights("xs", {"a31314377876ab9fa2a75e5638bc528efe79fd17d5c9c0a228fb7f846d7581a6": "quantised"})),
    Entry("edgeface-xxs", "facetwin.backbones.edgeface.backbone:EdgeFaceBackbone",
          "Idiap's EdgeFace-XXS (EdgeNeXt-XX-Small; research data), 512-d", {"variant": "xxs"},
          _weights("xxs", {"46be7cc7e8d6e23501c0627fe5fbef101922ee9b85ccbef476987ab1a320b053": "quantised",
                           "5b6bac48ea660aca185be8a8ac934db2093b51259461721da53c468230bc24c9": "float"})),
)

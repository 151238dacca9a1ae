"""VGG-Face (Parkhi et al. 2015) as deepface defines it: the paper's backbone (see ``backbone.py``)."""

from facetwin.backbones.entry import Entry

ENTRIES = (
    Entry("vggface", "facetwin.backbones.vggface.backbone:VGGFaceBackbone",
          "the paper's VGG-Face (deepface's weights: `facetwin weights fetch vggface`), 2622-d"),
)

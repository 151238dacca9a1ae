"""InsightFace's ArcFace MobileFaceNet ``w600k_mbf`` (buffalo_sc): a float graph for inference, a PyTorch twin for
training (``graph.py``, ``network.py``, ``backbone.py``). Research-licensed weights, fetched or imported once."""

from facetwin.backbones.entry import Entry, WeightsFile

WEIGHTS = WeightsFile(
    filename="w600k_mbf.onnx",
    url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_sc.zip",
    member="w600k_mbf.onnx",
    known={
        "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f": "float",  # upstream, in buffalo_sc.zip
        "7caa7fb0ad6c37b33e6c59f6411084b487aaabd596bba645d2cce391a5871120": "int8",  # quantize_dynamic derivative
    },
    recognise="facetwin.backbones.arcface_mbf.graph:recognise",
    licence="for non-commercial research purposes only (InsightFace's pretrained models)",
    licence_url="https://github.com/deepinsight/insightface#license",
)

ENTRIES = (
    Entry("arcface-mbf", "facetwin.backbones.arcface_mbf.backbone:ArcFaceMBF",
          "InsightFace's ArcFace MobileFaceNet (WebFace600K; research only), 512-d", weights=WEIGHTS),
)

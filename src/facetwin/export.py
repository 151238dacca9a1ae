"""One ONNX file for a model's whole embedding path: aligned face crops in, embeddings out.

``export_onnx("sface" or RUN_DIR, "out.onnx")`` writes the trunk (the SFace graph as facetwin runs it: repaired,
int8 weights folded to float32, ``PRelu`` split) followed by the head (the backbone's L2 normalisation, or the
trained head of a run directory, exported from PyTorch), joined into one graph:

- input ``crops``: uint8 ``(N, 112, 112, 3)``, RGB, channels last: faces aligned the way facetwin aligns them;
- output ``embedding``: float32 ``(N, D)``;
- ``metadata_props``: how to make the crops (detector, alignment template, interpolation), what the graph does
  to them, the distance and the decision threshold, the weights' SHA-256 and facetwin's model description.

Any ONNX runtime can then reproduce ``facetwin.load(..., precision="fp32").embed_crops(crops)`` (cosine
≥ 0.9999, checked by the tests in onnxruntime; facetwin's default bf16, on CPUs that have it, is within 0.9995).
Only ONNX-graph trunks (sface) are exported so far.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from facetwin import __version__
from facetwin.backbones import backbone_names
from facetwin.core.paths import atomic_write_bytes
from facetwin.errors import FacetwinError
from facetwin.loading import load
from facetwin.model import Model
from facetwin.vision.align import ARCFACE_112
from facetwin.vision.detect import MAX_SIDE, NMS_THRESHOLD, PAD_FRACTION, SCORE_THRESHOLD

OPSET = 21  # the SFace file's opset
IR_VERSION = 10  # the IR that opset 21 needs
INPUT = "crops"
OUTPUT = "embedding"
EXPORTABLE = ("sface",)


def _trunk_graph(model: Model):
    """The backbone's trunk as ONNX, from uint8 NHWC RGB crops to float32 features ``(N, F)``."""
    from onnx import TensorProto, helper, numpy_helper

    from facetwin.core import assets

    backbone = model.backbone
    if backbone.name not in EXPORTABLE:
        raise FacetwinError(
            f"export supports the sface backbone (an ONNX trunk); this model's '{backbone.name}' is not exportable yet."
        )
    from facetwin.backbones.sface.backbone import fast_model

    graph_model = fast_model(assets.read_verified("sface"))
    graph = graph_model.graph
    data = graph.input[0].name
    size = backbone.input.size
    prefix = [
        helper.make_node("Transpose", [INPUT], ["crops_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["crops_nchw"], ["crops_float" if backbone.channel_order == "bgr" else data],
                         to=TensorProto.FLOAT),
    ]
    if backbone.channel_order == "bgr":
        graph.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_order"))
        prefix.append(helper.make_node("Gather", ["crops_float", "bgr_order"], [data], axis=1))
    nodes = prefix + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["N", size, size, 3]))
    graph_model.ir_version = IR_VERSION
    return graph_model


def _head_graph(model: Model, feature_dim: int):
    """The head (a PyTorch module) as ONNX at the trunk's opset: float32 ``(N, F)`` in, ``(N, D)`` out."""
    import onnx
    from onnx import version_converter

    head = model.head if model.head is not None else model.backbone.pretrained_head()  # plain model: its own head
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            head.float().eval(), (torch.zeros(1, feature_dim),), buffer, dynamo=False, opset_version=20,
            input_names=["features"], output_names=[OUTPUT],
            dynamic_axes={"features": {0: "N"}, OUTPUT: {0: "N"}},
        )
    head = version_converter.convert_version(onnx.load_from_string(buffer.getvalue()), OPSET)
    head.ir_version = IR_VERSION
    return head


def _preprocessing(model: Model) -> dict[str, str]:
    backbone = model.backbone
    size = backbone.input.size
    template = (ARCFACE_112 * (size / 112.0)).round(4).tolist()
    return {
        "facetwin.input": f"{INPUT}: uint8 (N, {size}, {size}, 3), RGB, channels last: one aligned face per row",
        "facetwin.detection": (
            f"YuNet (OpenCV Zoo face_detection_yunet_2023mar_int8bq.onnx, as cv2.FaceDetectorYN decodes it): "
            f"score threshold {SCORE_THRESHOLD}, NMS {NMS_THRESHOLD}; photos with a longer side above {MAX_SIDE} px "
            f"are shrunk to {MAX_SIDE} px (INTER_AREA) for detection; when nothing is found, once more with a border "
            f"of {PAD_FRACTION:g} of each side in the mean colour; the largest face (box area) is used"
        ),
        "facetwin.alignment": (
            "least-squares similarity transform (Umeyama: rotation, uniform scale, translation) from the 5 YuNet "
            "landmarks (right eye, left eye, nose tip, right and left mouth corners; the person's right = image "
            f"left) onto the template {json.dumps(template)} in a {size}x{size} crop; cv2.warpAffine, bilinear, "
            f"constant 0 border; a face wider than {2 * size} px is first shrunk (INTER_AREA) to about "
            f"{2 * size} px together with a margin of one face size"
        ),
        "facetwin.graph_preprocessing": (
            f"inside the graph: NHWC -> NCHW, uint8 -> float32 0-255, {backbone.channel_order.upper()} order, "
            "then (x - 127.5) * 0.0078125"
        ),
        "facetwin.output": f"{OUTPUT}: float32 (N, {int(model.embedding_dim)})",
        "facetwin.distance": model.distance,
        "facetwin.threshold": repr(float(model.threshold)),
        "facetwin.probability": f"sigmoid({model.slope!r} * distance + {model.intercept!r})",
        "facetwin.weights_sha256": str(getattr(backbone, "weights_sha256", "")),
        "facetwin.model": json.dumps(model.description, sort_keys=True, default=str),
        "facetwin.fingerprint": model.fingerprint,
    }


def export_onnx(target: str | Path, out: str | Path) -> dict:
    """Write the embedding path of ``target`` (backbone name or run directory) to ``out``; returns a summary."""
    import onnx
    from onnx import compose, helper

    if str(target) in backbone_names() and str(target) not in EXPORTABLE:  # refuse before loading any weights
        raise FacetwinError(f"export supports the sface backbone (an ONNX trunk); '{target}' is not exportable yet.")
    model = load(target)
    trunk = _trunk_graph(model)
    features = trunk.graph.output[0].name
    head = compose.add_prefix(_head_graph(model, int(model.backbone.feature_dim)), "head/")
    merged = compose.merge_models(trunk, head, io_map=[(features, "head/features")])
    merged.graph.output[0].name = OUTPUT
    for node in merged.graph.node:
        node.output[:] = [OUTPUT if name == f"head/{OUTPUT}" else name for name in node.output]
    merged.graph.name = f"facetwin_{model.backbone.name}"
    merged.producer_name = "facetwin"
    merged.producer_version = __version__
    merged.doc_string = __doc__.split("\n\n")[0]
    versions: dict[str, int] = {}
    for entry in merged.opset_import:  # trunk and head both import the default domain
        versions[entry.domain] = max(versions.get(entry.domain, 0), entry.version)
    del merged.opset_import[:]
    merged.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in versions.items())
    del merged.metadata_props[:]
    for key, value in _preprocessing(model).items():
        merged.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(merged, full_check=True)
    data = merged.SerializeToString()
    atomic_write_bytes(out, data)
    return {
        "out": str(out),
        "bytes": len(data),
        "input": f"{INPUT} uint8 (N, {model.backbone.input.size}, {model.backbone.input.size}, 3) RGB",
        "output": f"{OUTPUT} float32 (N, {int(model.embedding_dim)})",
        "distance": model.distance,
        "threshold": float(model.threshold),
        "fingerprint": model.fingerprint,
    }


__all__ = ["export_onnx"]

"""SFace (OpenCV Zoo, int8 block-quantised), the offline default backbone: 112×112 five-point crops → 128-d.

The model file comes from ``facetwin.assets`` (verified SHA-256). As shipped it declares 29 graph inputs no
node reads (leftovers of the quantisation script), so onnxruntime refuses it; :func:`fixed_model` repairs it
in memory: ``graph.input`` keeps only names some node consumes, and the batch dimension of the input and the
output becomes the symbolic ``N``. The graph normalises by itself (``(x - 127.5) * 0.0078125``), so the
input is the aligned crop as float 0–255, NCHW, in RGB order (what OpenCV's ``FaceRecognizerSF`` feeds:
``blobFromImage(bgr_crop, swapRB=True)``; RGB beats BGR on lfw-dev, see ``benchmarks/calibrate_backbones.py``).

Trunk = the network output (raw 128-d features); pretrained head = L2 normalisation, so Euclidean distance on
the head output ranks pairs exactly like the cosine distance (``|a-b|^2 = 2 - 2 cos``).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .. import assets
from ..errors import FacetwinError
from .base import Backbone, Calibration, InputSpec

INPUT_SIZE = 112
FEATURE_DIM = 128
BATCH_SIZE = 32
CHANNEL_ORDERS = ("rgb", "bgr")

# Measured on lfw-dev (3,000 pairs, cosine distance): the best-accuracy threshold over all pairs and the
# logistic fit of same-person on distance, printed by
#   python benchmarks/calibrate_backbones.py --backbone sface
# (5-fold accuracy 99.03 % ± 0.27 with these settings; threshold 0.6636 = cosine similarity 0.336).
CALIBRATION = Calibration(threshold=0.6636, slope=-24.9758, intercept=17.1334)


class L2Normalize(torch.nn.Module):
    """``x / |x|`` row-wise (the pretrained head of metric-learning backbones)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, p=2.0, dim=1, eps=1e-12)


def fixed_model(data: bytes):
    """The SFace ``onnx.ModelProto`` with unused graph inputs dropped and a symbolic batch dimension."""
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    consumed = {name for node in graph.node for name in node.input}
    keep = [inp for inp in graph.input if inp.name in consumed]
    del graph.input[:]
    graph.input.extend(keep)
    for value in list(graph.input)[:1] + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    return model


def _threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))


class SFace(Backbone):
    """SFace by onnxruntime, batched; cosine distance; threshold calibrated on lfw-dev."""

    name = "sface"
    input = InputSpec(INPUT_SIZE, "five_point")
    distance = "cosine"
    feature_dim = FEATURE_DIM
    embedding_dim = FEATURE_DIM
    calibration = CALIBRATION

    def __init__(
        self,
        precision: str = "auto",
        threads: int | None = None,
        batch_size: int = BATCH_SIZE,
        channel_order: str = "rgb",
    ) -> None:
        import onnxruntime as ort

        if precision not in ("auto", "fp32"):
            raise FacetwinError(
                f"sface runs in float32 only (int8 weights dequantised by the graph); precision '{precision}' "
                "is not available, use auto or fp32."
            )
        if channel_order not in CHANNEL_ORDERS:
            raise FacetwinError(f"unknown channel order '{channel_order}'; choose one of: rgb, bgr.")
        self.precision = "fp32"
        self.channel_order = channel_order
        self.batch_size = max(1, int(batch_size))
        data = assets.read_verified("sface")
        self.weights_sha256 = assets.ASSETS["sface"].sha256
        model = fixed_model(data)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or _threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def _blob(self, crops: np.ndarray) -> np.ndarray:
        if crops.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
            import cv2

            crops = np.stack([cv2.resize(c, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA) for c in crops])
        if self.channel_order == "bgr":
            crops = crops[..., ::-1]
        return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)

    def trunk(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise FacetwinError(
                f"SFace expects RGB uint8 crops of shape (N, 112, 112, 3), got {crops.dtype} {tuple(crops.shape)}."
            )
        out = np.empty((len(crops), FEATURE_DIM), dtype=np.float32)
        for start in range(0, len(crops), self.batch_size):
            blob = self._blob(crops[start : start + self.batch_size])
            out[start : start + len(blob)] = self._session.run([self._output], {self._input: blob})[0]
        return out

    def pretrained_head(self) -> torch.nn.Module:
        return L2Normalize().eval()

    def embed(self, crops: np.ndarray) -> np.ndarray:
        features = self.trunk(crops)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return (features / np.maximum(norms, 1e-12)).astype(np.float32)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "weights_sha256": self.weights_sha256,
            "file": assets.ASSETS["sface"].filename,
            "preprocess": f"{self.channel_order} 0-255, (x-127.5)/128 inside the graph",
            "feature_dim": self.feature_dim,
            "embedding_dim": self.embedding_dim,
            "input": {"size": self.input.size, "alignment": self.input.alignment},
            "runtime": "onnxruntime fp32",
        }

    def __repr__(self) -> str:
        return f"SFace(weights={self.weights_sha256[:12]}, threshold={self.calibration.threshold})"

"""SFace (OpenCV Zoo, int8 block-quantised), the offline default backbone: 112×112 five-point crops → 128-d.

The model file comes from ``facetwin.assets`` (verified SHA-256). As shipped it declares 29 graph inputs no
node reads (leftovers of the quantisation script), so onnxruntime refuses it; :func:`fixed_model` repairs it
in memory: ``graph.input`` keeps only names some node consumes, and the batch dimension of the input and the
output becomes the symbolic ``N``; :func:`fold_weights` then turns the int8 weights into float32 constants and
:func:`split_prelu` rewrites ``PRelu`` into operations onnxruntime fuses with the convolutions (2.5× faster).
``precision="bf16"`` runs the folded graph in OpenVINO instead (opt-in, CPUs with native bfloat16).
The graph normalises by itself (``(x - 127.5) * 0.0078125``), so the
input is the aligned crop as float 0–255, NCHW, in RGB order (what OpenCV's ``FaceRecognizerSF`` feeds:
``blobFromImage(bgr_crop, swapRB=True)``; on lfw-dev RGB gives 99.03 % and BGR 98.97 %, measured with
``benchmarks/calibrate_backbones.py [--channel-order bgr]``).

Trunk = the network output (raw 128-d features); pretrained head = L2 normalisation, so Euclidean distance on
the head output ranks pairs exactly like the cosine distance (``|a-b|^2 = 2 - 2 cos``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np
import torch

from .. import assets
from ..errors import FacetwinError
from .base import Backbone, Calibration, InputSpec

INPUT_SIZE = 112
FEATURE_DIM = 128
BATCH_SIZE = 32
CHANNEL_ORDERS = ("rgb", "bgr")
# auto = fp32: bf16 (OpenVINO, about twice as fast at batch 1 on AVX512_BF16, cosine >= 0.9998 to fp32) is opt-in,
# since a run directory records the backbone's description and would not load under the other precision.
PRECISIONS = ("auto", "fp32", "bf16")
RUNTIMES = {
    "fp32": "onnxruntime fp32 (dequantised weights folded)",
    "bf16": "openvino bf16 (dequantised weights folded)",
}

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
    """The SFace ``onnx.ModelProto`` repaired so onnxruntime runs it batched (see the module docstring).

    ``graph.input`` keeps only names some node consumes that are not initializers (in the file, 29 inputs
    are unused and every batch-norm constant is also declared an input, which blocks constant folding);
    the batch dimension of the input and output becomes the symbolic ``N``; the stale shape annotations
    (``value_info``, batch 1) are dropped.
    """
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    consumed = {name for node in graph.node for name in node.input}
    initializers = {init.name for init in graph.initializer}
    keep = [inp for inp in graph.input if inp.name in consumed and inp.name not in initializers]
    del graph.input[:]
    graph.input.extend(keep)
    del graph.value_info[:]
    for value in list(graph.input)[:1] + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    return model


def _dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int) -> np.ndarray:
    """ONNX ``DequantizeLinear`` in numpy: per-tensor, per-axis or blocked (``block_size``) scales."""
    x = x.astype(np.float32)
    zero = np.zeros_like(scale, dtype=np.float32) if zero is None else zero.astype(np.float32)
    scale = scale.astype(np.float32)
    if scale.ndim == 0 or scale.size == 1:
        return (x - zero.reshape(())) * scale.reshape(())
    axis = axis % x.ndim
    if block:
        index = [slice(None)] * x.ndim
        index[axis] = slice(0, x.shape[axis])
        scale = np.repeat(scale, block, axis=axis)[tuple(index)]
        zero = np.repeat(zero, block, axis=axis)[tuple(index)]
        return (x - zero) * scale
    shape = [1] * x.ndim
    shape[axis] = -1
    return (x - zero.reshape(shape)) * scale.reshape(shape)


def fold_weights(model):
    """Replace the constant ``DequantizeLinear`` (+ ``Reshape``) chains by float32 initializers, in place.

    onnxruntime keeps quantise/dequantise pairs unfolded (for its int8 kernels) and would dequantise every
    weight on every call; folded, batch-1 inference is about twice as fast. Outputs agree to ~1e-6.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "DequantizeLinear" and all(name in values for name in inputs):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            zero = values[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            values[node.output[0]] = _dequantize(
                values[node.input[0]], values[node.input[1]], zero, int(attrs.get("axis", 1)),
                int(attrs.get("block_size", 0)),
            )
        elif node.op_type == "Reshape" and all(name in values for name in inputs):
            values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]])
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input} | {out.name for out in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in values.items() if k in used)
    return model


def split_prelu(model):
    """Rewrite every ``PRelu(y)`` with a constant slope ``a`` as ``a*y + (1-a)*relu(y)``, in place.

    Same function (exact for any slope), but onnxruntime has no fast kernel for a per-channel ``PRelu``
    (a generic broadcast loop: 15 of the 21 ms of a batch-1 call, 1 thread); the rewritten form is a ``Relu``
    plus two per-channel ``Mul`` and an ``Add`` that its graph optimiser fuses into the neighbouring
    convolutions (NCHWc), so a batch-1 call takes about 8 ms. Outputs agree to ~1e-6.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    values = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        slope = values.get(node.input[1]) if node.op_type == "PRelu" else None
        if slope is None:
            nodes.append(node)
            continue
        y, out = node.input[0], node.output[0]
        one_minus = (1.0 - numpy_helper.to_array(slope)).astype(np.float32)
        keep = numpy_helper.from_array(one_minus, f"{out}_one_minus_slope")
        graph.initializer.append(keep)
        nodes += [
            helper.make_node("Relu", [y], [f"{out}_relu"]),
            helper.make_node("Mul", [f"{out}_relu", keep.name], [f"{out}_positive"]),
            helper.make_node("Mul", [y, slope.name], [f"{out}_linear"]),
            helper.make_node("Add", [f"{out}_positive", f"{out}_linear"], [out]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def fast_model(data: bytes):
    """The SFace file as the ``onnx.ModelProto`` facetwin runs: repaired, weights folded, ``PRelu`` split."""
    return split_prelu(fold_weights(fixed_model(data)))


def _threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def openvino_bf16() -> bool:
    """True when OpenVINO is installed and reports native bfloat16 on this CPU (AVX512_BF16 or AMX)."""
    try:
        import openvino
    except ImportError:
        return False
    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _onnxruntime(data: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """fp32 features of an NCHW float blob by onnxruntime, on :func:`fast_model` (thread-safe)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # idle workers sleep instead of spinning: spinning threads steal the cores the detector needs
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        fast_model(data).SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    name, output = session.get_inputs()[0].name, session.get_outputs()[0].name
    return lambda blob: session.run([output], {name: blob})[0]


def _openvino(data: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """Features by OpenVINO in bfloat16 (it fuses ``PRelu`` itself); one infer request per thread."""
    import openvino

    core = openvino.Core()
    graph = core.read_model(fold_weights(fixed_model(data)).SerializeToString(), b"")
    compiled = core.compile_model(
        graph, "CPU",
        {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"},
    )
    local = threading.local()

    def infer(blob: np.ndarray) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        return np.array(request.infer({0: blob})[0], dtype=np.float32)  # a copy: the request reuses its buffer

    return infer


class SFace(Backbone):
    """SFace by onnxruntime (fp32) or OpenVINO (bf16), batched; cosine distance; threshold calibrated on lfw-dev."""

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
        if precision not in PRECISIONS:
            raise FacetwinError(f"unknown sface precision '{precision}'; choose one of: {', '.join(PRECISIONS)}.")
        if channel_order not in CHANNEL_ORDERS:
            raise FacetwinError(f"unknown channel order '{channel_order}'; choose one of: rgb, bgr.")
        if precision == "bf16" and not openvino_bf16():
            raise FacetwinError(
                "sface precision bf16 runs in OpenVINO on a CPU with native bfloat16 (AVX512_BF16 or AMX); "
                "OpenVINO is not installed or this CPU has no bf16: pip install openvino, or use fp32."
            )
        self.precision = "bf16" if precision == "bf16" else "fp32"
        self.channel_order = channel_order
        self.batch_size = max(1, int(batch_size))
        data = assets.read_verified("sface")
        self.weights_sha256 = assets.ASSETS["sface"].sha256
        threads = int(threads or _threads())
        self._infer = _openvino(data, threads) if self.precision == "bf16" else _onnxruntime(data, threads)

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
            out[start : start + len(blob)] = self._infer(blob)
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
            "runtime": RUNTIMES[self.precision],
        }

    def __repr__(self) -> str:
        return f"SFace(weights={self.weights_sha256[:12]}, threshold={self.calibration.threshold})"

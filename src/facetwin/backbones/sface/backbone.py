"""SFace (OpenCV Zoo, int8 block-quantised), the offline default backbone: 112×112 five-point crops → 128-d.

The model file comes from ``facetwin.core.assets`` (verified SHA-256). As shipped it declares 29 graph inputs
no node reads (leftovers of the quantisation script), so onnxruntime refuses it; ``core/onnx_graph.py`` repairs
it in memory (``fixed_model``), turns the int8 weights into float32 constants (``fold_weights``) and rewrites
``PRelu`` into operations onnxruntime fuses with the convolutions (``split_prelu``, 2.5× faster).
The folded graph runs in OpenVINO (which fuses ``PRelu`` into the convolutions: 1.4× faster than onnxruntime
at batch 1, same fp32 arithmetic); onnxruntime is the fallback where OpenVINO cannot be imported.
``precision="auto"`` (the default) is bf16 on CPUs with native bfloat16 (AVX512_BF16 or AMX), else fp32: bf16
embeddings stay within cosine 0.9998 of fp32 and lfw-dev accuracy is unchanged (99.03 % both), so a model's
fingerprint does not depend on it (``base.EQUIVALENT``) while feature caches keep them apart.
The graph normalises by itself (``(x - 127.5) * 0.0078125``), so the
input is the aligned crop as float 0–255, NCHW, in RGB order (what OpenCV's ``FaceRecognizerSF`` feeds:
``blobFromImage(bgr_crop, swapRB=True)``; on lfw-dev RGB gives 99.03 % and BGR 98.97 %, measured with
``benchmarks/calibrate_backbones.py [--channel-order bgr]``).

Trunk = the network output (raw 128-d features); pretrained head = L2 normalisation, so Euclidean distance on
the head output ranks pairs exactly like the cosine distance (``|a-b|^2 = 2 - 2 cos``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from facetwin.backbones.base import SFACE_BF16, SFACE_FP32, InputSpec, MetricBackbone, crop_batch
from facetwin.backbones.calibrations import calibration_of
from facetwin.core import assets, paths
from facetwin.core.onnx_graph import fixed_model, fold_weights, split_prelu
from facetwin.core.precision import default_threads, has_openvino, openvino_precision
from facetwin.core.runtimes import onnxruntime_runner, openvino_runner
from facetwin.errors import FacetwinError

INPUT_SIZE = 112
FEATURE_DIM = 128
BATCH_SIZE = 32
CHANNEL_ORDERS = ("rgb", "bgr")
# PRECISIONS: auto = bf16 where the CPU has native bfloat16 (OpenVINO, 1.7× faster than its fp32 at batch 1 on
# AVX512_BF16, cosine >= 0.9998 to fp32), else fp32.
RUNTIMES = {"fp32": SFACE_FP32, "bf16": SFACE_BF16}



def fast_model(data: bytes):
    """The SFace file as the ``onnx.ModelProto`` facetwin runs: repaired, weights folded, ``PRelu`` split."""
    return split_prelu(fold_weights(fixed_model(data)))


def _onnxruntime(data: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """fp32 features of an NCHW float blob by onnxruntime, on :func:`fast_model` (thread-safe)."""
    return onnxruntime_runner(fast_model(data).SerializeToString(), threads)


def _folded_file(data: bytes) -> Path | None:
    """The folded graph of the (verified) SFace bytes as a file in ``$FACETWIN_HOME/compiled``, written once per
    weights file, so that OpenVINO compiles it once and then loads its compiled blob from that folder's cache
    (see ``benchmarks/cli_latency.py``); None when the folder cannot be written."""
    try:
        path = paths.home() / "compiled" / f"sface-{assets.ASSETS['sface'].sha256[:16]}-folded.onnx"
        if not path.is_file():
            paths.atomic_write_bytes(path, fold_weights(fixed_model(data)).SerializeToString())
    except (OSError, FacetwinError):  # a home that cannot be written: fold in memory at every start
        return None
    return path


def _openvino(data: bytes, threads: int, precision: str) -> Callable[[np.ndarray], np.ndarray]:
    """Features by OpenVINO in ``precision`` ("fp32" or "bf16"; it fuses ``PRelu`` itself), from the folded file
    and its cached compiled blob where the home is writable."""
    path = _folded_file(data)
    if path is None:
        return openvino_runner(fold_weights(fixed_model(data)).SerializeToString(), precision, threads)
    return openvino_runner(path, precision, threads, cache_dir=path.parent / "openvino")


def _engine(data: bytes, threads: int, precision: str) -> Callable[[np.ndarray], np.ndarray]:
    """OpenVINO where it imports, else onnxruntime (fp32 only)."""
    if has_openvino():
        return _openvino(data, threads, precision)
    return _onnxruntime(data, threads)


class SFace(MetricBackbone):
    """SFace by OpenVINO (bf16 or fp32; onnxruntime fp32 as fallback), batched; cosine distance; threshold
    calibrated on lfw-dev."""

    name = "sface"
    input = InputSpec(INPUT_SIZE, "five_point")
    feature_dim = FEATURE_DIM
    embedding_dim = FEATURE_DIM
    calibration = calibration_of("sface")  # measured on lfw-dev (backbones/calibrations.py)

    def __init__(
        self,
        precision: str = "auto",
        threads: int | None = None,
        batch_size: int = BATCH_SIZE,
        channel_order: str = "rgb",
    ) -> None:
        if channel_order not in CHANNEL_ORDERS:
            raise FacetwinError(f"unknown channel order '{channel_order}'; choose one of: rgb, bgr.")
        self.precision = openvino_precision("sface", precision)
        self.threads = int(threads or default_threads())
        self.channel_order = channel_order
        self.batch_size = max(1, int(batch_size))
        data = assets.read_verified("sface")
        self.weights_sha256 = assets.ASSETS["sface"].sha256
        self._infer = _engine(data, self.threads, self.precision)

    def replica(self) -> SFace:
        """The same network in a session of its own with one intra-op thread (one replica per core)."""
        return SFace(self.precision, threads=1, batch_size=self.batch_size, channel_order=self.channel_order)

    def _blob(self, crops: np.ndarray) -> np.ndarray:
        if crops.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
            import cv2

            crops = np.stack([cv2.resize(c, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA) for c in crops])
        if self.channel_order == "bgr":
            crops = crops[..., ::-1]
        return np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)

    def trunk(self, crops: np.ndarray) -> np.ndarray:
        crops = crop_batch(crops, "SFace", "(N, 112, 112, 3)")
        out = np.empty((len(crops), FEATURE_DIM), dtype=np.float32)
        for start in range(0, len(crops), self.batch_size):
            blob = self._blob(crops[start : start + self.batch_size])
            out[start : start + len(blob)] = self._infer(blob)
        return out

    def describe(self) -> dict:
        return self._description(
            file=assets.ASSETS["sface"].filename,
            preprocess=f"{self.channel_order} 0-255, (x-127.5)/128 inside the graph",
            runtime=RUNTIMES[self.precision],
        )

    def __repr__(self) -> str:
        return f"SFace(weights={self.weights_sha256[:12]}, threshold={self.calibration.threshold})"

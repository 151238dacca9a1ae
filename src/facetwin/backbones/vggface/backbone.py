"""The paper's backbone: deepface's VGG-Face as a facetwin :class:`~facetwin.backbones.base.Backbone`.

Trunk = deepface layers ``0..split`` (default 34: fc7 relu, 4096-d), frozen and batched; the pretrained
head = layers ``split+1..`` up to the chosen ``layer``:

- ``paper`` (default): ``tanh(fc8(.))``, 2622-d, the paper's extractor (tanh on every head layer);
- ``fc8``: fc8 linear, 2622-d;
- ``fc7``: the 4096-d relu output of fc7 itself (with split 34 the head is the identity).

Preprocessing (crops arrive as RGB uint8, resized to 224×224 if needed with a plain bilinear resize):

- ``deepface`` (the paper's pipeline in deepface 2021): BGR, divided by 255, no mean subtraction;
- ``vggface`` (the original VGG-Face): BGR at 0–255 minus the mean pixel B 93.5940, G 104.7624, R 129.1863.

Precision: ``fp32``; ``bf16`` (layers from conv4_1 on in bfloat16, the first three blocks in float32:
agreement with float32 at cosine >= 0.999 on the parity fixture); ``bf16-all`` (every layer in bfloat16,
fastest, cosine about 0.99 on that fixture); ``auto`` = ``bf16`` on CPUs with AMX, else ``fp32``: without AMX,
PyTorch's bf16 gains 1.1-1.4× over its fp32 while OpenVINO's fp32 gains 1.1-1.8× and stays exact
(``benchmarks/embed_speed.py``, README).

Runtime: ``auto`` (default) = ``openvino`` for fp32, else ``torch``; ``openvino`` and ``onnxruntime`` run the fp32
trunk exported to ONNX (:func:`~facetwin.backbones.vggface.runtimes.exported_trunk`, once per weights file;
same features to float rounding). Training and ``trunk_preprocessed`` always use the PyTorch modules.

No calibrated threshold exists: the real VGG-Face weights are not on the machine this was built on, so
``calibration.threshold`` is NaN; verification with this backbone needs a trained run or an explicit
threshold.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch

from facetwin.backbones.base import Backbone, Calibration, Cut, InputSpec, crop_batch
from facetwin.backbones.vggface import network as V
from facetwin.backbones.vggface import weights as W
from facetwin.core import precision as _precision
from facetwin.errors import FacetwinError

PREPROCESS = ("deepface", "vggface")
LAYER_CHOICES = {"paper": (V.EMBEDDING_INDEX, "tanh"), "fc8": (V.EMBEDDING_INDEX, None), "fc7": (34, None)}
VGGFACE_MEAN_BGR = (93.5940, 104.7624, 129.1863)
BATCH_SIZE = 16
# precision "bf16": layers from this deepface index on run in bfloat16 (block 4 onward), the ones before in
# float32. On the Keras parity fixture, bf16 everywhere gives cosine 0.991 to float32 (rounding errors of the
# first blocks are amplified by every later layer); float32 through block 3 gives 0.9994.
BF16_FROM = 17
RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")


def resolve_precision(precision: str) -> str:
    """``auto`` = bf16 only with AMX (see the module docstring); other choices as :func:`precision.resolve`."""
    if precision == "auto":
        return "bf16" if "amx_bf16" in _precision.cpu_flags() else "fp32"
    return _precision.resolve(precision)


def preprocess(crops: np.ndarray, mode: str = "deepface", size: int = V.INPUT_SIZE) -> torch.Tensor:
    """RGB uint8 crops ``(N, H, W, 3)`` → float32 BGR ``(N, 3, size, size)`` in channels-last layout."""
    if mode not in PREPROCESS:
        raise FacetwinError(f"unknown preprocessing '{mode}'; choose one of: {', '.join(PREPROCESS)}.")
    crops = crop_batch(crops, "VGG-Face", "(N, H, W, 3)")
    if crops.shape[1:3] != (size, size):
        import cv2

        crops = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in crops])
    bgr = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).float()
    if mode == "deepface":
        bgr /= 255.0
    else:
        bgr -= torch.tensor(VGGFACE_MEAN_BGR, dtype=torch.float32)
    return bgr.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels-last


class VGGFaceBackbone(Backbone):
    """deepface's VGG-Face, fast on a CPU (channels-last, fc layers as matrix products, bf16 where native)."""

    name = "vggface"
    input = InputSpec(V.INPUT_SIZE, "vggface")
    distance = "euclidean"
    calibration = Calibration(threshold=float("nan"), slope=float("nan"), intercept=float("nan"))

    def __init__(
        self,
        weights: str | None = None,
        layer: str = "paper",
        preprocess: str = "deepface",
        precision: str = "auto",
        split: int = V.PAPER_SPLIT,
        batch_size: int = BATCH_SIZE,
        runtime: str = "auto",
    ) -> None:
        if layer not in LAYER_CHOICES:
            raise FacetwinError(f"unknown VGG-Face layer '{layer}'; choose one of: {', '.join(LAYER_CHOICES)}.")
        if preprocess not in PREPROCESS:
            raise FacetwinError(f"unknown preprocessing '{preprocess}'; choose one of: {', '.join(PREPROCESS)}.")
        end, activation = LAYER_CHOICES[layer]
        if not 0 <= int(split) <= end:
            raise FacetwinError(
                f"VGG-Face split {split} does not fit layer '{layer}': choose a deepface index 0..{end}."
            )
        self.layer = layer
        self.preprocess = preprocess
        self.split = int(split)
        self.batch_size = max(1, int(batch_size))
        self.precision = resolve_precision(precision)
        if runtime not in RUNTIMES:
            raise FacetwinError(f"unknown VGG-Face runtime '{runtime}'; choose one of: {', '.join(RUNTIMES)}.")
        if runtime == "auto":
            runtime = "openvino" if self.precision == "fp32" and _precision.has_openvino() else "torch"
        if runtime != "torch" and self.precision != "fp32":
            raise FacetwinError(f"the {runtime} runtime runs VGG-Face in fp32; use precision fp32 with it.")
        self.runtime = runtime

        loaded = W.load(weights)
        self.weights_sha256 = loaded.sha256
        self.weights_path = str(loaded.path)
        with torch.device("meta"):  # no second copy of the 580 MB of weights: adopt the loaded tensors
            network = V.VGGFace()
        network.load_state_dict(loaded.state_dict, assign=True)
        network.eval().requires_grad_(False)
        trunk, head = network.split(self.split, head_activation=activation, end=end)
        self._head = head.float().eval()  # kept in float32: the pretrained head is also a trainer's start
        self.bf16_from = {"fp32": None, "bf16": BF16_FROM, "bf16-all": 0}[self.precision]
        if self.bf16_from is not None:
            for index, module in zip(range(trunk.start, trunk.stop + 1), trunk.layers, strict=True):
                if index >= self.bf16_from:
                    module.to(torch.bfloat16)
        self._trunk = trunk.eval()
        self._exported = None  # the onnxruntime/OpenVINO runner, made on the first trunk() call (_runner)
        self._exporting = threading.Lock()
        self.feature_dim = V.feature_dim(self.split)
        self.embedding_dim = V.feature_dim(end)
        del network, loaded

    def _runner(self):
        """The exported trunk in onnxruntime or OpenVINO (None for the torch runtime), exported and compiled on
        first use: a backbone that is only cut for training (its frozen part runs in PyTorch) never pays the
        second copy of the weights a compiled runtime holds."""
        if self.runtime == "torch" or self._exported is not None:
            return self._exported
        with self._exporting:
            if self._exported is None:
                from facetwin.backbones.vggface import runtimes as R

                run = R.onnxruntime_runner if self.runtime == "onnxruntime" else R.openvino_runner
                self._exported = run(R.exported_trunk(self))
        return self._exported

    def trunk(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        out = np.empty((len(crops), self.feature_dim), dtype=np.float32)
        exported = self._runner()
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                batch = preprocess(crops[start : start + self.batch_size], self.preprocess)
                if exported is not None:
                    out[start : start + len(batch)] = exported(batch.numpy())
                else:
                    out[start : start + len(batch)] = self._trunk(batch).float().numpy()
        return out

    def trunk_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk features for an already preprocessed float batch ``(N, 3, 224, 224)`` (BGR), float32 out."""
        with torch.inference_mode():
            return self._trunk(x.float()).float()

    def cut(self, where) -> Cut:
        """Trainable from a deepface layer index (``vggface/cut.py``; the paper: 34)."""
        from facetwin.backbones.vggface.cut import vggface_cut

        return vggface_cut(self, where, lambda crops: preprocess(crops, self.preprocess))

    def pretrained_head(self) -> torch.nn.Module:
        import copy

        head = copy.deepcopy(self._head).float()
        for param in head.parameters():
            param.requires_grad_(True)
        return head.eval()

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._head(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).float().numpy()

    def describe(self) -> dict:
        return self._description(
            preprocess=self.preprocess,
            split=self.split,
            layer=self.layer,
            trunk_precision=self.precision if self.bf16_from is None else f"{self.precision}@{self.bf16_from}",
        )

    def options(self) -> dict:
        """Keyword arguments that rebuild this backbone with ``get_backbone("vggface", **options)``."""
        return {
            "weights": self.weights_path,
            "layer": self.layer,
            "preprocess": self.preprocess,
            "precision": self.precision,
            "split": self.split,
            "runtime": self.runtime,
        }

    def __repr__(self) -> str:
        threshold = "uncalibrated" if math.isnan(self.calibration.threshold) else self.calibration.threshold
        return (
            f"VGGFaceBackbone(layer={self.layer!r}, preprocess={self.preprocess!r}, split={self.split}, "
            f"precision={self.precision!r}, weights={self.weights_sha256[:12]}, threshold={threshold})"
        )

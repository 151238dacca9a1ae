"""EdgeFace (Idiap; EdgeNeXt-XS or -XXS trunk, 512-d head) as a facetwin backbone: 112×112 five-point crops → 512-d.

Weights: a file the user names (``edgeface_xs_q.pt``, ``edgeface_xxs_q.pt`` or the float ``edgeface_xxs.pt``), read
by :mod:`.weights` without pickle code and turned into the float network :class:`~.network.EdgeFace` (quantised
linear layers dequantised). Preprocessing: RGB ``(x / 255 - 0.5) / 0.5``. Trunk = the 512-d embedding; pretrained
head = L2 normalisation, cosine distance.

Runtime: the float network exported to ONNX once per weights file (:mod:`.runtime`) and run by OpenVINO, in bf16
where the CPU has native bfloat16 (``precision="auto"``) or fp32; where OpenVINO is missing, onnxruntime (fp32).
On this project's 2-core AVX512_BF16 machine OpenVINO bf16 is the fastest at batch 1 and
32 (``benchmarks/edgeface_speed.py``; the figures are in its issue). Its embeddings stay within cosine 0.999 of
fp32. ``network`` is the frozen float PyTorch model, for fine-tuning (``network.parts``, ``network(x, start)``).

The embeddings of the float network are not those of the quantised file run as Idiap runs it: dynamic quantisation
rounds every linear layer's input to 7 bits with a range taken over the whole batch, so the quantised network's
embedding of a crop changes with the batch it is in (cosine 0.92-0.97 between batch 1 and batch 6 on the reference
crops), and the float network lies as close to it (0.93-0.98). On lfw-dev both verify alike (XS: float 99.40 %,
quantised 99.50 %; XXS: 99.37 %, 99.33 %; 5-fold, the same crops). The float network is deterministic per crop,
which the feature cache needs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from facetwin.backbones.base import Cut, InputSpec, MetricBackbone, crop_batch
from facetwin.backbones.calibrations import calibration_of
from facetwin.backbones.edgeface import runtime as R
from facetwin.backbones.edgeface import weights as W
from facetwin.backbones.edgeface.network import EMBEDDING_DIM, INPUT_SIZE, PARTS, VARIANTS, preprocess
from facetwin.core import precision as _precision
from facetwin.errors import FacetwinError

BATCH_SIZE = 32
PREPROCESS = "rgb (x/255 - 0.5) / 0.5"
RUNTIMES = {  # engine (or bf16) -> describe()'s runtime; base.identity() names all three alike
    "openvino": "openvino f32 (onnx export of the float network)",
    "onnxruntime": "onnxruntime fp32 (onnx export of the float network)",
    "bf16": "openvino bf16 (onnx export of the float network)",
}


def _engine(network, sha256: str, precision: str, threads: int) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """OpenVINO in ``precision`` where it imports, else onnxruntime fp32, and the runtime's description."""
    name = "openvino" if _precision.has_openvino() else "onnxruntime"
    try:
        model = R.exported(network, sha256)
    except FacetwinError:  # a home that cannot be written: export in memory at every start
        model = R.onnx_bytes(network)
    label = RUNTIMES["bf16" if precision == "bf16" else name]
    return R.engine(model, name, precision, threads), label


class EdgeFaceBackbone(MetricBackbone):
    """EdgeFace-XS or -XXS, batched, from a weights file the caller names; cosine distance."""

    input = InputSpec(INPUT_SIZE, "five_point")
    feature_dim = EMBEDDING_DIM
    embedding_dim = EMBEDDING_DIM

    def __init__(
        self,
        variant: str = "xs",
        weights: str | Path | None = None,
        precision: str = "auto",
        batch_size: int = BATCH_SIZE,
        threads: int | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise FacetwinError(f"unknown EdgeFace variant '{variant}'; choose one of: {', '.join(VARIANTS)}.")
        if weights is None:
            raise FacetwinError(f"edgeface-{variant} needs its weights file: weights=PATH (edgeface_{variant}_q.pt).")
        self.name = f"edgeface-{variant}"
        self.variant = variant
        self.calibration = calibration_of(self.name)  # measured on lfw-dev (backbones/calibrations.py)
        self.precision = _precision.openvino_precision(self.name, precision)
        self.batch_size = max(1, int(batch_size))
        self.threads = int(threads or _precision.default_threads())
        loaded = W.load(weights, variant)
        self.weights_path, self.weights_sha256, self.form = loaded.path, loaded.sha256, loaded.form
        self.network = loaded.network.requires_grad_(False)
        self._infer, self.runtime = _engine(self.network, self.weights_sha256, self.precision, self.threads)

    def replica(self) -> EdgeFaceBackbone:
        """The same network in a runtime of its own with one thread (one replica per core)."""
        return EdgeFaceBackbone(self.variant, self.weights_path, self.precision, self.batch_size, threads=1)

    def trunk(self, crops: np.ndarray) -> np.ndarray:
        crops = crop_batch(crops, self.name, "(N, 112, 112, 3)")
        if crops.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
            import cv2

            crops = np.stack([cv2.resize(c, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA) for c in crops])
        out = np.empty((len(crops), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(crops), self.batch_size):
            batch = preprocess(np.ascontiguousarray(crops[start : start + self.batch_size])).numpy()
            out[start : start + len(batch)] = self._infer(batch)
        return out

    def cut(self, where) -> Cut:
        """Trainable from a part of :data:`~.network.PARTS` (by name or index), the parts before it frozen and run in
        PyTorch (``backbones/staged.py``)."""
        from facetwin.backbones.staged import staged_cut

        return staged_cut(self.name, PARTS, self.network.parts, where, preprocess, self.batch_size, INPUT_SIZE)

    def describe(self) -> dict:
        return self._description(variant=self.variant, form=self.form, preprocess=PREPROCESS, runtime=self.runtime)

    def __repr__(self) -> str:
        return f"EdgeFaceBackbone({self.variant}, weights={self.weights_sha256[:12]}, {self.runtime})"


__all__ = ["EdgeFaceBackbone"]

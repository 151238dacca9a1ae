"""ArcFace MobileFaceNet (InsightFace ``w600k_mbf``, 512-d) as a facetwin backbone: fast on a CPU, PyTorch twin.

The weights file is the user's: InsightFace's float ``w600k_mbf.onnx`` or its ``quantize_dynamic`` int8 copy
(``graph.py`` recognises both and turns the int8 one back into a float graph). The float graph is written once
per weights file into ``$FACETWIN_HOME/compiled``, so OpenVINO compiles it once and then loads the compiled blob
from that folder's cache; it runs in OpenVINO, bf16 on CPUs with native bfloat16 (``precision="auto"``), fp32
otherwise, and in onnxruntime fp32 (``PRelu`` split, see ``core/onnx_graph.py``) where OpenVINO is absent.
Input: RGB five-point 112×112 crops, ``(x - 127.5) / 127.5`` outside the graph (it has no normalisation of its
own). Trunk = the raw 512-d output; pretrained head = L2 normalisation (cosine distance).
:meth:`ArcFaceMBF.network` is the same network as a PyTorch module (``network.py``), built on first use only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facetwin.backbones.arcface_mbf.graph import FORMS, ArcFaceGraph, prefix_graph, read_graph
from facetwin.backbones.base import Cut, InputSpec, MetricBackbone, crop_batch
from facetwin.backbones.calibrations import calibration_of
from facetwin.core import paths
from facetwin.core.onnx_graph import split_prelu
from facetwin.core.precision import default_threads, has_openvino, openvino_precision
from facetwin.core.runtimes import onnxruntime_runner, openvino_runner
from facetwin.errors import FacetwinError

if TYPE_CHECKING:
    from facetwin.backbones.arcface_mbf.network import MobileFaceNet

INPUT_SIZE = 112
FEATURE_DIM = 512
BATCH_SIZE = 32
# fp32 names no engine: OpenVINO fp32 and onnxruntime fp32 agree to ~1e-6, so feature caches are shared.
RUNTIMES = {"fp32": "fp32 (float graph)", "bf16": "openvino bf16 (float graph)"}
PREPROCESS = "rgb, (x - 127.5) / 127.5, NCHW"


def _folded_file(graph: ArcFaceGraph) -> Path | None:
    """The float graph as a file in ``$FACETWIN_HOME/compiled``, written once per weights file; None when that
    folder cannot be written (then OpenVINO compiles from memory at every start)."""
    try:
        path = paths.home() / "compiled" / f"arcface-mbf-{graph.sha256[:16]}-float.onnx"
        if not path.is_file():
            paths.atomic_write_bytes(path, graph.model.SerializeToString())
    except (OSError, FacetwinError):
        return None
    return path


def _engine(
    graph: ArcFaceGraph, threads: int, precision: str, cache: bool = True
) -> Callable[[np.ndarray], np.ndarray]:
    """OpenVINO in ``precision`` where it imports (with ``cache``, from the float file and its cached blob), else
    onnxruntime fp32 on the graph with ``PRelu`` split (1.5× faster there)."""
    if has_openvino():
        path = _folded_file(graph) if cache else None
        if path is None:
            return openvino_runner(graph.model.SerializeToString(), precision, threads)
        return openvino_runner(path, precision, threads, cache_dir=path.parent / "openvino")
    import onnx

    return onnxruntime_runner(split_prelu(onnx.load_from_string(graph.model.SerializeToString())).SerializeToString(),
                              threads)


def blob(crops: np.ndarray) -> np.ndarray:
    """The network input for RGB uint8 crops ``(N, 112, 112, 3)``: float32 NCHW, ``(x - 127.5) / 127.5``."""
    x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
    np.subtract(x, 127.5, out=x)
    np.divide(x, 127.5, out=x)
    return x


class ArcFaceMBF(MetricBackbone):
    """InsightFace's ArcFace MobileFaceNet (w600k_mbf) from a user's weights file, batched, cosine distance."""

    name = "arcface-mbf"
    input = InputSpec(INPUT_SIZE, "five_point")
    feature_dim = FEATURE_DIM
    embedding_dim = FEATURE_DIM
    calibration = calibration_of("arcface-mbf")  # measured on lfw-dev (backbones/calibrations.py)

    def __init__(
        self, weights: str | Path, precision: str = "auto", threads: int | None = None, batch_size: int = BATCH_SIZE
    ) -> None:
        self.precision = openvino_precision("arcface-mbf", precision)
        self.threads = int(threads or default_threads())
        self.batch_size = max(1, int(batch_size))
        self.weights = Path(weights)
        self._graph = read_graph(self.weights)
        self.weights_sha256 = self._graph.sha256
        self.form = FORMS[self._graph.form]  # float, or int8-dequantised
        self._infer = _engine(self._graph, self.threads, self.precision)

    def replica(self) -> ArcFaceMBF:
        """The same network in a runtime of its own with one intra-op thread (one replica per core)."""
        return ArcFaceMBF(self.weights, self.precision, threads=1, batch_size=self.batch_size)

    def trunk(self, crops: np.ndarray) -> np.ndarray:
        crops = crop_batch(crops, "arcface-mbf", "(N, 112, 112, 3)")
        if crops.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
            raise FacetwinError(f"arcface-mbf expects 112×112 crops, got {crops.shape[1]}×{crops.shape[2]}.")
        out = np.empty((len(crops), FEATURE_DIM), dtype=np.float32)
        for start in range(0, len(crops), self.batch_size):
            out[start : start + self.batch_size] = self._infer(blob(crops[start : start + self.batch_size]))
        return out

    def network(self) -> MobileFaceNet:
        """The same network as a new PyTorch :class:`MobileFaceNet`, frozen (no gradients) and in eval mode, built
        from the float graph on each call (inference never needs torch). To fine-tune, ``requires_grad_(True)``
        the stages to train."""
        from facetwin.backbones.arcface_mbf.network import from_graph

        return from_graph(self._graph.model).requires_grad_(False).eval()

    def cut(self, where) -> Cut:
        """Trainable from a stage of :data:`~.network.STAGES` (by name or index), the stages before it frozen and run
        in PyTorch (``backbones/staged.py``)."""
        import torch

        from facetwin.backbones.arcface_mbf.network import STAGES
        from facetwin.backbones.staged import staged_cut

        stages = self.network().stages
        return staged_cut(self.name, STAGES, [getattr(stages, name) for name in STAGES], where,
                          lambda crops: torch.from_numpy(blob(crops)), self.batch_size, INPUT_SIZE, self._prefix)

    def _prefix(self, stage: str) -> Callable[[np.ndarray], np.ndarray] | None:
        """The float graph up to the end of ``stage`` in fp32 (OpenVINO, else onnxruntime): 3-4x faster than PyTorch
        on MobileFaceNet's depthwise convolutions; None where the graph does not name the stage's tensor."""
        model = prefix_graph(self._graph.model, stage)
        return None if model is None else _engine(ArcFaceGraph(model, self._graph.form, self._graph.sha256),
                                                  self.threads, "fp32", cache=False)

    def describe(self) -> dict:
        return self._description(form=self.form, preprocess=PREPROCESS, runtime=RUNTIMES[self.precision])

    def __repr__(self) -> str:
        return f"ArcFaceMBF(weights={self.weights_sha256[:12]}, form={self.form}, precision={self.precision})"

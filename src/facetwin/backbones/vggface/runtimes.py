"""VGG-Face in other runtimes: the same network exported to ONNX, run by onnxruntime or OpenVINO.

``export_onnx(backbone)`` writes the float32 trunk + pretrained head of a :class:`VGGFaceBackbone` (preprocessed
BGR ``(N, 3, 224, 224)`` float in, embedding out; dynamic batch) to an ONNX file; :func:`onnxruntime_runner` and
:func:`openvino_runner` run them. ``benchmarks/embed_speed.py`` times these beside facetwin's own PyTorch path.
A fp32 :class:`VGGFaceBackbone` runs its trunk through :func:`exported_trunk` and OpenVINO (``runtime="openvino"``,
the default for fp32) or onnxruntime (``runtime="onnxruntime"``).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from facetwin.core import runtimes

INPUT, OUTPUT = "input", "embedding"


def write_onnx(network: torch.nn.Module, target: Path) -> None:
    """A float32 module over ``(N, 3, 224, 224)`` written as ONNX to ``target`` (dynamic batch; VGG-Face's 580 MB fit
    in one file). Streamed to the file: no copy of the weights in memory beside the module's own."""
    # The TorchScript exporter is deprecated in torch 2.13 and says so on every call; its replacement (dynamo=True)
    # needs onnxscript, which facetwin does not depend on. The graph it writes is checked against PyTorch by the
    # tests, so the notice is silenced here, where it arises, not in every caller.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            network.float().eval(), (torch.zeros(1, 3, 224, 224),), str(target), input_names=[INPUT],
            output_names=[OUTPUT], opset_version=17, dynamic_axes={INPUT: {0: "N"}, OUTPUT: {0: "N"}}, dynamo=False,
        )


def export_onnx(backbone) -> Path:
    """The float32 trunk + head of ``backbone`` (a fp32 VGGFaceBackbone) as an ONNX file in a temporary folder."""
    path = Path(tempfile.mkdtemp(prefix="facetwin-vggface-")) / "vggface.onnx"
    write_onnx(torch.nn.Sequential(backbone._trunk, backbone._head), path)
    return path


def _threads(threads: int | None) -> int:
    return int(threads or torch.get_num_threads() or os.cpu_count() or 1)


def onnxruntime_runner(model: Path | bytes, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """onnxruntime (CPU, fp32) over an exported file or its bytes (thread-safe)."""
    return runtimes.onnxruntime_runner(model, _threads(threads))


def openvino_runner(path: Path, precision: str = "f32", threads: int | None = None):
    """OpenVINO (CPU) over the exported file, ``precision`` ``f32`` or ``bf16`` (thread-safe)."""
    return runtimes.openvino_runner(path, precision, _threads(threads))


def exported_trunk(backbone) -> Path:
    """The fp32 trunk of ``backbone`` as ONNX in ``$FACETWIN_HOME/compiled``, exported once per weights file and
    split (a few seconds; 540 MB at the paper's split) and read from there by later loads."""
    from facetwin.core import paths

    path = paths.home() / "compiled" / f"vggface-{backbone.weights_sha256[:16]}-trunk{backbone.split}.onnx"
    if not path.is_file():
        paths.atomic_write(path, lambda tmp: write_onnx(backbone._trunk, tmp))
    return path


__all__ = ["write_onnx", "export_onnx", "exported_trunk", "onnxruntime_runner", "openvino_runner"]

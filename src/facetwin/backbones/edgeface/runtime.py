"""The float EdgeFace network exported to ONNX, run by OpenVINO (f32 or bf16) or onnxruntime (fp32).

:func:`onnx_bytes` exports preprocessed ``(N, 3, 112, 112)`` float32 → ``(N, 512)`` with a dynamic batch. It uses
torch's dynamo exporter when ``onnxscript`` is installed (opset 20, ``Gelu`` kept as one node), else the
TorchScript exporter (opset 17); both give the PyTorch embeddings to about 1e-6. Each prints noise of torch's own
(the TorchScript exporter two DeprecationWarnings, the dynamo exporter a pytree FutureWarning and log lines about
torchvision), silenced here. :func:`exported` writes the graph once per weights file into
``$FACETWIN_HOME/compiled`` (atomically) and :func:`engine` runs it, OpenVINO caching its compiled blob beside it.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from facetwin.backbones.edgeface.network import INPUT_SIZE, EdgeFace
from facetwin.core import paths, runtimes
from facetwin.errors import FacetwinError

INPUT, OUTPUT = "input", "embedding"
ENGINES = ("openvino", "onnxruntime")


def exporter() -> str:
    """``dynamo`` where ``onnxscript`` (which torch's dynamo exporter needs) is installed, else ``torchscript``."""
    return "dynamo" if importlib.util.find_spec("onnxscript") is not None else "torchscript"


def onnx_bytes(network: EdgeFace, how: str | None = None) -> bytes:
    """``network`` (float32, eval) as ONNX bytes with a dynamic batch ``N``, by ``how`` (default :func:`exporter`)."""
    how = how or exporter()
    example = (torch.zeros(2, 3, INPUT_SIZE, INPUT_SIZE),)
    names = {"input_names": [INPUT], "output_names": [OUTPUT]}
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            if how == "dynamo":
                batch = torch.export.Dim("N", min=1, max=4096)
                program = torch.onnx.export(
                    network.float().eval(), example, dynamic_shapes={"x": {0: batch}}, dynamo=True, verbose=False,
                    **names,
                )
                return program.model_proto.SerializeToString()
            buffer = io.BytesIO()
            torch.onnx.export(
                network.float().eval(), example, buffer, opset_version=17, dynamo=False,
                dynamic_axes={INPUT: {0: "N"}, OUTPUT: {0: "N"}}, **names,
            )
            return buffer.getvalue()
    finally:
        registration.setLevel(level)


def exported(network: EdgeFace, sha256: str) -> Path:
    """The ONNX file of ``network`` (loaded from the weights file with this SHA-256) in ``$FACETWIN_HOME/compiled``,
    exported on first use (seconds) and read from there by later loads."""
    path = paths.home() / "compiled" / f"edgeface-{network.variant}-{sha256[:16]}.onnx"
    if not path.is_file():
        paths.atomic_write_bytes(path, onnx_bytes(network))
    return path


def engine(model: Path | bytes, name: str, precision: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A thread-safe callable from preprocessed NCHW float32 to embeddings, over an exported file or its bytes:
    OpenVINO (``precision`` fp32 or bf16; a file's compiled blob is cached in ``compiled/openvino`` beside it) or
    onnxruntime (fp32 only)."""
    if name not in ENGINES:
        raise FacetwinError(f"unknown EdgeFace engine '{name}'; choose one of: {', '.join(ENGINES)}.")
    if name == "onnxruntime":
        if precision != "fp32":
            raise FacetwinError("onnxruntime runs EdgeFace in fp32 only; use precision fp32 with it.")
        return runtimes.onnxruntime_runner(model, threads)
    cache = model.parent / "openvino" if isinstance(model, Path) else None
    return runtimes.openvino_runner(model, precision, threads, cache_dir=cache)


__all__ = ["ENGINES", "INPUT", "OUTPUT", "engine", "exported", "exporter", "onnx_bytes"]

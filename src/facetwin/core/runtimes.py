"""The two CPU runtimes facetwin runs exported networks in, configured once: onnxruntime and OpenVINO.

Both return thread-safe callables from a float32 input array to the first output (float32).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np


def onnxruntime_session(model: bytes | str | Path, threads: int):
    """An onnxruntime CPU session: all graph optimisations, ``threads`` intra-op threads that sleep when idle
    (spinning threads steal the cores the next step of the pipeline needs), warnings off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def onnxruntime_runner(model: bytes | str | Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """The first output of :func:`onnxruntime_session` for the single input."""
    session = onnxruntime_session(model, threads)
    name, output = session.get_inputs()[0].name, session.get_outputs()[0].name
    return lambda x: session.run([output], {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def openvino():
    """The ``openvino`` module, imported without its telemetry. Imported plainly, it reports the import to Google
    Analytics (``openvino_telemetry``, on unless the user opted out) from a process it forks: facetwin sends nothing
    anywhere, and a fork of a process running Ray's threads is unsafe. OpenVINO's own no-op stub stands in."""
    hidden = "openvino" not in sys.modules and "openvino_telemetry" not in sys.modules
    if hidden:
        sys.modules["openvino_telemetry"] = None  # ImportError inside openvino, which then takes its stub
    try:
        import openvino as module
    finally:
        if hidden:
            del sys.modules["openvino_telemetry"]  # the user's own imports are untouched
    return module


def openvino_runner(
    model, precision: str, threads: int, cache_dir: Path | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """OpenVINO on the CPU over ``model`` (a file path, or ONNX bytes), ``precision`` ``fp32``/``f32`` or ``bf16``
    (the inference precision hint), latency mode, threads not pinned to cores (pinned, two processes of one thread
    each, such as two Ray workers, shared one core: 2 workers indexed 1.14x the photos of 1, unpinned 1.9x); with
    ``cache_dir`` the compiled blob is kept there and reused.
    One infer request per calling thread; the input is shared, not copied."""
    ov = openvino()
    core = ov.Core()
    if cache_dir is not None:
        core.set_property({"CACHE_DIR": str(cache_dir)})
    source = core.read_model(model, b"") if isinstance(model, bytes) else str(model)
    compiled = core.compile_model(
        source, "CPU",
        {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "INFERENCE_NUM_THREADS": int(threads),
         "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False},
    )
    local = threading.local()

    def run(x: np.ndarray) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        data = np.ascontiguousarray(x, dtype=np.float32)  # held here until the request has run on it
        request.set_input_tensor(ov.Tensor(data, shared_memory=True))
        request.infer()
        return request.get_output_tensor().data.copy()  # a copy: the request reuses its buffer

    return run


__all__ = ["onnxruntime_session", "onnxruntime_runner", "openvino", "openvino_runner"]

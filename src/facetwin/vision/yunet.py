"""YuNet (OpenCV Zoo, 2023mar int8bq) run by onnxruntime, with OpenCV's ``FaceDetectorYN`` decoding.

The same file and the same arithmetic as ``cv2.FaceDetectorYN`` (BGR 0–255, padded bottom/right with zeros to a
multiple of 32; scores ``sqrt(clamp(cls) * clamp(obj))``; boxes and landmarks decoded per stride 8/16/32; NMS
on integer boxes by ``cv2.dnn.NMSBoxes``), but the network runs in onnxruntime on the repaired graph with its
int8 weights folded to float32 once (:func:`facetwin.core.onnx_graph.fold_weights`): about twice as fast as
OpenCV 5's engine on a 250×250 photo. Rows are ``x, y, w, h``, five landmarks ``(x, y)``, score — the layout
of ``FaceDetectorYN.detect``.

One session serves every thread (``InferenceSession.run`` is thread-safe).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from facetwin.core import assets

STRIDES = (8, 16, 32)
DIVISOR = 32
INPUT = "input"
OUTPUTS = [f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES]

_session = None
_lock = threading.Lock()


def build(threads: int = 1):
    """A new onnxruntime session of the repaired, folded YuNet graph (any input size) on ``threads`` threads."""
    from facetwin.core.onnx_graph import fixed_model, fold_weights
    from facetwin.core.runtimes import onnxruntime_session

    model = fold_weights(fixed_model(assets.read_verified("yunet")))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for axis, name in ((2, "H"), (3, "W")):  # any padded size, not only the 640×640 of the file
        dims[axis].ClearField("dim_value")
        dims[axis].dim_param = name
    for output in model.graph.output:  # anchors per stride depend on the input size
        for dim in output.type.tensor_type.shape.dim[1:2]:
            dim.ClearField("dim_value")
            dim.dim_param = "anchors"
    # one thread by default: YuNet's small inputs do not split well across threads (benchmarks/photo_steps.py), and
    # concurrent callers (service, index) get a core each
    return onnxruntime_session(model.SerializeToString(), threads)


def session():
    """The shared onnxruntime session (built on first use from the verified model bytes)."""
    global _session
    with _lock:
        if _session is None:
            _session = build()
        return _session


def _blob(rgb: np.ndarray) -> np.ndarray:
    """``(1, 3, H', W')`` float32 BGR, zero-padded bottom/right to multiples of 32, in one copy."""
    height, width = rgb.shape[:2]
    pad_h = ((height - 1) // DIVISOR + 1) * DIVISOR
    pad_w = ((width - 1) // DIVISOR + 1) * DIVISOR
    blob = np.zeros((1, 3, pad_h, pad_w), np.float32)
    blob[0, :, :height, :width] = rgb.transpose(2, 0, 1)[::-1]
    return blob


def _decode(outputs: list[np.ndarray], pad_h: int, pad_w: int, score_threshold: float) -> np.ndarray:
    rows = []
    for i, stride in enumerate(STRIDES):
        cls, obj, bbox, kps = (outputs[i + 3 * k][0] for k in range(4))
        score = np.sqrt(np.clip(cls[:, 0], 0.0, 1.0) * np.clip(obj[:, 0], 0.0, 1.0))
        keep = np.flatnonzero(score >= score_threshold)
        if keep.size == 0:
            continue
        cols = pad_w // stride
        r, c = (keep // cols).astype(np.float32), (keep % cols).astype(np.float32)
        box = bbox[keep]
        cx, cy = (c + box[:, 0]) * stride, (r + box[:, 1]) * stride
        w, h = np.exp(box[:, 2]) * stride, np.exp(box[:, 3]) * stride
        marks = kps[keep].reshape(-1, 5, 2)
        marks = np.stack([(marks[..., 0] + c[:, None]) * stride, (marks[..., 1] + r[:, None]) * stride], axis=2)
        rows.append(
            np.column_stack([cx - w / 2, cy - h / 2, w, h, marks.reshape(-1, 10), score[keep]]).astype(np.float32)
        )
    return np.concatenate(rows) if rows else np.zeros((0, 15), np.float32)


def detect(rgb: np.ndarray, score_threshold: float, nms_threshold: float, top_k: int) -> np.ndarray:
    """``(K, 15)`` float32 faces of an RGB uint8 image, as ``cv2.FaceDetectorYN.detect`` returns them."""
    blob = _blob(rgb)
    sess = session()
    outputs = sess.run(OUTPUTS, {INPUT: blob})
    found = _decode(outputs, blob.shape[2], blob.shape[3], score_threshold)
    if len(found) > 1:
        boxes = np.trunc(found[:, :4]).astype(np.int32).tolist()
        keep = cv2.dnn.NMSBoxes(boxes, found[:, 14].tolist(), score_threshold, nms_threshold, top_k=top_k)
        found = found[np.asarray(keep, dtype=np.int64).reshape(-1)]
    return found


__all__ = ["build", "detect", "session"]

"""SFace at batch 1 in each runtime facetwin can use, side by side: ms per face and cosine to onnxruntime fp32.

    python benchmarks/sface_runtimes.py [--faces 300] [--rounds 5] [--threads 2]

Aligned 112×112 crops of the first ``--faces`` lfw-dev photos (facetwin's detection and alignment), one crop per
call, as the photo pipeline and the service call it. Rounds are interleaved runtime by runtime; the figure is
the median over rounds of the mean ms per face. Runtimes: onnxruntime fp32 (the default before OpenVINO),
OpenVINO f32, and OpenVINO bf16 when this CPU has native bfloat16 (``precision.openvino_bf16()``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "data" / "lfw-dev" / "images"


def crops(count: int) -> np.ndarray:
    from facetwin.vision.align import InputSpec
    from facetwin.vision.faces import crop_batches

    files = sorted(IMAGES.rglob("*.jpg"))[:count]
    out = [c for batch in crop_batches(((str(f), f) for f in files), InputSpec(112, "five_point")) for c in batch.crops]
    return np.stack(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if not IMAGES.is_dir():
        print(f"{IMAGES}: lfw-dev images not found", file=sys.stderr)
        return 2
    from facetwin.backbones.sface import backbone as sface
    from facetwin.core import assets, precision

    data = assets.read_verified("sface")
    runtimes = {"onnxruntime fp32": sface._onnxruntime(data, args.threads)}
    if sface.has_openvino():
        runtimes["openvino f32"] = sface._openvino(data, args.threads, "fp32")
        if precision.openvino_bf16():
            runtimes["openvino bf16"] = sface._openvino(data, args.threads, "bf16")
    faces = crops(args.faces)
    blobs = [np.ascontiguousarray(faces[i : i + 1].transpose(0, 3, 1, 2), dtype=np.float32) for i in range(len(faces))]
    ms: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(args.rounds):
        for name, infer in runtimes.items():
            for blob in blobs[:10]:
                infer(blob)
            start = time.perf_counter()
            for blob in blobs:
                infer(blob)
            ms[name].append(1000 * (time.perf_counter() - start) / len(blobs))
    reference = np.concatenate([runtimes["onnxruntime fp32"](b) for b in blobs])
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    print(f"{len(blobs)} lfw-dev faces at batch 1, {args.threads} threads, {args.rounds} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'runtime':<18}{'ms/face':>10}{'min cosine to onnxruntime fp32':>34}")
    for name, infer in runtimes.items():
        out = np.concatenate([infer(b) for b in blobs])
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        print(f"{name:<18}{statistics.median(ms[name]):>10.2f}{float((out * reference).sum(1).min()):>34.7f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ArcFace MobileFaceNet (w600k_mbf) against SFace, side by side: ms per face and the ratio to SFace.

    python benchmarks/arcface_speed.py [--weights FILE] [--faces 256] [--batches 1 32] [--rounds 5] [--threads 2]

Aligned 112×112 crops of the first ``--faces`` lfw-dev photos (facetwin's detection and alignment). Each row is a
trunk call (preprocessing included) at the given batch size: SFace as facetwin runs it (``SFace().trunk``), the
float graph of ``--weights`` in OpenVINO bf16 (when this CPU has native bfloat16) and f32, in onnxruntime fp32
with ``PRelu`` split (the fallback where OpenVINO is absent) and as it is, and the int8 file as it is in
onnxruntime. Rounds are interleaved row by row; the figure is the median over rounds of the mean ms per face.
The ratio is to SFace at the same batch size, in the same run.
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
WEIGHTS = ROOT.parent / "shared" / "weights" / "arcface_w600k_mbf_int8.onnx"


def crops(count: int) -> np.ndarray:
    from facetwin.vision.align import InputSpec
    from facetwin.vision.faces import crop_batches

    files = sorted(IMAGES.rglob("*.jpg"))[:count]
    out = [c for batch in crop_batches(((str(f), f) for f in files), InputSpec(112, "five_point")) for c in batch.crops]
    return np.stack(out)


def rows(weights: Path, threads: int) -> dict[tuple[str, str], object]:
    """(runtime, precision) -> a trunk function of RGB uint8 crops."""
    import onnx

    from facetwin.backbones.arcface_mbf.backbone import blob
    from facetwin.backbones.arcface_mbf.graph import read_graph
    from facetwin.backbones.sface.backbone import SFace
    from facetwin.core.onnx_graph import split_prelu
    from facetwin.core.precision import has_openvino, openvino_bf16
    from facetwin.core.runtimes import onnxruntime_runner, openvino_runner

    sface = SFace(threads=threads)
    model = read_graph(weights).model.SerializeToString()
    runners = {}
    if has_openvino():
        if openvino_bf16():
            runners["openvino", "bf16"] = openvino_runner(model, "bf16", threads)
        runners["openvino", "fp32"] = openvino_runner(model, "fp32", threads)
    split = split_prelu(onnx.load_from_string(model)).SerializeToString()
    runners["onnxruntime PRelu split", "fp32"] = onnxruntime_runner(split, threads)
    runners["onnxruntime", "fp32"] = onnxruntime_runner(model, threads)
    runners["onnxruntime int8 file", "int8"] = onnxruntime_runner(weights.read_bytes(), threads)
    out = {("sface " + ("openvino" if has_openvino() else "onnxruntime"), sface.precision): sface.trunk}
    out.update({key: (lambda c, run=run: run(blob(c))) for key, run in runners.items()})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=WEIGHTS, help="w600k_mbf.onnx or its int8 copy")
    p.add_argument("--faces", type=int, default=256)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    for path, what in ((IMAGES, "lfw-dev images"), (args.weights, "ArcFace weights")):
        if not path.exists():
            print(f"{path}: {what} not found", file=sys.stderr)
            return 2
    faces = crops(args.faces)
    trunks = rows(args.weights, args.threads)
    ms: dict[tuple, list[float]] = {}
    for _ in range(args.rounds):
        for batch in args.batches:
            chunks = [faces[i : i + batch] for i in range(0, len(faces), batch)]
            for key, trunk in trunks.items():
                trunk(chunks[0])  # warm-up
                start = time.perf_counter()
                for chunk in chunks:
                    trunk(chunk)
                ms.setdefault((*key, batch), []).append(1000 * (time.perf_counter() - start) / len(faces))
    print(f"{len(faces)} lfw-dev faces, {args.threads} threads, {args.rounds} interleaved rounds, "
          f"load average {os.getloadavg()[0]:.2f}; weights {args.weights.name}")
    print(f"{'runtime':<28}{'precision':<11}{'batch':>6}{'ms/face':>10}{'÷ sface':>9}")
    sface = next(key for key in trunks if key[0].startswith("sface"))
    for batch in args.batches:
        base = statistics.median(ms[(*sface, batch)])
        for key in trunks:
            value = statistics.median(ms[(*key, batch)])
            print(f"{key[0]:<28}{key[1]:<11}{batch:>6}{value:>10.2f}{value / base:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""VGG-Face embedding speed side by side: facetwin's PyTorch path per precision, and the same network exported to
ONNX and run by onnxruntime (fp32) and OpenVINO (f32, bf16; if installed), at batch 1, 8 and 32.

    python benchmarks/embed_speed.py [--weights FILE] [--runtimes facetwin-fp32@torch,onnxruntime-fp32,...]
                                     [--batches 1,8,32] [--rounds 3]

Every runtime lives in one process and the timings are interleaved (round → batch size → runtime), so machine
noise hits all alike; the median images/s over rounds is printed, with each runtime's cosine to facetwin's
fp32 embeddings on the same crops. A facetwin runtime times ``VGGFaceBackbone.embed`` (preprocessing + trunk +
paper head; ``facetwin-fp32@torch`` is PyTorch fp32 (the reference of the cosines),
``facetwin-fp32@onnxruntime`` is ``VGGFaceBackbone(runtime="onnxruntime")``, ``facetwin-auto`` the defaults:
OpenVINO fp32 on CPUs without AMX); an exported one
times the same preprocessing + the ONNX graph (trunk + head). Weights default to the Keras parity fixture
(same shapes as the real VGG-Face, so the same cost). The load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE = SHARED / "fixtures" / "vggface-keras" / "vggface_keras_legacy.h5"
GFLOP_PER_IMAGE = 30.9  # multiply-adds × 2 of VGG-Face up to fc8 at 224×224
RUNTIMES = (
    "facetwin-auto,facetwin-fp32@torch,facetwin-bf16,facetwin-bf16-all,facetwin-fp32@onnxruntime,onnxruntime-fp32,"
    "openvino-f32,openvino-bf16"
)


def build(names: list[str], weights: str) -> dict:
    """``name -> embed(crops)`` for each runtime (OpenVINO ones are left out when it is not installed)."""
    from facetwin.backbones import get_backbone
    from facetwin.backbones.vggface import runtimes as R
    from facetwin.backbones.vggface.backbone import preprocess
    from facetwin.core.precision import has_openvino

    runners, onnx_file = {}, None
    fp32 = get_backbone("vggface", weights=weights, precision="fp32", runtime="torch")
    for name in names:
        kind, _, precision = name.partition("-")
        if kind == "facetwin":  # facetwin-PRECISION[@RUNTIME]: VGGFaceBackbone itself (RUNTIME: default auto)
            precision, _, runtime = precision.partition("@")
            options = {"precision": precision, "runtime": runtime or "auto"}
            backbone = fp32 if name == "facetwin-fp32@torch" else get_backbone("vggface", weights=weights, **options)
            runners[name] = backbone
            continue
        if kind == "openvino" and not has_openvino():
            print(f"{name}: OpenVINO is not installed, skipped")
            continue
        if onnx_file is None:
            onnx_file = R.export_onnx(fp32)
        run = R.onnxruntime_runner(onnx_file) if kind == "onnxruntime" else R.openvino_runner(onnx_file, precision)
        runners[name] = lambda crops, run=run: run(preprocess(crops).numpy())
    if onnx_file is not None:  # the sessions hold the network now: the 580 MB file can go
        shutil.rmtree(onnx_file.parent, ignore_errors=True)
    return runners


def embed(runner, crops: np.ndarray) -> np.ndarray:
    if hasattr(runner, "embed"):
        runner.batch_size = len(crops)
        return runner.embed(crops)
    return runner(crops)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The lowest row-wise cosine similarity between two embedding batches."""
    return float(np.min((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def measure(runners: dict, batches: list[int], rounds: int, min_images: int) -> dict:
    """``{(runtime, batch): [images/s per round]}``, interleaved."""
    rng = np.random.default_rng(0)
    crops = {b: rng.integers(0, 256, (b, 224, 224, 3), dtype=np.uint8) for b in batches}
    for b in batches:  # warm-up: kernels picked and cached per shape
        for runner in runners.values():
            embed(runner, crops[b])
    rates: dict = {}
    for round_ in range(rounds):
        for b in batches:
            calls = max(1, -(-min_images // b))
            for name, runner in runners.items():
                start = time.perf_counter()
                for _ in range(calls):
                    embed(runner, crops[b])
                rates.setdefault((name, b), []).append(calls * b / (time.perf_counter() - start))
        print(f"round {round_ + 1}/{rounds} done (load average {os.getloadavg()[0]:.2f})", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(FIXTURE), help="VGG-Face weights (.h5 or converted .safetensors)")
    parser.add_argument("--runtimes", default=RUNTIMES)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--min-images", type=int, default=32, help="timed images per batch size and round")
    parser.add_argument("--threads", type=int, default=0, help="threads for every runtime (0: PyTorch's default)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    import torch

    from facetwin.core import precision

    precision.configure_cpu(args.threads or None)
    batches = [int(b) for b in args.batches.split(",")]
    load_before = os.getloadavg()
    runners = build(args.runtimes.split(","), args.weights)
    probe = np.random.default_rng(1).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
    reference = embed(runners["facetwin-fp32@torch"], probe) if "facetwin-fp32@torch" in runners else None
    cos = {n: cosine(embed(r, probe), reference) if reference is not None else float("nan") for n, r in runners.items()}
    rates = measure(runners, batches, args.rounds, args.min_images)
    load_after = os.getloadavg()
    median = {key: statistics.median(v) for key, v in rates.items()}

    flags = sorted(f for f in precision.cpu_flags() if f in ("amx_bf16", "avx512_bf16", "avx512f", "amx_tile"))
    print(f"\nVGG-Face embed speed (paper layer, 224x224), CPU flags: {' '.join(flags) or '-'}, "
          f"cores: {os.cpu_count()}, threads: {torch.get_num_threads()}, rounds: {args.rounds} (median)")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
          f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"{'runtime':<26}" + "".join(f"{'batch ' + str(b) + ' img/s':>16}" for b in batches) + "   cosine to fp32")
    for name in runners:
        cells = "".join(f"{median[(name, b)]:>16.2f}" for b in batches)
        print(f"{name:<26}{cells}   {cos[name]:.5f}")
    if "facetwin-fp32@torch" in runners:
        for name in runners:
            ratios = ", ".join(f"{median[(name, b)] / median[('facetwin-fp32@torch', b)]:.2f}x" for b in batches)
            print(f"{name} / facetwin-fp32@torch: {ratios}")
    if args.json:
        doc = {"load": [load_before, load_after], "cosine": cos,
               "rates": {f"{n}@{b}": v for (n, b), v in rates.items()}}
        Path(args.json).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()

"""VGG-Face embedding speed: images/s at batch 1, 8 and 32 for each precision, and peak memory.

    python benchmarks/embed_speed.py [--weights FILE] [--precisions fp32,bf16,bf16-all] [--batches 1,8,32]

Times ``VGGFaceBackbone.embed`` (preprocessing + trunk + paper head, layer "paper") on random 224×224 RGB
crops, after one warm-up batch. Each precision runs in its own process so that the peak resident memory
(``resource.getrusage(...).ru_maxrss``) belongs to that precision alone. Weights default to the Keras
parity fixture (same shapes as the real VGG-Face, so the same speed). Numbers depend on what else runs
on the machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURE = SHARED / "fixtures" / "vggface-keras" / "vggface_keras_legacy.h5"
GFLOP_PER_IMAGE = 30.9  # multiply-adds × 2 of VGG-Face up to fc8 at 224×224


def _child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from facetwin.backbones import get_backbone

    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = get_backbone("vggface", weights=args.weights, precision=args.child, batch_size=max(args.batch_list))
    rng = np.random.default_rng(0)
    rows = []
    for batch in args.batch_list:
        crops = rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
        backbone.batch_size = batch
        backbone.embed(crops)  # warm-up: oneDNN picks and caches its kernels per shape
        calls = max(args.repeats, -(-args.min_images // batch))
        start = time.perf_counter()
        for _ in range(calls):
            backbone.embed(crops)
        seconds = time.perf_counter() - start
        rate = calls * batch / seconds
        rows.append({"batch": batch, "images_per_s": rate, "gflops": rate * GFLOP_PER_IMAGE, "images": calls * batch})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"precision": args.child, "trunk": backbone.describe()["trunk_precision"], "rows": rows,
                      "peak_rss_mb": peak_mb, "threads": torch.get_num_threads()}))


def _matrix_peak(threads: int) -> dict:
    """GFLOPS of a 4096³ matrix product in fp32 and bf16 now: the ceiling any convolution can reach."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    peak = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.rand(4096, 4096).to(dtype)
        b = torch.rand(4096, 4096).to(dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        peak[name] = 3 * 2 * 4096**3 / (time.perf_counter() - start) / 1e9
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(FIXTURE), help="VGG-Face weights (.h5 or converted .safetensors)")
    parser.add_argument("--precisions", default="fp32,bf16,bf16-all")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per batch size (at least)")
    parser.add_argument("--min-images", type=int, default=32, help="timed images per batch size (at least)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch_list = [int(b) for b in args.batches.split(",")]
    if args.child:
        _child(args)
        return

    from facetwin.core import precision

    load_before = os.getloadavg()
    results = []
    for name in args.precisions.split(","):
        command = [sys.executable, __file__, "--child", name, "--weights", args.weights, "--batches", args.batches,
                   "--repeats", str(args.repeats), "--min-images", str(args.min_images), "--threads", str(args.threads)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    peak = _matrix_peak(args.threads)
    load_after = os.getloadavg()

    flags = sorted(f for f in precision.cpu_flags() if f in ("amx_bf16", "avx512_bf16", "avx512f", "amx_tile"))
    print(f"VGG-Face embed speed (paper layer, 224x224), CPU flags: {' '.join(flags) or '-'}, "
          f"cores: {os.cpu_count()}, threads: {results[0]['threads']}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (other work on the machine slows this)")
    header = "precision   trunk          " + "".join(f"batch {b:<4} img/s  " for b in args.batch_list) + "peak RSS"
    print(header)
    for r in results:
        cells = "".join(f"{row['images_per_s']:>10.2f}        " for row in r["rows"])
        print(f"{r['precision']:<11} {r['trunk']:<14} {cells}{r['peak_rss_mb']:>7.0f} MB")
    print(
        "matrix-product peak now: "
        + ", ".join(f"{k} {v:.0f} GFLOPS (= {v / GFLOP_PER_IMAGE:.1f} img/s at {GFLOP_PER_IMAGE} GFLOP/img)"
                    for k, v in peak.items())
    )
    if args.json:
        doc = {"load": [load_before, load_after], "results": results, "matrix_peak_gflops": peak}
        Path(args.json).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()

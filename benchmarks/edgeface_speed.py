"""EdgeFace speed on a CPU: PyTorch (fp32, bf16 autocast) against the exported ONNX graph in OpenVINO and onnxruntime.

    python benchmarks/edgeface_speed.py                       # both variants, batch 1 and 32, 2 threads
    python benchmarks/edgeface_speed.py --variant xxs --rounds 40 --exporter both

Every runtime embeds the same real crops (lfw-dev photos aligned by facetwin, or the six crops of
``edgeface-reference.npz`` repeated when lfw-dev is absent); the runs are interleaved round by round, so the load
of other processes falls on all of them alike. Printed: ms per face, the median and the best of the rounds (the
best is the steadier figure on a shared machine). Each exported graph's embeddings are compared with PyTorch fp32
(max abs difference, min cosine). SFace's trunk on the same crops stands beside them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT.parent / "shared" / "weights"
LFW = ROOT.parent / "shared" / "data" / "lfw-dev" / "images"


def real_crops(count: int) -> tuple[np.ndarray, str]:
    """``count`` aligned 112×112 crops: lfw-dev photos (one per person) or the reference crops repeated."""
    if LFW.is_dir():
        from facetwin.vision.align import InputSpec
        from facetwin.vision.faces import face_crops

        photos = sorted(LFW.glob("*/*_0001.jpg"))[:count]
        spec = InputSpec(112, "five_point")
        crops = np.stack([face_crops(p, spec, no_face="center")[0].crop for p in photos])
        return crops, f"{len(photos)} lfw-dev photos"
    crops = np.load(WEIGHTS / "edgeface-reference.npz")["crops_rgb_uint8"]
    return np.resize(crops, (count, *crops.shape[1:])), "the 6 reference crops, repeated"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def runners(variant: str, threads: int, exporters: list[str]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """name → function from RGB uint8 crops to embeddings."""
    import torch

    from facetwin.backbones.edgeface import runtime as R
    from facetwin.backbones.edgeface import weights as W
    from facetwin.backbones.edgeface.network import preprocess
    from facetwin.core.runtimes import onnxruntime_runner, openvino_runner

    network = W.load(WEIGHTS / f"edgeface_{variant}_q.pt").network.requires_grad_(False)

    def eager(bf16: bool) -> Callable[[np.ndarray], np.ndarray]:
        def run(crops: np.ndarray) -> np.ndarray:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                return network(preprocess(crops)).float().numpy()

        return run

    def graph(call: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        return lambda crops: call(preprocess(crops).numpy())

    out = {"pytorch fp32": eager(False), "pytorch bf16 autocast": eager(True)}
    for how in exporters:
        start = time.perf_counter()
        data = R.onnx_bytes(network, how)
        print(f"  {variant}: {how} export {time.perf_counter() - start:.1f} s, {len(data) / 1e6:.1f} MB", flush=True)
        out[f"openvino f32 ({how})"] = graph(openvino_runner(data, "fp32", threads))
        out[f"openvino bf16 ({how})"] = graph(openvino_runner(data, "bf16", threads))
        out[f"onnxruntime fp32 ({how})"] = graph(onnxruntime_runner(data, threads))
    return out


def measure(table: dict[str, Callable], crops: np.ndarray, batch: int, rounds: int) -> dict[str, tuple[float, float]]:
    """(median, best) ms per face of each runner over ``rounds`` interleaved calls on batches of ``batch`` crops."""
    batches = [crops[i : i + batch] for i in range(0, len(crops) - batch + 1, batch)]
    times: dict[str, list[float]] = {name: [] for name in table}
    for run in table.values():
        run(batches[0])  # warm-up (OpenVINO and onnxruntime compile or allocate on the first call)
    for r in range(rounds):
        for name, run in table.items():
            start = time.perf_counter()
            run(batches[r % len(batches)])
            times[name].append((time.perf_counter() - start) * 1000 / batch)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", nargs="+", default=["xs", "xxs"], choices=["xs", "xxs"])
    p.add_argument("--batch", nargs="+", type=int, default=[1, 32])
    p.add_argument("--rounds", type=int, default=30, help="timed calls per runtime and batch size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--exporter", choices=["auto", "dynamo", "torchscript", "both"], default="auto")
    p.add_argument("--no-sface", action="store_true", help="leave SFace out")
    args = p.parse_args()
    if not (WEIGHTS / "edgeface-reference.npz").is_file():
        raise SystemExit(f"{WEIGHTS} is absent: this benchmark needs ../shared/weights")

    import torch

    from facetwin.backbones.edgeface import runtime as R

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    exporters = {"auto": [R.exporter()], "both": ["dynamo", "torchscript"]}.get(args.exporter, [args.exporter])
    crops, source = real_crops(max(64, 2 * max(args.batch)))
    print(f"crops: {source}; threads {args.threads}; torch {torch.__version__}; rounds {args.rounds}", flush=True)
    table: dict[str, Callable] = {}
    for variant in args.variant:
        for name, run in runners(variant, args.threads, exporters).items():
            table[f"edgeface-{variant} {name}"] = run
    if not args.no_sface:
        from facetwin.backbones.sface.backbone import SFace

        for precision in ("fp32", "bf16"):
            table[f"sface openvino {precision}"] = SFace(precision=precision, threads=args.threads).trunk

    reference = {name: run(crops[:32]) for name, run in table.items()}
    results = {batch: measure(table, crops, batch, args.rounds) for batch in args.batch}
    header = f"{'ms per face (median / best)':<44}" + "".join(f"{f'batch {b}':>16}" for b in args.batch)
    print(f"\n{header}{'max |Δ| to torch fp32':>24}{'min cosine':>12}")
    for name in table:
        base = reference[name.split(" ", 1)[0] + " pytorch fp32"] if name.startswith("edgeface") else None
        figures = "".join(f"{f'{results[b][name][0]:.2f} / {results[b][name][1]:.2f}':>16}" for b in args.batch)
        agreement = (
            f"{np.abs(reference[name] - base).max():>24.2e}{cosine(reference[name], base):>12.6f}"
            if base is not None else ""
        )
        print(f"{name:<44}{figures}{agreement}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

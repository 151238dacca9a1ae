"""ms per face of facetwin's dlib network against dlib's own ``compute_face_descriptor``, same chips, one run.

    python benchmarks/dlib_speed.py [--faces 64] [--repeats 3]

Needs the real dlib (``pip install dlib-bin``, dev extra). Chips: facetwin's pipeline (YuNet + dlib's chip) on the
first lfw-dev images. Every variant runs on the same chips in this one process, in interleaved rounds (best of
``--repeats`` after a warm-up round); on a shared machine only the side-by-side ratios mean something. Variants
of ours: batch 1 and batched, with 1 and all threads, contiguous and channels-last memory, TorchScript (trace +
freeze), and bf16 autocast, which is only worth anything if its descriptors stay at cosine >= 0.9999 with
float32 (printed). The last rows are what facetwin runs: ``DlibBackbone.trunk`` in fp32 and bf16.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT.parent / "shared" / "data" / "lfw-dev" / "images"


def timed(fn, threads: int) -> float:
    """Wall time of one call of ``fn()`` with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()

    import dlib

    from facetwin.backbones import get_backbone
    from facetwin.backbones.dlib.weights import find_dat
    from facetwin.vision.faces import face_crops

    torch.set_flush_denormal(True)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # shapes are fixed: 150×150 chips
    backbone = get_backbone("dlib")
    files = sorted(IMAGES.glob("*/*.jpg"))[: args.faces]
    chips = np.stack([face_crops(str(f), backbone.input, no_face="center")[0].crop for f in files])
    n = len(chips)
    reference = dlib.face_recognition_model_v1(str(find_dat()))
    net = backbone.network
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float().contiguous()
    x_last = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        exact = net(x)
        scripted = torch.jit.freeze(torch.jit.trace(net.eval(), x_last[:1]))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x_last).float()
    cosine = torch.nn.functional.cosine_similarity(exact, low).min().item()
    dlib_out = np.stack([np.array(reference.compute_face_descriptor(c)) for c in chips])
    print(f"{n} chips of 150×150; max |ours - dlib| = {np.abs(exact.numpy() - dlib_out).max():.2e}; "
          f"bf16 autocast: min cosine to fp32 = {cosine:.6f}")

    def ours(inputs: torch.Tensor, batch: int, module=net, bf16: bool = False):
        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                for start in range(0, n, batch):
                    module(inputs[start : start + batch])

        return run

    rows = [("dlib compute_face_descriptor, one chip per call", lambda: [reference.compute_face_descriptor(c)
                                                                         for c in chips]),
            ("dlib compute_face_descriptor, list of chips", lambda: reference.compute_face_descriptor(list(chips)))]
    threads = torch.get_num_threads()
    for t in sorted({1, threads}):
        for b in (1, args.batch_size):
            rows.append((f"ours, {t} thread(s), batch {b}, contiguous", ours(x, b), t))
            rows.append((f"ours, {t} thread(s), batch {b}, channels-last", ours(x_last, b), t))
            rows.append((f"ours, {t} thread(s), batch {b}, channels-last, TorchScript", ours(x_last, b, scripted), t))
        rows.append((f"ours, {t} thread(s), batch {args.batch_size}, bf16 autocast", ours(x_last, args.batch_size,
                                                                                         bf16=True), t))
    bf16 = get_backbone("dlib", precision="bf16")
    rows.append(("facetwin DlibBackbone.trunk, fp32 (the default)", lambda: backbone.trunk(chips), threads))
    rows.append(("facetwin DlibBackbone.trunk, bf16", lambda: bf16.trunk(chips), threads))
    best = {row[0]: float("inf") for row in rows}
    for round_ in range(args.repeats + 1):  # rounds interleave the variants, so each sees the same machine load
        for label, fn, *rest in rows:
            seconds = timed(fn, rest[0] if rest else threads)
            if round_:  # round 0 warms up
                best[label] = min(best[label], seconds)
    torch.set_num_threads(threads)
    base = 1000.0 * best["dlib compute_face_descriptor, one chip per call"] / n
    print(f"torch {torch.__version__}, {threads} threads available; dlib {dlib.__version__}; best of "
          f"{args.repeats} interleaved rounds after a warm-up round\n")
    for label, seconds in best.items():
        ms = 1000.0 * seconds / n
        print(f"{label:62s} {ms:8.2f} ms/face   {base / ms:5.1f}× dlib per-chip")
    return 0


if __name__ == "__main__":
    sys.exit(main())

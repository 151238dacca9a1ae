"""Soak test: mixed valid and hostile traffic from 16 clients for 5 minutes against `facetwin serve` on 127.0.0.1.

    python benchmarks/service_soak.py                  # 16 clients, 300 s, a fresh server and gallery
    python benchmarks/service_soak.py --seconds 60 --clients 8

The server runs in its own process with a temporary FACETWIN_HOME and gallery. Each client loops over a mix
of requests, every kind with the statuses it may get (a valid verify: 200; a 79-megapixel PNG bomb: 413; a
cross-site POST: 403; a stalled body: 408; ...). Printed: requests/s, latency p50/p99 per kind and overall,
status counts, unexpected answers, the server's peak RSS (sampled from /proc every 0.2 s, and VmHWM), and
whether /healthz answered within 5 s every second. Exit status 1 if any answer was unexpected, /healthz
failed once, or the peak RSS went over --rss-bound-mb (default 1500).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT.parent / "shared" / "data" / "face_recognition_examples"
CLI = "import sys; from facetwin.cli import main; sys.exit(main(sys.argv[1:]))"


def _png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def _payloads() -> dict[str, bytes]:
    """Photos and hostile files, made once."""
    read = {name: (EXAMPLES / name).read_bytes() for name in (
        "obama/obama.jpg", "obama/obama1.jpg", "biden/biden.jpg", "rose_leslie/img1.jpg", "kit_harington/john1.jpeg"
    )}
    big = Image.open(EXAMPLES / "obama/obama.jpg").convert("RGB").resize((5000, 4000))  # 20 MP, a camera photo
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=80)
    eps = io.BytesIO()
    Image.new("RGB", (32, 32)).save(eps, "EPS")
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    return {
        **read,
        "big": buffer.getvalue(),
        "bomb": _png(Image.new("L", (8900, 8900))),  # 79 MP in ~80 kB
        "eps": eps.getvalue(),
        "noface": _png(Image.fromarray(noise)),
        "truncated": read["obama/obama.jpg"][:5000],
        "garbage": os.urandom(20_000),
    }


def _kinds(p: dict[str, bytes], base: str) -> dict:
    """Request kind -> (weight, function(client) -> response, allowed statuses)."""
    f = lambda name, key: (name, p[key], "image/jpeg")  # noqa: E731
    port = base.rsplit(":", 1)[1]

    def enrol_remove(c):
        name = f"soak{random.randrange(10**9)}"
        r = c.post(f"/v1/people/{name}/images", files=[("images", f("a.jpg", "obama/obama.jpg"))])
        return c.delete(f"/v1/people/{name}") if r.status_code == 200 else r

    return {
        "verify": (6, lambda c: c.post("/v1/verify", files={"a": f("a.jpg", "obama/obama.jpg"),
                                                             "b": f("b.jpg", "obama/obama1.jpg")}), {200}),
        "embed": (4, lambda c: c.post("/v1/embed", files={"image": f("x.jpg", "biden/biden.jpg")}), {200}),
        "identify": (4, lambda c: c.post("/v1/identify", files={"image": f("x.jpg", "rose_leslie/img1.jpg")}), {200}),
        "enrol+remove": (2, enrol_remove, {200}),
        "people": (2, lambda c: c.get("/v1/people"), {200}),
        "big photo": (1, lambda c: c.post("/v1/embed", files={"image": f("big.jpg", "big")}), {200}),
        "png bomb x8": (2, lambda c: c.post("/v1/people/Bomb/images",
                                             files=[("images", f(f"b{i}.png", "bomb")) for i in range(8)]), {413}),
        "eps": (1, lambda c: c.post("/v1/embed", files={"image": f("x.eps", "eps")}), {415}),
        "garbage": (2, lambda c: c.post("/v1/embed", files={"image": f("x.jpg", "garbage")}), {415}),
        "truncated": (1, lambda c: c.post("/v1/embed", files={"image": f("x.jpg", "truncated")}), {415}),
        "no face": (1, lambda c: c.post("/v1/embed", files={"image": f("x.png", "noface")}), {422}),
        "over limit": (1, lambda c: c.post("/v1/embed", files={"image": ("x.jpg", b"\0" * (11 << 20))}), {413}),
        "foreign host": (2, lambda c: c.get("/v1/people", headers={"Host": "evil.example"}), {403}),
        "cross-site": (2, lambda c: c.post("/v1/people/X/images", files=[("images", f("a.jpg", "obama/obama.jpg"))],
                                            headers={"Origin": "http://evil.example"}), {403}),
        "bad name": (1, lambda c: c.post("/v1/people/a%1Bb/images", files=[("images", f("a.jpg", "biden/biden.jpg"))]),
                     {400}),
        "unknown person": (1, lambda c: c.delete("/v1/people/nobody-here"), {404}),
        "stalled body": (1, lambda c: _stalled(base.rsplit("/", 1)[1].split(":")[0], int(port)), {408}),
    }


class _Raw:
    def __init__(self, status: int) -> None:
        self.status_code = status


def _stalled(host: str, port: int) -> _Raw:
    """Announce a body and send only its start, then wait for the server's answer."""
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(f"POST /v1/embed HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; "
                     f"boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n".encode())
        answer = sock.recv(4096).split(b" ", 2)
    return _Raw(int(answer[1]) if len(answer) > 1 and answer[1].isdigit() else 0)


def _start_server(home: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "FACETWIN_API_KEY"}
    env["FACETWIN_HOME"] = str(home)
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "serve", "--port", str(port), "--gallery", str(home / "soak.db"),
         "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    sys.exit(f"the server did not start: {proc.stderr.read() if proc.stderr else ''}")


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _run(base: str, pid: int, clients: int, seconds: float, kinds: dict) -> dict:
    """Drive the traffic; returns latencies per kind, statuses, unexpected answers, RSS and /healthz record."""
    names = list(kinds)
    weights = [kinds[k][0] for k in names]
    lat, statuses, unexpected = defaultdict(list), Counter(), Counter()
    health = {"ok": 0, "failed": 0, "worst": 0.0}
    rss = {"peak": _rss_mb(pid), "start": _rss_mb(pid)}
    lock, stop = threading.Lock(), threading.Event()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=120) as c:
            while not stop.is_set():
                kind = rng.choices(names, weights)[0]
                start = time.perf_counter()
                try:
                    status = kinds[kind][1](c).status_code
                except (httpx.HTTPError, OSError) as exc:
                    status = f"transport error ({type(exc).__name__})"
                with lock:
                    lat[kind].append(time.perf_counter() - start)
                    statuses[status] += 1
                    if status not in kinds[kind][2]:
                        unexpected[f"{kind}: {status}"] += 1

    def watch() -> None:
        next_health = time.monotonic()
        while not stop.is_set():
            rss["peak"] = max(rss["peak"], _rss_mb(pid))
            if time.monotonic() >= next_health:
                next_health += 1.0
                start = time.perf_counter()
                try:
                    good = httpx.get(base + "/healthz", timeout=5).status_code == 200
                except httpx.HTTPError:
                    good = False
                health["ok" if good else "failed"] += 1
                health["worst"] = max(health["worst"], time.perf_counter() - start)
            time.sleep(0.2)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)] + [threading.Thread(target=watch)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    rss["hwm"] = _rss_mb(pid, "VmHWM")
    return {"lat": lat, "statuses": statuses, "unexpected": unexpected, "health": health, "rss": rss,
            "elapsed": time.perf_counter() - started}


def _report(r: dict, clients: int, bound: float) -> bool:
    every = sorted(x for xs in r["lat"].values() for x in xs)
    total = len(every)
    q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")  # noqa: E731
    print(f"{clients} clients, {r['elapsed']:.0f} s: {total} requests, {total / r['elapsed']:.1f} req/s, "
          f"latency p50 {q(every, 0.5):.0f} ms, p99 {q(every, 0.99):.0f} ms")
    for kind, xs in sorted(r["lat"].items()):
        xs = sorted(xs)
        print(f"  {kind:15s} {len(xs):6d}  p50 {q(xs, 0.5):7.0f} ms  p99 {q(xs, 0.99):7.0f} ms")
    print("statuses:", dict(sorted(r["statuses"].items(), key=str)))
    print("unexpected:", dict(r["unexpected"]) or 0)
    rss = r["rss"]
    print(f"server RSS: start {rss['start']:.0f} MB, peak {max(rss['peak'], rss['hwm']):.0f} MB "
          f"(bound {bound:.0f} MB)")
    h = r["health"]
    print(f"/healthz: {h['ok']} answered, {h['failed']} failed, slowest {h['worst'] * 1000:.0f} ms")
    good = not r["unexpected"] and h["failed"] == 0 and max(rss["peak"], rss["hwm"]) <= bound
    print("PASS" if good else "FAIL")
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long (default 300)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--rss-bound-mb", type=float, default=1500.0, help="server peak RSS bound (default 1500)")
    args = parser.parse_args()
    if not EXAMPLES.is_dir():
        sys.exit(f"{EXAMPLES}: the example photos are absent.")
    payloads = _payloads()
    with tempfile.TemporaryDirectory(prefix="facetwin-soak-") as home:
        proc, base = _start_server(Path(home))
        try:
            result = _run(base, proc.pid, args.clients, args.seconds, _kinds(payloads, base))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0 if _report(result, args.clients, args.rss_bound_mb) else 1


if __name__ == "__main__":
    sys.exit(main())

"""A private Ray for one ``facetwin index`` run: it listens on 127.0.0.1 only, and it goes away with every process it
made when the run ends, however the run ends (normally, Ctrl-C, or its process killed with SIGKILL).

facetwin runs this file (by path: it imports nothing of facetwin, so it starts in a moment) as a process of its own
session, so a Ctrl-C in the terminal does not reach it, with a pipe on its stdin. It makes itself the reaper of its
orphaned descendants (``PR_SET_CHILD_SUBREAPER``), starts ``ray start --head --block`` in a temporary folder of its
own with every Ray server bound to 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray take the loopback
address as the node's; ``RAY_ADDRESS`` is dropped, so no other cluster is joined) and a random token of its own
(``RAY_AUTH_MODE=token``: other local users cannot submit work to it), prints ``address HOST:PORT TOKEN`` once the
cluster is up, and waits. When the pipe closes (the facetwin process finished, or died: the kernel closes its
end), it kills every process of the cluster (all are its descendants) and removes its folder. If the supervisor is
killed, ``ray start`` gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``) and stops its processes.

Usage: ``python ray_supervisor.py CPUS``.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
START_TIMEOUT = 120.0  # seconds for the head to answer
STOP_WITHIN = 10.0  # seconds given to killing every process of the cluster (it takes well under one)
READY = "Ray runtime started"  # what ``ray start`` prints once the head node (GCS and raylet) is up


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants() -> list[int]:
    """Every process below this one (orphans of descendants are this process's children: it is their reaper)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier}
        found += frontier
    return found


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _stop(temp: str) -> None:
    """Every process below this one killed (Ray keeps nothing worth a graceful stop: the run's results are the
    shards facetwin wrote), orphans reaped as they come, and the folder removed."""
    deadline = time.monotonic() + STOP_WITHIN
    while (left := _descendants()) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        _reap()
    _reap()
    shutil.rmtree(temp, ignore_errors=True)


def _log_tail(temp: str) -> str:
    try:
        with open(os.path.join(temp, "ray-start.log"), "rb") as log:
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def main(argv: list[str]) -> int:
    cpus = int(argv[1])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a polite stop: the same as the pipe closing
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    temp = tempfile.mkdtemp(prefix="facetwin-ray-")
    port = _free_port()
    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=token)
    command = [
        sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())", "start", "--head",
        "--block", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}", "--num-gpus=0",
        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
    ]
    with open(os.path.join(temp, "ray-start.log"), "wb") as log:
        head = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: _prctl(PR_SET_PDEATHSIG, signal.SIGTERM))
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while READY not in _log_tail(temp):
            if head.poll() is not None or time.monotonic() > deadline:
                last = _log_tail(temp).strip().splitlines()[-1:] or ["no output"]
                print(f"error Ray did not start ({last[0][:300]})", flush=True)
                return 1
            time.sleep(0.1)
        print(f"address 127.0.0.1:{port} {token}", flush=True)
        try:
            while sys.stdin.buffer.read(65536):  # until the facetwin process closes its end or dies
                pass
        except (OSError, ValueError):
            pass
        return 0
    finally:
        _stop(temp)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

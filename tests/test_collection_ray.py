"""The Ray engine on a real cluster started the way an operator does: ``ray start --head`` and ``ray start --address``
as two processes of their own (one CPU each), a token of the cluster's own, then ``facetwin index --ray-address``.
The faces equal the in-process run's and both nodes embedded faces; a run that loses a worker (killed by PID) still
completes with no face missing and none twice; both nodes are stopped by PID and leave no process behind.

Ray 2.60's ``ray start`` replaces 127.0.0.1 with the machine's own address on Linux (and refuses worker nodes when
told to stay local), so the cluster runs in a network namespace whose only network is loopback (``unshare -rn``):
every Ray port, the dashboard's included, is on 127.0.0.1, which the test checks with ``ss`` in that namespace."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from collection_helpers import assert_same_faces, photo_folder, photos_of

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

SRC = Path(__file__).resolve().parents[1] / "src"
RAY = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())"]
PORT = 6379  # the namespace is the cluster's own: Ray's default port is free there
LOOPBACK = ("127.", "[::ffff:127.", "[::1]")
READY = "Ray runtime started"  # what ``ray start`` prints once its node is up


def _process(pid: int) -> tuple[int, str] | None:
    """(parent, command line) of a live process, None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    return None if fields[0] == "Z" else (int(fields[1]), command)


def _tree() -> dict[int, tuple[int, str]]:
    return {int(e): p for e in os.listdir("/proc") if e.isdigit() and (p := _process(int(e))) is not None}


def _below(tree: dict, root: int) -> set[int]:
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in tree.items() if ppid in frontier} - found
        found |= frontier
    return found


class Cluster:
    """Two Ray nodes started with ``ray start`` in a loopback-only network namespace, and commands run in it."""

    def __init__(self, root: Path):
        self.root = root
        self.temp = Path(tempfile.mkdtemp(prefix="ftray-"))  # short: Ray's socket paths must fit 107 bytes
        self.token = secrets.token_hex(32)
        self.anchor = subprocess.Popen(["unshare", "-rn", "sleep", "3600"])
        self.nodes: dict[str, subprocess.Popen] = {}
        self.sockets: set[tuple[str, str]] = set()
        self.run("ip", "link", "set", "lo", "up", check=True)

    def env(self) -> dict:
        """What an operator exports on every node and for facetwin: the cluster's token."""
        path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
        return {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, "PYTHONPATH": path,
                "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # a node stopped has nothing to hand over

    def command(self, *args) -> list[str]:
        return ["nsenter", "-t", str(self.anchor.pid), "-U", "-n", "--preserve-credentials", *map(str, args)]

    def run(self, *args, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), env=self.env(), capture_output=True, text=True, check=check,
                              timeout=timeout)

    def start(self) -> None:
        common = ["--num-cpus=1", "--num-gpus=0", "--disable-usage-stats", "--block"]
        for name, args in (("head", ["--head", f"--port={PORT}", "--include-dashboard=false"]),
                           ("worker", [f"--address=127.0.0.1:{PORT}"])):
            log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - the node's own output, closed with it
            self.nodes[name] = subprocess.Popen(self.command(*RAY, "start", *args, *common,
                                                             f"--temp-dir={self.temp / name}"),
                                                env=self.env(), stdout=log, stderr=subprocess.STDOUT)
            self.wait_for(lambda n=name: READY in (self.root / f"{n}.log").read_text(errors="replace"),
                          f"the {name} node")
        self.wait_for(lambda: self.alive_nodes() == 2, "the cluster of two nodes")

    def alive_nodes(self) -> int:
        script = (f"import ray; ray.init(address='127.0.0.1:{PORT}', logging_level='ERROR'); "
                  "print(sum(n['Alive'] for n in ray.nodes()))")
        try:
            done = self.run(sys.executable, "-c", script, timeout=60)
        except subprocess.TimeoutExpired:
            return 0
        return int(done.stdout.split()[-1]) if done.returncode == 0 and done.stdout.split() else 0

    def wait_for(self, condition, what: str, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            stopped = [name for name, node in self.nodes.items() if node.poll() is not None]
            assert time.monotonic() < deadline and not stopped, f"{what} did not come up: {self.logs()}"
            time.sleep(1)

    def logs(self) -> str:
        return " | ".join((self.root / f"{n}.log").read_text(errors="replace")[-800:] for n in self.nodes)

    def node_of(self, pid: int, tree: dict) -> str | None:
        """Which node (its ``ray start`` process) a process runs under."""
        while pid in tree:
            for name, node in self.nodes.items():
                if pid == node.pid:
                    return name
            pid = tree[pid][0]
        return None

    def listening(self) -> None:
        """Add the sockets listening in the namespace now (address, process) to :attr:`sockets`."""
        for flags in ("-ltnpH", "-lunpH"):
            for line in self.run("ss", flags).stdout.splitlines():
                names = [part.split('"')[1] for part in line.split("users:")[1:]] if "users:" in line else ["?"]
                self.sockets.add((line.split()[3], names[0]))

    def index(self, photos: Path, out: Path, *extra, watch=None) -> dict:
        """``facetwin index PHOTOS --out OUT --ray-address`` in the namespace (``watch(tree)`` called meanwhile);
        returns the run's summary, with its stderr."""
        args = ["-m", "facetwin.cli", "index", photos, "--out", out, "--ray-address", f"127.0.0.1:{PORT}", "--json",
                "--quiet", *extra]
        run = subprocess.Popen(self.command(sys.executable, *args), env=self.env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        while run.poll() is None:
            self.listening()
            if watch is not None:
                watch(_tree())
            time.sleep(0.2)
        out_text, err_text = run.communicate()
        assert run.returncode == 0, err_text[-3000:]
        return {**json.loads(out_text), "stderr": err_text}

    def stop(self) -> list[str]:
        """Stop both nodes by PID (SIGTERM: ``ray start --block`` stops its processes); returns what is left."""
        tree = _tree()
        below = set().union(*(_below(tree, node.pid) for node in self.nodes.values())) if self.nodes else set()
        for node in self.nodes.values():
            node.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            node.wait(timeout=60)
        deadline = time.monotonic() + 30
        while (left := [pid for pid in below if _process(pid)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        names = [alive[1][:80] for pid in left if (alive := _process(pid))]
        for pid in left:  # the test's own leftovers, if any, are removed (and reported)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.anchor.kill()
        self.anchor.wait()
        shutil.rmtree(self.temp, ignore_errors=True)
        return names


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = [tool for tool in ("unshare", "nsenter", "ip", "ss") if shutil.which(tool) is None]
    if missing or subprocess.run(["unshare", "-rn", "true"]).returncode:
        pytest.skip(f"this machine lets no user make a network namespace (unshare -rn; missing: {missing or 'none'}), "
                    "which keeps a two-node Ray cluster on loopback")
    made = Cluster(tmp_path_factory.mktemp("ray-cluster"))
    try:
        made.start()
        yield made
    finally:
        left = made.stop()
    assert not left, f"still running after both nodes were stopped: {left}"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return photo_folder(tmp_path_factory.mktemp("photos"), "celebrity5")


@pytest.fixture(scope="module")
def local_index(photos, tmp_path_factory) -> Path:
    import facetwin

    out = tmp_path_factory.mktemp("local") / "index"
    facetwin.index([photos], out, engine="local", progress=False)
    return out


def test_a_two_node_cluster_started_by_ray_start_equals_in_process(cluster, photos, local_index, tmp_path):
    out = tmp_path / "ray-index"
    nodes: dict[int, str] = {}  # embedding worker pid -> the node it ran under

    def watch(tree):
        for pid, (_, command) in tree.items():
            if "Embedder" in command and pid not in nodes:
                nodes[pid] = cluster.node_of(pid, tree)

    summary = cluster.index(photos, out, "--shard-photos", "25", watch=watch)
    assert set(nodes.values()) == {"head", "worker"}, nodes  # both nodes embedded faces
    assert summary["engine"] == "ray" and summary["details"]["workers"] == 2
    assert_same_faces(local_index, out)
    assert photos_of(local_index) == photos_of(out)
    errors = {Path(e["path"]).name for e in summary["errors"]}
    assert {"broken.jpg", "empty.jpg"} <= errors and summary["skipped"] == {".md": 1, ".bin": 1}
    assert any(name == "gcs_server" for _, name in cluster.sockets), cluster.sockets
    assert all(address.startswith(LOOPBACK) for address, _ in cluster.sockets), sorted(cluster.sockets)
    noise = [line for line in summary["stderr"].splitlines() if line.strip()]
    assert len(noise) <= 2, noise  # no flood of Ray warnings


def test_a_killed_worker_loses_nothing(cluster, photos, local_index, tmp_path):
    out = tmp_path / "ray-killed"
    killed: list[str] = []

    def killer(tree):
        if killed or not list((out / "shards").glob("shard-*.parquet")):
            return
        for pid, (_, command) in tree.items():
            if "Embedder" in command and "IDLE" not in command and cluster.node_of(pid, tree):
                os.kill(pid, signal.SIGKILL)
                killed.append(f"{pid} {command.strip()}")
                return

    summary = cluster.index(photos, out, "--shard-photos", "5", watch=killer)
    assert killed, "no embedding worker was found to kill while the run was going"
    print(f"killed {killed[0]}; rows delivered twice and dropped: {summary['details']['repeated_rows_dropped']}")
    assert summary["todo"] == len(photos_of(local_index))
    assert_same_faces(local_index, out)
    assert photos_of(local_index) == photos_of(out)


def test_a_wrong_token_is_one_sentence(cluster, photos, tmp_path):
    env = {**cluster.env(), "RAY_AUTH_TOKEN": "0" * 64, "RAY_gcs_server_port_wait_time_s": "2"}  # try twice
    args = ["-m", "facetwin.cli", "index", photos, "--out", tmp_path / "index", "--ray-address", f"127.0.0.1:{PORT}"]
    done = subprocess.run(cluster.command(sys.executable, *args), env=env, capture_output=True, text=True, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert last.startswith(f"facetwin: error: cannot reach Ray at 127.0.0.1:{PORT}: it refused this process's token")
    assert cluster.alive_nodes() == 2


def test_a_missing_token_file_is_one_sentence(photos, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(tmp_path / "no-token")}
    args = ["-m", "facetwin.cli", "index", photos, "--out", tmp_path / "index", "--ray-address", "127.0.0.1:1"]
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    said = done.stderr.strip()
    assert "\n" not in said and said.startswith("facetwin: error: cannot reach Ray at 127.0.0.1:1: this process has no "
                                                "usable token (RAY_AUTH_TOKEN_PATH is set but file cannot be opened")
    assert str(tmp_path / "no-token") in said and said.endswith("as for ray start).")

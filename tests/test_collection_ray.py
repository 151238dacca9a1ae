"""The Ray engine on a real 2-node Ray cluster (two nodes of one CPU each): same faces as in-process, and a run
that loses a worker (killed by PID) still completes with no face missing and none twice."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from collection_helpers import assert_same_faces, photo_folder, photos_of

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return photo_folder(tmp_path_factory.mktemp("photos"), "celebrity5")


@pytest.fixture(scope="module")
def local_index(photos, tmp_path_factory) -> Path:
    import facetwin

    out = tmp_path_factory.mktemp("local") / "index"
    facetwin.index([photos], out, engine="local", progress=False)
    return out


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    src = str(Path(__file__).resolve().parents[1] / "src")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()


def _descendants(root: int) -> dict[int, str]:
    """Processes below ``root`` (this test's Ray cluster only, never anyone else's) and their command lines."""
    parents, cmds = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmds[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    found, frontier = {}, {root}
    while frontier:
        children = {pid for pid, ppid in parents.items() if ppid in frontier and pid not in found}
        found.update({pid: cmds.get(pid, "") for pid in children})
        frontier = children
    return found


def test_two_node_cluster_equals_in_process(cluster, photos, local_index, tmp_path):
    import facetwin

    out = tmp_path / "ray-index"
    seen: dict[int, int] = {}  # embedding worker pid -> parent (its node's raylet)
    done = threading.Event()

    def watch():
        while not done.is_set():
            for pid, cmd in _descendants(os.getpid()).items():
                if "Embedder" in cmd:
                    try:
                        seen[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                    except (OSError, ValueError):
                        pass
            done.wait(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        summary = facetwin.index([photos], out, ray_address=cluster.address, progress=False, shard_photos=25)
    finally:
        done.set()
        thread.join()
    # a worker's short-lived children (e.g. the helper process ``import openvino`` starts) carry its command line
    nodes = {parent for pid, parent in seen.items() if parent not in seen}
    assert len(nodes) == 2, f"embedding workers ran under {len(nodes)} node(s): {seen}"
    assert summary.engine == "ray"
    assert summary.details["workers"] == 2
    assert_same_faces(local_index, out)
    assert photos_of(local_index) == photos_of(out)
    errors = {Path(e["path"]).name for e in summary.errors}
    assert {"broken.jpg", "empty.jpg"} <= errors and summary.skipped == {".md": 1, ".bin": 1}


def test_killed_worker_loses_nothing(cluster, photos, local_index, tmp_path):
    import facetwin

    out = tmp_path / "ray-killed"
    killed: list[str] = []

    def killer():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            if len(list((out / "shards").glob("shard-*.parquet"))) >= 1:
                for pid, cmd in _descendants(os.getpid()).items():
                    if "Embedder" in cmd and "IDLE" not in cmd:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(f"{pid} {cmd.strip()}")
                        break
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    summary = facetwin.index([photos], out, ray_address=cluster.address, progress=False, shard_photos=5)
    thread.join(timeout=1)
    assert killed, "no embedding worker was found to kill while the run was going"
    print(f"killed {killed[0]}; rows delivered twice and dropped: {summary.details['repeated_rows_dropped']}")
    assert summary.todo == len(photos_of(local_index))
    assert_same_faces(local_index, out)
    assert photos_of(local_index) == photos_of(out)

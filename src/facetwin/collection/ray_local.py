"""The driver's side of the private Ray of one run (:mod:`facetwin.collection.ray_supervisor` is the other side).

``facetwin index --workers N`` without ``--ray-address`` never joins a Ray the user did not name (``RAY_ADDRESS``,
a cluster started earlier on this machine): it starts its own through the supervisor, which binds every Ray server
to 127.0.0.1, protects the cluster with a token of its own, and removes every Ray process when this process lets go
of it, or dies. :func:`private_ray` is the whole life of such a cluster, as a context manager.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from facetwin.errors import FacetwinError

SUPERVISOR = Path(__file__).with_name("ray_supervisor.py")
STOP_TIMEOUT = 30.0  # seconds the supervisor gets to remove the cluster once this process lets go of it
LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray takes 127.0.0.1 as this node's address


@contextlib.contextmanager
def private_ray(cpus: int):
    """Start a private Ray of ``cpus`` CPUs; yields its address, with this process set up to join it (loopback,
    the cluster's token). On leaving, the supervisor removes the cluster and this process's settings are restored."""
    supervisor = subprocess.Popen(
        [sys.executable, str(SUPERVISOR), str(int(cpus))], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, start_new_session=True,  # a Ctrl-C in the terminal is for this process only
    )
    try:
        words = supervisor.stdout.readline().decode(errors="replace").split()
        if len(words) != 3 or words[0] != "address":
            raise FacetwinError(f"cannot start a local Ray ({' '.join(words[1:]) or 'the supervisor stopped'}).")
        with _joining(words[2]):
            yield words[1]
    finally:
        supervisor.stdin.close()  # the supervisor stops Ray and removes what is left of it
        try:
            supervisor.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            supervisor.kill()  # its ray start then gets SIGTERM from the kernel (PR_SET_PDEATHSIG)
        supervisor.stdout.close()


@contextlib.contextmanager
def _joining(token: str):
    """This process joins the private cluster: loopback as the node's address and the cluster's token, in the
    environment and in Ray's cached settings (Ray may have been imported before); all restored afterwards."""
    wanted = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, LOOPBACK: "0"}
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    _refresh()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _refresh()


def _refresh() -> None:
    """Make an imported Ray read the environment again, as it does when imported: its config (the token mode),
    its token, and whether this node joins others by its network address (``ray_constants``)."""
    if "ray" not in sys.modules:
        return  # Ray reads the environment when it is imported
    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    ray_constants.ENABLE_RAY_CLUSTER = ray_constants.env_bool(LOOPBACK, not ray_constants.IS_WINDOWS_OR_OSX)


__all__ = ["private_ray"]

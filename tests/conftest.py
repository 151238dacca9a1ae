"""Shared test fixtures: the real data in ../shared, an isolated FACETWIN_HOME, a live server, the SFace model."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"
FIXTURES = SHARED / "fixtures"


def missing_shared_note() -> str | None:
    """What a run without ``../shared`` skips, and where the data comes from (None when it is there)."""
    if DATA.is_dir():
        return None
    return (
        f"facetwin: {SHARED} is absent, so the tests that need real face photos (LFW, AT&T and other sets in "
        "shared/data) or pretrained research weights (shared/weights) skip, each naming the file it needs; put the "
        "project's shared/ folder beside this checkout to run them"
    )


def pytest_sessionstart(session) -> None:
    """Say it in one line before the first test, also under ``-q`` (which hides pytest's report header)."""
    note = missing_shared_note()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if note and reporter is not None:
        reporter.write_line(note)


# A process's peak memory is its resident base plus its heaviest test. The VGG-Face tests (about 2 GB above the
# base each) run first, before the other modules' imports and module-scoped models have raised that base.
HEAVY_FIRST = ("test_vggface.py", "test_adapt.py")  # the heaviest first


def pytest_collection_modifyitems(session, config, items) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: every other order is kept


def need(path: Path) -> Path:
    """Return ``path``, or skip the test with a reason when the shared asset is absent."""
    if not path.exists():
        pytest.skip(f"shared asset {path} is absent")
    return path


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory):
    """The whole session (and every process it starts) writes caches into a temporary folder, never into
    the user's ``~/.cache``: FACETWIN_HOME, matplotlib's config and XDG caches."""
    root = tmp_path_factory.mktemp("session-home")
    saved = {key: os.environ.get(key) for key in ("FACETWIN_HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME")}
    os.environ.update(
        FACETWIN_HOME=str(root / "facetwin"), MPLCONFIGDIR=str(root / "matplotlib"), XDG_CACHE_HOME=str(root / "xdg")
    )
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module", autouse=True)
def _return_memory():
    """After each test module (and its module-scoped models): collect, and hand the freed heap back to the system,
    which glibc otherwise keeps, so that one module's large models do not raise the next module's peak."""
    yield
    find = sys.modules.get("facetwin.collection.find")
    if find is not None:  # facetwin.find() keeps a Finder (a model and a search graph) per index it has searched
        find._finders.clear()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@pytest.fixture
def facetwin_home(tmp_path, monkeypatch) -> Path:
    """A private cache folder for one test."""
    home = tmp_path / "facetwin-home"
    monkeypatch.setenv("FACETWIN_HOME", str(home))
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app):
    """A real uvicorn server for ``app`` in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def model():
    need(DATA / "face_recognition_examples")
    import facetwin.loading

    return facetwin.loading.load("sface")

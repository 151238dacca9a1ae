"""The service's throughput modes (replicas, batch) answer exactly what the one-call-at-a-time mode answers."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest

from conftest import DATA, need, running

EXAMPLES = DATA / "face_recognition_examples"
PAIRS = [
    ("obama/obama.jpg", "obama/obama1.jpg"),
    ("obama/obama2.jpg", "biden/biden.jpg"),
    ("biden/biden.jpg", "biden/biden2.jpg"),
    ("kit_harington/john1.jpeg", "rose_leslie/img1.jpg"),
]


def photo(rel: str) -> tuple[str, bytes, str]:
    path = need(EXAMPLES / rel)
    return path.name, path.read_bytes(), "image/jpeg"


def hammer(url: str, rounds: int = 2) -> dict:
    """Every pair verified and every photo embedded, by 8 clients at once; ``{request: answer}``."""
    jobs = [("verify", pair) for pair in PAIRS] + [("embed", (rel,)) for rel in sorted({r for p in PAIRS for r in p})]
    jobs = jobs * rounds
    answers: dict = {}
    lock = threading.Lock()

    def client(mine):
        with httpx.Client(base_url=url, timeout=120) as c:
            for kind, rels in mine:
                if kind == "verify":
                    r = c.post("/v1/verify", files={"a": photo(rels[0]), "b": photo(rels[1])})
                    doc = r.json()
                    answer = (r.status_code, doc["same"], doc["distance"])
                else:
                    r = c.post("/v1/embed", files={"image": photo(rels[0])})
                    answer = (r.status_code, None, np.asarray(r.json()["embedding"]))
                with lock:
                    answers.setdefault((kind, rels), []).append(answer)

    threads = [threading.Thread(target=client, args=(jobs[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(v) for v in answers.values()) == len(jobs)
    return answers


@pytest.fixture(scope="module")
def lock_answers(model):
    from facetwin.service import create_app

    with running(create_app(model, api_key=None, workers_mode="lock")) as url:
        return hammer(url, rounds=1)


@pytest.mark.parametrize("mode", ["replicas", "batch"])
def test_throughput_mode_answers_like_lock(model, lock_answers, mode):
    from facetwin.service import create_app

    with running(create_app(model, api_key=None, workers_mode=mode, workers=2)) as url:
        assert httpx.get(url + "/healthz").json()["workers"]["mode"] == mode
        answers = hammer(url)
    for key, got in answers.items():
        status, same, value = lock_answers[key][0]
        for g_status, g_same, g_value in got:
            assert g_status == status == 200
            assert g_same == same
            np.testing.assert_allclose(g_value, value, atol=2e-5)


def test_batcher_batches_concurrent_crops(model):
    """Eight callers at once share trunk calls, and each gets the embedding of its own crop."""
    from facetwin.service.workers import Batcher

    crops = np.stack([model.face_crops(need(EXAMPLES / r))[0].crop for p in PAIRS for r in p])
    alone = model.embed_crops(crops)
    batcher = Batcher(model, window=0.2)
    out = [None] * len(crops)

    def one(i):
        out[i] = batcher.embed(crops[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(crops))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        batcher.close()
    assert batcher.batches < len(crops)
    np.testing.assert_allclose(np.concatenate(out), alone, atol=2e-5)


def test_unknown_mode_is_one_clear_error(model):
    from facetwin.errors import FacetwinError
    from facetwin.service import create_app

    with pytest.raises(FacetwinError, match="unknown workers mode 'threads'"):
        create_app(model, api_key=None, workers_mode="threads")


def test_cli_offers_every_mode():
    from facetwin.cli.serve import WORKERS_MODES
    from facetwin.service.workers import DEFAULT_MODE, MODES

    assert WORKERS_MODES == MODES and DEFAULT_MODE in MODES


def test_shutdown_stops_the_model_workers(model):
    """The app's lifespan closes its workers: no batching thread (holding the model) outlives the server."""
    from facetwin.service.app import create_app

    app = create_app(model, workers_mode="batch", workers=2)
    thread = app.state.backend.workers.batcher._thread
    with running(app) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert thread.is_alive()
    thread.join(timeout=5)
    assert not thread.is_alive()

"""The Collection view (``facetwin serve --index``) over HTTP and in Debian chromium, driven by Playwright."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from facetwin.collection import cluster_store, people

from cluster_helpers import add_shard
from conftest import DATA, need, running
from test_service_browser import ARGS, CHROMIUM, save_screenshot

BBT = DATA / "faceapi_bbt"


@pytest.fixture(scope="module")
def index(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("collection") / "index"
    add_shard(root, model, sorted(need(BBT).glob("*/*.png")))
    people.cluster_index(root)
    return root


def test_collection_endpoints(model, index):
    from facetwin.service import create_app

    with running(create_app(model, api_key=None, index_path=index)) as url:
        doc = httpx.get(f"{url}/v1/clusters", params={"limit": 3, "faces": 2}, timeout=60).json()
        assert doc["clustered"] and len(doc["items"]) == 3 and doc["clusters"] >= 8
        sizes = [c["faces"] for c in doc["items"]]
        assert sizes == sorted(sizes, reverse=True) and all(len(c["face_ids"]) <= 2 for c in doc["items"])
        thumb = httpx.get(f"{url}/v1/faces/{doc['items'][0]['face_ids'][0]}/thumbnail", timeout=60)
        assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size == (112, 112)
        missing = httpx.get(f"{url}/v1/faces/999999/thumbnail")
        assert missing.status_code == 404 and "no face 999999" in missing.json()["error"]
        bad = httpx.post(f"{url}/v1/clusters/424242/name", data={"name": "x"})
        assert bad.status_code == 404 and "no cluster 424242" in bad.json()["error"]
        again = httpx.post(f"{url}/v1/clusters/run", timeout=300).json()
        assert again["new_faces"] == 0 and again["clusters"] == doc["clusters"]
    with running(create_app(model, api_key=None)) as url:
        assert httpx.get(f"{url}/v1/clusters").status_code == 503


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed")
def test_collection_page_names_a_cluster(model, index, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from facetwin.service import create_app

    biggest = next(iter(cluster_store.load(index).sizes()))
    with running(create_app(model, api_key=None, index_path=index)) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{url}/collection")
        page.wait_for_selector("article.cluster")
        first = page.locator("article.cluster").first
        assert first.get_attribute("data-cluster") == str(biggest)  # biggest first
        page.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every(i => i.naturalWidth > 0)",
                               timeout=60_000)
        first.locator("input[type=text]").fill("Ada Lovelace")
        first.locator("button[type=submit]").click()
        page.wait_for_selector("#status:has-text('is now Ada Lovelace')")
        assert cluster_store.load(index).names[biggest] == "Ada Lovelace"
        page.reload()
        page.wait_for_selector("article.cluster.named")
        assert page.locator("article.cluster").first.locator("input[type=text]").input_value() == "Ada Lovelace"
        assert "1 named" in page.inner_text("#summary")
        page.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every(i => i.naturalWidth > 0)",
                               timeout=60_000)
        save_screenshot(page, tmp_path, "collection.png")
        browser.close()
        assert not errors, errors


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed")
def test_without_an_index_update_clusters_is_disabled_with_the_reason(model):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from facetwin.service import create_app

    with running(create_app(model, api_key=None)) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 700})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        answer = httpx.get(f"{url}/v1/clusters")
        reason = answer.json()["error"]  # the server's own sentence, shown as it is
        assert answer.status_code == 503 and "no index" in reason
        page.goto(f"{url}/collection")
        page.wait_for_selector("#status:has-text('no index')")
        assert page.is_disabled("#run") and page.get_attribute("#run", "title") == reason
        assert page.inner_text("#status") == reason and page.inner_text("#summary") == "no index"
        page.click("#run", force=True)  # a click on the disabled button sends nothing
        assert page.inner_text("#status") == reason
        browser.close()
        assert not errors, errors


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed")
def test_both_pages_have_the_same_navigation(model, index):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from facetwin.service import create_app

    def labels(page) -> list[str]:
        return [t.strip() for t in page.locator("header nav > *").all_inner_texts()]

    with running(create_app(model, api_key=None, index_path=index)) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 700})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector("#server-info:has-text('model')")
        assert labels(page) == ["Verify", "People", "Collection"]
        page.click("nav >> text=Collection")
        page.wait_for_selector("article.cluster")
        assert labels(page) == ["Verify", "People", "Collection"]
        assert page.is_enabled("#run")  # an index is served: clustering can run
        page.click("nav >> text=People")  # lands on the People view of the main page, not on Verify
        page.wait_for_selector("#view-people:not([hidden])")
        assert page.is_hidden("#view-verify") and page.url.endswith("/#people")
        page.click("#tab-verify")
        assert page.is_visible("#view-verify") and not page.url.endswith("#people")
        page.reload()
        assert page.is_visible("#view-verify")
        browser.close()
        assert not errors, errors

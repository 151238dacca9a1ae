"""``facetwin cluster`` says who is likely in each cluster (the nearest person of the model's default gallery, with
the distance) and shows a sample photo, on a real index of real photos."""

from __future__ import annotations

import json
from pathlib import Path

from index_helpers import build, cli, photo_copy


def test_cluster_summary_names_the_likely_person_and_a_sample_photo(tmp_path, facetwin_home):
    photos = photo_copy(tmp_path)
    index = build(tmp_path, photos)
    code, out, _ = cli("cluster", "list", index)
    assert code == 0 and "likely" not in out  # no gallery yet: nobody to compare with
    assert "e.g. " + str(photos) in out  # but a sample photo for every cluster
    assert cli("gallery", "import", index)[0] == 0  # the default gallery: one person per folder
    code, out, _ = cli("cluster", "list", index, "--json")
    doc = json.loads(code == 0 and out)
    assert doc["gallery"].endswith("sface.db")
    for item in doc["list"]:
        folder = Path(item["sample"]).parent.name
        assert item["likely"]["person"] == folder and item["likely"]["within_threshold"], item
        assert 0 <= item["likely"]["distance"] < 0.67
    code, out, _ = cli("cluster", index)
    obama = next(line for line in out.splitlines() if "likely obama" in line)
    assert "faces" in obama and "e.g. " + str(photos / "obama") in obama

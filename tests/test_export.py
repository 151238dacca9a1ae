"""`facetwin export`: one ONNX file (trunk + head) that reproduces facetwin's embeddings in onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, need


def _crops(model, folder: Path, count: int) -> np.ndarray:
    files = sorted(need(folder).rglob("*.jpg"))[:count]
    return np.stack([model.face_crops(str(f), no_face="center")[0].crop for f in files])


def _exported(path: Path, crops: np.ndarray):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("crops", "tensor(uint8)", ["N", 112, 112, 3])
    assert out.name == "embedding"
    return session.run(None, {"crops": crops})[0], session.get_modelmeta().custom_metadata_map


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_export_backbone_matches_facetwin_embeddings(tmp_path, capsys):
    import facetwin
    from facetwin.cli import main

    out = tmp_path / "sface.onnx"
    assert main(["export", "sface", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(out) and summary["bytes"] == out.stat().st_size
    model = facetwin.load("sface", precision="fp32")  # the file is the fp32 graph
    crops = _crops(model, DATA / "lfw-dev" / "images", 24)
    embeddings, meta = _exported(out, crops)
    assert _cosines(embeddings, model.embed_crops(crops)).min() >= 0.9999
    # the default precision (bf16 on CPUs with native bfloat16) stays close to it
    assert _cosines(embeddings, facetwin.load("sface").embed_crops(crops)).min() >= 0.9995
    assert meta["facetwin.distance"] == "cosine"
    assert float(meta["facetwin.threshold"]) == pytest.approx(model.threshold)
    assert meta["facetwin.fingerprint"] == model.fingerprint
    assert "38.2946" in meta["facetwin.alignment"] and "YuNet" in meta["facetwin.detection"]
    assert "RGB" in meta["facetwin.graph_preprocessing"]


def test_export_run_dir_includes_the_trained_head(tmp_path, facetwin_home):
    import facetwin
    from facetwin.cli import main

    src = need(DATA / "att_faces")
    data = tmp_path / "data"
    for k in range(1, 7):
        (data / f"s{k}").mkdir(parents=True)
        for f in sorted((src / f"s{k}").iterdir())[:6]:
            (data / f"s{k}" / f.name).symlink_to(f)
    run = tmp_path / "run"
    facetwin.train(data, run, backbone="sface", epochs=4, lr=3e-2, keep="final", progress=False)
    model = facetwin.load(str(run))
    assert any(float(p.detach().abs().max()) > 0 for p in model.head.parameters())  # a head that is not the identity
    out = tmp_path / "run.onnx"
    assert main(["export", str(run), "--out", str(out)]) == 0
    crops = _crops(model, DATA / "lfw-dev" / "images", 12)
    embeddings, meta = _exported(out, crops)
    fp32 = facetwin.load("sface", precision="fp32").backbone.trunk(crops)  # the file is the fp32 graph
    assert _cosines(embeddings, model.embed_features(fp32)).min() >= 0.9999
    plain = facetwin.load("sface").embed_crops(crops)
    assert _cosines(embeddings, plain).min() < 0.9999  # the head changed something, and the file has it
    assert meta["facetwin.distance"] == "euclidean"


def test_export_refuses_what_it_cannot_export(tmp_path, capsys):
    from facetwin.cli import main

    assert main(["export", "vggface", "--out", str(tmp_path / "v.onnx")]) == 2
    assert "not exportable" in capsys.readouterr().err
    assert not (tmp_path / "v.onnx").exists()

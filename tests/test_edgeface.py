"""EdgeFace (Idiap's EdgeNeXt-XS/XXS) in facetwin's own PyTorch code, against the reference outputs of the upstream
model definition (``../shared/weights/edgeface-reference.npz``) and on real lfw-dev faces.

Every test skips with a reason when ``../shared/weights`` (or, for the backbone, lfw-dev) is absent.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from facetwin.backbones.edgeface import runtime as R
from facetwin.backbones.edgeface import weights as W
from facetwin.backbones.edgeface.network import PARTS, EdgeFace, preprocess
from facetwin.errors import FacetwinError

from conftest import DATA, SHARED, need

WEIGHTS = SHARED / "weights"
FILES = {"xs": "edgeface_xs_q.pt", "xxs": "edgeface_xxs_q.pt"}
SHA256 = {  # ../shared/weights/README.md
    "xs": "a31314377876ab9fa2a75e5638bc528efe79fd17d5c9c0a228fb7f846d7581a6",
    "xxs": "46be7cc7e8d6e23501c0627fe5fbef101922ee9b85ccbef476987ab1a320b053",
}
LFW = DATA / "lfw-dev" / "images"
PEOPLE = ["Andre_Agassi", "Colin_Powell", "Tony_Blair", "Adam_Sandler"]  # two photos each


def weights_file(variant: str):
    return need(WEIGHTS / FILES[variant])


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(need(WEIGHTS / "edgeface-reference.npz")) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def networks() -> dict[str, W.EdgeFaceWeights]:
    return {variant: W.load(weights_file(variant)) for variant in FILES}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("variant", FILES)
def test_quantised_network_equals_upstream_stage_by_stage(variant, reference):
    """Our modules, quantised exactly as upstream and loaded strictly from the weights-only unpickler, give the
    reference's stem, stage and embedding outputs."""
    with warnings.catch_warnings():  # torch 2.13 deprecates quantised tensors and torch.ao.quantization
        warnings.simplefilter("ignore")
        state = torch.load(weights_file(variant), map_location="cpu", weights_only=True)
        quantised = torch.ao.quantization.quantize_dynamic(EdgeFace(variant).eval(), {nn.Linear}, torch.qint8)
    quantised.load_state_dict(state, strict=True)
    x = preprocess(reference["crops_rgb_uint8"])
    with torch.inference_mode():
        for i, part in enumerate(PARTS):
            x = quantised(x, i, i + 1)
            assert np.abs(x.numpy() - reference[f"{variant}_{part}"]).max() <= 1e-4, part


@pytest.mark.parametrize("variant", FILES)
def test_float_network(variant, reference, networks):
    """The float network (dequantised linear weights) is a plain module whose parts can be cut. It follows the
    quantised reference stage by stage (each part fed the reference's input: cosine >= 0.99) and in the end about as
    closely as the quantised network follows itself between batch sizes (its activations are rounded with a range
    taken over the batch: 0.915 (XS) / 0.927 (XXS) from batch 1 to batch 6), and does not depend on the batch."""
    loaded = networks[variant]
    assert (loaded.variant, loaded.form, loaded.sha256) == (variant, "quantised", SHA256[variant])
    network = loaded.network
    assert not any("quantized" in type(m).__module__ for m in network.modules())
    assert all(p.dtype == torch.float32 for p in network.parameters())
    assert len(network.parts) == len(PARTS) and network.parts[:2] == [network.stem, network.stages[0]]
    x = preprocess(reference["crops_rgb_uint8"])
    with torch.inference_mode():
        for i, part in enumerate(PARTS):
            given = x if i == 0 else torch.from_numpy(reference[f"{variant}_{PARTS[i - 1]}"])
            assert cosines(network(given, i, i + 1).numpy(), reference[f"{variant}_{part}"]).min() >= 0.99, part
        embedding = network(x).numpy()
        one_by_one = np.concatenate([network(x[i : i + 1]).numpy() for i in range(len(x))])
        cut = network(network(x, 0, 3), 3).numpy()
    assert cosines(embedding, reference[f"{variant}_embedding"]).min() >= 0.92
    np.testing.assert_allclose(one_by_one, embedding, atol=1e-5)
    np.testing.assert_allclose(cut, embedding, atol=1e-6)


def test_float_state_dict_file(tmp_path, networks):
    """A float state dict (the form of upstream's ``edgeface_xxs.pt``) is recognised by its keys and gives the same
    network."""
    path = tmp_path / "edgeface_xxs.pt"
    torch.save(networks["xxs"].network.state_dict(), path)
    loaded = W.load(path)
    assert (loaded.variant, loaded.form) == ("xxs", "float") and loaded.sha256 not in W.KNOWN
    for key, value in networks["xxs"].network.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value), key


def _error(path, variant=None) -> str:
    with pytest.raises(FacetwinError) as caught:
        W.load(path, variant)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and message.endswith(".") and "\n" not in message
    return message


def test_wrong_files(tmp_path, networks):
    data = weights_file("xxs").read_bytes()
    truncated = tmp_path / "edgeface_xxs_q.pt"
    truncated.write_bytes(data[: len(data) // 2])
    assert "not a readable PyTorch weights file" in _error(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("not a torch file\n")
    assert "not a readable PyTorch weights file" in _error(text)
    assert "no such EdgeFace weights file" in _error(tmp_path / "absent.pt")

    renamed = tmp_path / "edgeface_xs_q.pt"  # the XXS file under the XS name: known by its hash
    shutil.copyfile(weights_file("xxs"), renamed)
    assert "holds EdgeFace-XXS weights, not EdgeFace-XS" in _error(renamed, "xs")
    resaved = tmp_path / "edgeface_xs.pt"  # an XXS state dict of unknown hash: known by its stem
    torch.save(networks["xxs"].network.state_dict(), resaved)
    assert "holds EdgeFace-XXS weights, not EdgeFace-XS" in _error(resaved, "xs")

    other = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, other)
    assert "is not an EdgeFace-XS or -XXS state dict" in _error(other)
    state = networks["xs"].network.state_dict()
    state.pop("model.head.fc.bias")
    incomplete = tmp_path / "incomplete.pt"
    torch.save(state, incomplete)
    assert "is not an EdgeFace-XS state dict: it lacks model.head.fc.bias" in _error(incomplete)
    pickled = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), pickled)  # a whole pickled module: refused by the weights-only unpickler
    assert "not a readable PyTorch weights file" in _error(pickled)


def test_exported_graph_agrees_with_pytorch(reference, networks, facetwin_home):
    network = networks["xs"].network
    path = R.exported(network, networks["xs"].sha256)
    assert path.parent == facetwin_home / "compiled" and R.exported(network, networks["xs"].sha256) == path
    x = preprocess(reference["crops_rgb_uint8"])
    with torch.inference_mode():
        expected = network(x).numpy()
    for engine, precision in (("onnxruntime", "fp32"), ("openvino", "fp32")):
        got = R.engine(path, engine, precision, 2)(x.numpy())
        assert np.abs(got - expected).max() <= 1e-4, engine
    got = R.engine(path, "openvino", "bf16", 2)(x.numpy()[:1])
    assert cosines(got, expected[:1]).min() >= 0.999


@pytest.fixture(scope="module")
def lfw_crops() -> tuple[np.ndarray, list[str]]:
    from facetwin.vision.align import InputSpec
    from facetwin.vision.faces import face_crops

    crops, labels = [], []
    for person in PEOPLE:
        for number in (1, 2):
            path = need(LFW / person / f"{person}_{number:04d}.jpg")
            crops.append(face_crops(path, InputSpec(112, "five_point"))[0].crop)
            labels.append(person)
    return np.stack(crops), labels


def test_backbone_on_real_faces(lfw_crops, facetwin_home):
    from facetwin.backbones.edgeface.backbone import EdgeFaceBackbone

    crops, labels = lfw_crops
    backbone = EdgeFaceBackbone("xxs", weights_file("xxs"), batch_size=3)
    assert backbone.name == "edgeface-xxs" and backbone.feature_dim == backbone.embedding_dim == 512
    description = backbone.describe()
    assert description["weights_sha256"] == SHA256["xxs"]
    assert (description["variant"], description["form"], description["input"]) == (
        "xxs", "quantised", {"size": 112, "alignment": "five_point"})
    assert not any(p.requires_grad for p in backbone.network.parameters())
    features = backbone.trunk(crops)
    assert features.shape == (8, 512) and features.dtype == np.float32
    with torch.inference_mode():
        exact = backbone.network(preprocess(crops)).numpy()
    assert cosines(features, exact).min() >= 0.999
    e = backbone.embed_features(features)
    similarity = e @ e.T
    same = np.equal.outer(labels, labels) & ~np.eye(len(labels), dtype=bool)
    different = ~np.equal.outer(labels, labels)
    assert similarity[same].min() > 0.4 > 0.25 > similarity[different].max()  # measured: >= 0.47, <= 0.18
    with pytest.raises(FacetwinError, match="holds EdgeFace-XXS weights, not EdgeFace-XS"):
        EdgeFaceBackbone("xs", weights_file("xxs"))
    with pytest.raises(FacetwinError, match="needs its weights file"):
        EdgeFaceBackbone("xs")

"""Fine-tuning the stages of arcface-mbf and edgeface (``--trainable-from``, the paper's preset on them, composites)
with the real weights of ``../shared/weights`` and real lfw-dev faces; skips with a reason when they are absent."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from facetwin.errors import FacetwinError

from conftest import DATA, SHARED, need

WEIGHTS = SHARED / "weights"
ARCFACE = WEIGHTS / "arcface_w600k_mbf_int8.onnx"
XXS = WEIGHTS / "edgeface_xxs_q.pt"
LFW = DATA / "lfw-dev" / "images"
PEOPLE = ["Colin_Powell", "Tony_Blair", "Hugo_Chavez", "Jacques_Chirac", "Jennifer_Capriati", "Lleyton_Hewitt",
          "Laura_Bush", "Nestor_Kirchner", "Andre_Agassi", "Tom_Ridge"]


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    from facetwin.vision.align import InputSpec
    from facetwin.vision.faces import crop_batches

    files = [need(LFW / p / f"{p}_000{i}.jpg") for p in PEOPLE[:4] for i in (1, 2)]
    return np.stack([c for b in crop_batches(((str(f), f) for f in files), InputSpec(112, "five_point"))
                     for c in b.crops])


@pytest.fixture(scope="module")
def arcface():
    from facetwin.backbones.arcface_mbf.backbone import ArcFaceMBF

    return ArcFaceMBF(need(ARCFACE), precision="fp32")


@pytest.fixture(scope="module")
def edgeface():
    from facetwin.backbones.edgeface.backbone import EdgeFaceBackbone

    return EdgeFaceBackbone("xxs", need(XXS), precision="fp32")


def _tail_output(cut_backbone, crops: np.ndarray) -> np.ndarray:
    tail = cut_backbone.make_tail().eval()
    with torch.inference_mode():
        return tail(torch.from_numpy(cut_backbone.trunk(crops))).numpy()


@pytest.mark.parametrize("family", ["arcface", "edgeface"])
def test_every_cut_rebuilds_the_trunk(family, request, crops):
    """Frozen prefix + fresh tail = the whole network, at every stage, by name or by index."""
    from facetwin.training.trainable import cut_backbone

    backbone = request.getfixturevalue(family)
    reference = backbone.trunk(crops)
    names = {"arcface": ["blocks2", "blocks3", "head"],
             "edgeface": ["stage0", "stage1", "stage2", "stage3", "embedding"]}[family]
    for name in names:
        cut = cut_backbone(backbone, name)
        assert cut.describe()["trainable_from"] == name and cut.feature_dim == cut.trunk(crops[:1]).shape[1]
        assert np.abs(_tail_output(cut, crops) - reference).max() <= 1e-4, name
    assert cut_backbone(backbone, "3").cut == {"arcface": "down2", "edgeface": "stage2"}[family]  # 3rd after the stem
    with pytest.raises(FacetwinError, match="cannot be cut at 'stem'"):
        cut_backbone(backbone, "stem")  # its input is the image itself


def test_batch_norm_statistics_stay_unless_asked(arcface, crops):
    from facetwin.training.trainable import cut_backbone

    cut = cut_backbone(arcface, "head")
    x = torch.from_numpy(cut.trunk(crops))
    for train_norms, moves in ((False, False), (True, True)):
        tail = cut.make_tail(train_norms).train()
        norm = tail[-1].features
        before = norm.running_mean.clone()
        tail(x).square().sum().backward()
        assert (not torch.equal(before, norm.running_mean)) == moves
        assert norm.weight.grad is not None  # the affine part trains either way


def test_paper_preset_on_a_trunk_is_the_last_stage_with_tanh():
    from facetwin.training.config import TrainConfig

    c = TrainConfig(backbone="arcface-mbf", preset="paper").resolved()
    assert (c.head, c.trainable_from, c.trunk_lr, c.lr, c.optimizer, c.loss, c.epochs) == (
        "tanh", "head", 1e-3, 1e-3, "adam", "bce", 60)
    c = TrainConfig(backbone="edgeface-xs", preset="paper", trainable_from="stage3", lr=1e-4).resolved()
    assert (c.head, c.trainable_from, c.trunk_lr) == ("tanh", "stage3", 1e-4)


def test_composite_trains_only_the_parts_that_can_be_cut(arcface):
    from facetwin.backbones.composite import Composite
    from facetwin.backbones.sface.backbone import SFace
    from facetwin.training.trainable import cut_backbone
    from facetwin.vision.faces import crop_batches

    composite = Composite([SFace(precision="fp32"), arcface])
    files = [need(LFW / p / f"{p}_0001.jpg") for p in PEOPLE[:3]]
    packed = np.stack([c for b in crop_batches(((str(f), f) for f in files), composite.input) for c in b.crops])
    reference = composite.trunk(packed)
    for where in ("blocks3", "arcface-mbf=blocks3"):
        cut = cut_backbone(composite, where)
        assert cut.cut == "arcface-mbf=blocks3"
        out = _tail_output(cut, packed)
        assert np.array_equal(out[:, :128], reference[:, :128])  # sface: frozen, its embedding passes through
        assert np.abs(out - reference).max() <= 1e-4
        tail = cut.make_tail()
        assert not list(tail.tails[0].parameters()) and list(tail.tails[1].parameters())
    with pytest.raises(FacetwinError, match="no part of sface\\+arcface-mbf can be cut at 'stage3'"):
        cut_backbone(composite, "stage3")
    with pytest.raises(FacetwinError, match="'dlib' is not a part"):
        cut_backbone(composite, "dlib=fc")


@pytest.fixture
def installed(facetwin_home):
    """edgeface-xxs installed in a private FACETWIN_HOME, as `facetwin weights import` does."""
    from facetwin.backbones import licensed
    from facetwin.backbones.registry import entry

    licensed.install(entry("edgeface-xxs"), need(XXS))
    return facetwin_home


def _people(tmp_path, people: int = 6, images: int = 2):
    root = tmp_path / "people"
    for name in PEOPLE[:people]:
        (root / name).mkdir(parents=True)
        for i in range(1, images + 1):
            shutil.copy(need(LFW / name / f"{name}_{i:04d}.jpg"), root / name)
    return root


def test_cli_train_from_a_stage_then_load_and_verify(installed, tmp_path, capsys):
    import facetwin
    from facetwin.cli import main

    data = _people(tmp_path)
    run = tmp_path / "run"
    code = main(["train", str(data), "--out", str(run), "--backbone", "edgeface-xxs", "--trainable-from", "stage3",
                 "--epochs", "1", "--trunk-lr", "1e-3", "--lr", "1e-3", "--keep", "final", "--quiet"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((run / "model.json").read_text())
    assert doc["hyperparameters"]["trainable_from"] == "stage3" and doc["backbone"]["describe"]["trainable_from"]
    assert doc["head"]["trainable_trunk"]["parameters"] > 500_000
    model = facetwin.load(run)
    a, b = (str(data / PEOPLE[0] / f"{PEOPLE[0]}_000{i}.jpg") for i in (1, 2))
    other = str(data / PEOPLE[1] / f"{PEOPLE[1]}_0001.jpg")
    assert model.verify(a, b).distance < model.verify(a, other).distance
    from facetwin.backbones.edgeface.backbone import EdgeFaceBackbone
    from facetwin.training.trainable import cut_backbone

    pretrained = cut_backbone(EdgeFaceBackbone("xxs", need(XXS)), "stage3").make_tail()
    trained = model.head[0]
    assert not torch.equal(pretrained[1].blocks[0].mlp.fc1.weight, trained[1].blocks[0].mlp.fc1.weight)


def test_cli_paper_preset_trains_the_embedding_layer_with_tanh(installed, tmp_path, capsys):
    from facetwin.cli import main

    data = _people(tmp_path)
    run = tmp_path / "paper"
    code = main(["train", str(data), "--out", str(run), "--backbone", "edgeface-xxs", "--preset", "paper",
                 "--epochs", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((run / "model.json").read_text())
    assert doc["head"]["kind"] == "tanh" and doc["hyperparameters"]["trainable_from"] == "embedding"
    assert doc["hyperparameters"]["trunk_lr"] == doc["hyperparameters"]["lr"] == 1e-3


def test_adapt_on_a_composite_trains_only_the_part_with_stages(installed, tmp_path, capsys):
    """`--adapt` on sface+edgeface-xxs: edgeface's recipe cut trains, sface passes its frozen embedding through."""
    import facetwin
    from facetwin.cli import main

    data = _people(tmp_path)
    run = tmp_path / "both"
    code = main(["train", str(data), "--out", str(run), "--backbone", "sface+edgeface-xxs", "--adapt", "--epochs", "1",
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((run / "model.json").read_text())
    assert doc["hyperparameters"]["trainable_from"] == "edgeface-xxs=stage2"
    assert doc["hyperparameters"]["pairs"] == "batch" and doc["training"]["adapt"]["kept_epoch"] in (0, 1)
    tail = facetwin.load(run).head[0]
    assert not list(tail.tails[0].parameters()) and sum(p.numel() for p in tail.tails[1].parameters()) > 100_000

"""Trainable trunk layers (--trainable-from), domain shifts, augmentation and --adapt, on real weights and photos."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

from facetwin.errors import FacetwinError
from facetwin.training import degrade as D

from conftest import DATA, FIXTURES, need

KERAS_H5 = FIXTURES / "vggface-keras" / "vggface_keras_legacy.h5"
LFW_PHOTO = DATA / "lfw-dev" / "images" / "AJ_Cook" / "AJ_Cook_0001.jpg"


def _people(tmp_path, people: int, images: int):
    """A small folder-per-person copy of att_faces (grey 92x112) in tmp_path."""
    root = tmp_path / "people"
    for k in range(1, people + 1):
        src = need(DATA / "att_faces" / f"s{k}")
        (root / f"s{k}").mkdir(parents=True)
        for i in range(1, images + 1):
            shutil.copy(src / f"{i}.pgm", root / f"s{k}" / f"{i}.pgm")
    return root


def test_shifts_are_pure_functions_of_photo_and_seed():
    from facetwin.vision.io import load_image

    image = load_image(need(LFW_PHOTO))
    for name in D.SHIFTS:
        a = D.degrade_photo(name, image, seed=3)
        assert a.shape == image.shape and a.dtype == np.uint8
        assert np.array_equal(a, D.degrade_photo(name, image, seed=3)), name
        assert not np.array_equal(a, image), name
    assert not np.array_equal(D.degrade("nir", image, 1), D.degrade("nir", image, 2))
    grey = D.degrade("nir", image, 0)
    assert np.array_equal(grey[..., 0], grey[..., 2])
    masked = D.degrade_photo("mask", image, 0)
    changed = np.argwhere((masked != image).any(axis=2))
    assert changed[:, 0].min() > 0.4 * image.shape[0]  # below the eyes only
    with pytest.raises(ValueError, match="unknown shift"):
        D.parse_shifts("lowres,fog")


def test_augmentation_is_cached_apart_and_pure():
    from facetwin.training.augment import Augment
    from facetwin.training.features import cache_key

    class Named:  # only describe() and input matter to the key
        from facetwin.vision.align import InputSpec

        input = InputSpec(150, "dlib")

        def describe(self):
            return {"name": "x"}

    aug = Augment(variants=2, seed=0, degrade=("mask",))
    keys = {cache_key(Named()), cache_key(Named(), aug, 1), cache_key(Named(), aug, 2)}
    assert len(keys) == 3 and cache_key(Named(), None, 0) == cache_key(Named())
    crop = np.random.default_rng(0).integers(0, 255, (150, 150, 3), dtype=np.uint8)
    assert np.array_equal(aug.apply(crop, 1), aug.apply(crop, 1))
    assert not np.array_equal(aug.apply(crop, 1), aug.apply(crop, 2))


def test_sface_has_no_trainable_trunk():
    from facetwin.backbones.registry import get_backbone
    from facetwin.training.trainable import cut_backbone

    with pytest.raises(FacetwinError, match="sface has no trainable trunk layers"):
        cut_backbone(get_backbone("sface"), "stage4")


@pytest.fixture(scope="module")
def dlib():
    from facetwin.backbones.dlib.weights import find_dat
    from facetwin.backbones.registry import get_backbone

    try:
        find_dat()
    except FacetwinError as exc:
        pytest.skip(f"the dlib extra is not installed ({exc})")

    return get_backbone("dlib")


@pytest.mark.parametrize("cut", ["stage3", "4", "fc"])
def test_dlib_cut_then_tail_is_the_whole_trunk(dlib, cut):
    from facetwin.training.trainable import cut_backbone

    crops = np.random.default_rng(1).integers(0, 255, (3, 150, 150, 3), dtype=np.uint8)
    cb = cut_backbone(dlib, cut)
    with torch.inference_mode():
        rebuilt = cb.make_tail().eval()(torch.from_numpy(cb.trunk(crops))).numpy()
    assert np.abs(rebuilt - dlib.trunk(crops)).max() < 1e-4
    assert cb.describe()["trainable_from"] == ("stage4" if cut == "4" else cut)
    with pytest.raises(FacetwinError, match="cannot be cut"):
        cut_backbone(dlib, "stage9")


def test_dlib_adapt_run_saves_only_what_changed_and_loads(dlib, tmp_path):
    import facetwin
    from facetwin.training.adapt import adapt_options
    from facetwin.training.run import train

    data = _people(tmp_path, 5, 3)
    options = adapt_options("dlib", {"epochs": 1, "seed": 0})
    summary = train(data, tmp_path / "run", backbone="dlib", progress=False, **options)
    assert summary["adapt"]["fell_back"] == (summary["kept_epoch"] == 0)
    with safe_open(str(tmp_path / "run" / "head.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert all(k.startswith(("head.0.stages.0.", "head.0.fc", "head.2.", "logistic.")) for k in keys), keys
    model = facetwin.load(tmp_path / "run")
    faces = [str(p) for p in sorted((data / "s1").iterdir())[:2]]
    assert model.embed(faces).shape == (2, 128)


@pytest.fixture(scope="module")
def fixture_weights(tmp_path_factory):
    from facetwin.backbones.vggface import weights as W

    return str(W.convert(need(KERAS_H5), tmp_path_factory.mktemp("vgg") / "fixture.safetensors").path)


def _digest(t: torch.Tensor) -> tuple:
    """A tensor's shape and the SHA-256 of its float32 bytes: equal exactly when the weights are."""
    return tuple(t.shape), hashlib.sha256(t.detach().float().contiguous().numpy().tobytes()).hexdigest()


def test_vggface_trainable_from_34_end_to_end_on_the_keras_fixture(fixture_weights, tmp_path):
    """Layers below 34 are not trained (not even saved); fc8 (35) changes; load() rebuilds the model."""
    import facetwin
    from facetwin.backbones.vggface import weights as W
    from facetwin.training.run import train

    data = _people(tmp_path, 3, 2)
    run = tmp_path / "run"
    train(data, run, backbone="vggface", weights=fixture_weights, trainable_from=34, epochs=2, val_fraction=0.0,
          keep="final", lr=1e-2, progress=False)
    source = W.load(fixture_weights).state_dict
    with safe_open(str(run / "head.safetensors"), "pt") as f:
        saved = {k: f.get_tensor(k) for k in f.keys()}
    assert not any(k.startswith("head.0.") and "weight" in k for k in saved)  # the tail at 34: a dropout
    fc8 = [k for k in saved if k.endswith("weight") and saved[k].numel() == 4096 * 2622]
    assert len(fc8) == 1
    fc8_source = [v for k, v in source.items() if v.numel() == 4096 * 2622][0]
    assert not torch.equal(saved[fc8[0]].reshape(-1), fc8_source.float().reshape(-1).to(saved[fc8[0]].dtype))
    fixture = {_digest(v) for v in source.values()}
    del source, fc8_source, saved  # 550 MB: not kept beside the loaded model (the suite's peak memory)
    model = facetwin.load(run)
    frozen = model.backbone.base._trunk
    for layer in frozen.layers:
        for name, p in layer.named_parameters():
            assert _digest(p.data) in fixture, name  # every frozen layer (0..33) still holds the fixture's weights
    assert model.embed([str(p) for p in sorted((data / "s1").iterdir())]).shape[0] == 2


def test_vggface_trainable_from_33_trains_fc7_too(fixture_weights):
    """With K = 33, one optimisation step moves fc7 (the tail) and leaves the frozen part as it was."""
    from facetwin.backbones.registry import get_backbone
    from facetwin.training.config import TrainConfig
    from facetwin.training.fit import fit
    from facetwin.training.trainable import cut_backbone

    cb = cut_backbone(get_backbone("vggface", weights=fixture_weights), 33)
    before = [p.detach().clone() for p in cb.base._trunk.parameters()]
    tail0 = [p.detach().clone() for p in cb.make_tail().parameters()]
    x = np.random.default_rng(0).normal(size=(12, cb.feature_dim)).astype(np.float32)
    labels = np.repeat(np.arange(4), 3)
    config = TrainConfig(backbone="vggface", trainable_from="33", epochs=1, val_fraction=0.0, keep="final", lr=1e-2)
    result = fit(x, labels, cb, config, progress=False)
    tail = list(result.model.head[0].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(tail, tail0, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(cb.base._trunk.parameters(), before, strict=True))


def test_fit_draws_augmented_rows_and_a_frozen_tail_trains_nothing_below(dlib):
    """Augmented copies feed training (validation stays clean); trunk_lr 0 keeps the layers after the cut as they
    were, and the model returned still maps cut features (tail included)."""
    from facetwin.training.config import TrainConfig
    from facetwin.training.fit import fit
    from facetwin.training.trainable import cut_backbone

    cb = cut_backbone(dlib, "fc")
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(40, cb.feature_dim))).astype(np.float32)
    labels = np.repeat(np.arange(10), 4)
    aug = (x[None] + 0.1 * np.abs(rng.normal(size=(2, *x.shape)))).astype(np.float32)
    tuned = fit(x, labels, cb, TrainConfig(backbone="dlib", trainable_from="fc", epochs=2), progress=False,
                augmented=aug)
    assert len(tuned.history) == 3 and "val_auc" in tuned.history[-1]
    frozen = fit(x, labels, cb, TrainConfig(backbone="dlib", trainable_from="fc", trunk_lr=0.0, epochs=2),
                 progress=False, augmented=aug)
    assert torch.equal(frozen.model.head[0].fc.weight, cb.make_tail().fc.weight)
    with torch.inference_mode():
        assert frozen.model.embed(torch.from_numpy(x[:2])).shape == (2, 128)

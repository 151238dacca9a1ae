"""Pair rule, splits, Siamese pieces and the training loop on synthetic features (no backbone needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facetwin.backbones.base import Calibration, InputSpec
from facetwin.core.precision import cpu_flags
from facetwin.training.config import TrainConfig
from facetwin.training.fit import fit
from facetwin.training.pairs import draw_pairs, epoch_rng
from facetwin.training.siamese import (
    Siamese,
    build_head,
    euclidean,
    fit_logistic,
)
from facetwin.training.splits import keras_split_at, split_people


class TableBackbone:
    """The backbone interface over precomputed features (only what the head builder reads)."""

    name = "table"
    input = InputSpec(112, "five_point")
    distance = "cosine"
    calibration = Calibration(1.0, -1.0, 1.0)

    def __init__(self, dim: int):
        self.feature_dim = self.embedding_dim = dim

    def pretrained_head(self):
        return torch.nn.Identity()

    def describe(self):
        return {"name": "table", "dim": self.feature_dim}


def test_pairs_follow_the_paper_rule():
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])  # person 2 has a single image
    a, b, same = draw_pairs(labels, epoch_rng(0, 1))
    n = len(labels)
    # every image is the anchor of exactly one negative pair
    neg = same == 0
    assert sorted(a[neg].tolist()) == list(range(n))
    assert np.all(labels[a[neg]] != labels[b[neg]])
    # every image of a person with >= 2 images has exactly one positive partner, never itself
    pos = same == 1
    assert sorted(a[pos].tolist()) == [i for i in range(n) if i != 5]
    assert np.all(labels[a[pos]] == labels[b[pos]])
    assert np.all(a[pos] != b[pos])
    # order of the paper's loop: (i, pos) then (i, neg)
    assert list(same[:2]) == [1.0, 0.0] and a[0] == a[1] == 0


def test_pairs_are_seeded_and_fresh_per_epoch():
    labels = np.repeat(np.arange(50), 4)
    one = draw_pairs(labels, epoch_rng(3, 1))
    again = draw_pairs(labels, epoch_rng(3, 1))
    other = draw_pairs(labels, epoch_rng(3, 2))
    assert all(np.array_equal(x, y) for x, y in zip(one, again, strict=True))
    assert not np.array_equal(one[1], other[1])


def test_positive_partner_is_uniform_over_the_others():
    labels = np.array([0, 0, 0, 0, 1])
    counts = np.zeros((4, 4))
    for e in range(2000):
        a, b, same = draw_pairs(labels, epoch_rng(0, e))
        for i, j in zip(a[same == 1], b[same == 1], strict=True):
            counts[i, j] += 1
    assert np.all(np.diag(counts) == 0)
    off = counts[~np.eye(4, dtype=bool)]
    assert off.min() > 2000 / 3 * 0.85 and off.max() < 2000 / 3 * 1.15


def test_person_split_is_disjoint_and_sized():
    labels = np.repeat(np.arange(100), 3)
    val = split_people(labels, 0.2, seed=1)
    assert len(np.unique(labels[val])) == 20
    assert not set(labels[val]) & set(labels[~val])
    assert np.array_equal(val, split_people(labels, 0.2, seed=1))
    assert not np.array_equal(val, split_people(labels, 0.2, seed=2))


def test_keras_validation_split_takes_the_last_fifth():
    assert keras_split_at(1000, 0.2) == 800
    assert keras_split_at(11, 0.2) == 8  # int(11 * 0.8)


def test_distance_matches_keras_formula():
    a = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    d = euclidean(a, b)
    assert d[0].item() == pytest.approx(np.sqrt(1e-7))
    assert d[1].item() == pytest.approx(5.0)


def test_logistic_fit_has_negative_slope_and_sensible_threshold():
    rng = np.random.default_rng(0)
    d = np.concatenate([rng.normal(0.6, 0.1, 500), rng.normal(1.4, 0.1, 500)])
    y = np.concatenate([np.ones(500), np.zeros(500)])
    slope, intercept = fit_logistic(d, y)
    assert slope < 0
    assert -intercept / slope == pytest.approx(1.0, abs=0.05)


def test_residual_head_starts_with_the_backbones_ranking():
    bb = TableBackbone(16)
    head = build_head(bb, "residual")
    x = torch.randn(50, 16)
    a, b = x[:25], x[25:]
    cos = 1 - torch.nn.functional.cosine_similarity(a, b)
    with torch.no_grad():
        d = euclidean(head(a), head(b))
    assert torch.allclose(d**2, 2 * cos, atol=1e-5)  # |u - v|^2 = 2 - 2 cos on the unit sphere


def test_embedding_dim_adds_a_projection():
    head = build_head(TableBackbone(16), "pretrained", embedding_dim=8)
    assert head(torch.randn(3, 16)).shape == (3, 8)


def _clusters(people=300, dim=32, noise_dims=24, seed=0):
    """Identity lives in the first dims; the rest is large per-image noise a head can learn to ignore."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(people), rng.integers(1, 5, people))
    x = rng.normal(size=(len(labels), dim)) * 0.3
    x[:, : dim - noise_dims] += rng.normal(size=(people, dim - noise_dims))[labels]
    x[:, dim - noise_dims :] *= 6.0
    return x.astype(np.float32), labels


def test_training_improves_held_out_people_and_never_keeps_a_worse_head():
    x, labels = _clusters()
    bb = TableBackbone(x.shape[1])
    result = fit(x, labels, bb, TrainConfig(backbone="sface", epochs=8, lr=3e-3, seed=0), progress=False)
    s = result.summary
    assert s["val_auc"] >= s["initial_val_auc"]
    assert s["val_auc"] > s["initial_val_auc"] + 0.02  # the head learned to ignore the noise dimensions
    assert result.thresholds["used"] == "validation_best_accuracy"
    assert [h["epoch"] for h in result.history] == list(range(9))
    assert all(key in result.history[3] for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_auc"))


def test_initial_logistic_unit_is_not_garbage():
    x, labels = _clusters(noise_dims=4)
    result = fit(x, labels, TableBackbone(x.shape[1]), TrainConfig(backbone="sface", epochs=0), progress=False)
    first = result.history[0]
    assert first["accuracy"] > 0.8 and first["val_accuracy"] > 0.8
    assert result.model.slope < 0


def test_resume_continues_exactly(tmp_path):
    x, labels = _clusters(people=120)
    bb = TableBackbone(x.shape[1])
    config = TrainConfig(backbone="sface", epochs=3, lr=3e-3, keep="final")
    straight = fit(x, labels, bb, config, checkpoint=tmp_path / "a.pt", progress=False)
    fit(
        x,
        labels,
        bb,
        TrainConfig(backbone="sface", epochs=2, lr=3e-3, keep="final"),
        checkpoint=tmp_path / "b.pt",
        progress=False,
    )
    resumed = fit(x, labels, bb, config, checkpoint=tmp_path / "b.pt", resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert straight.history[3]["loss"] == resumed.history[3]["loss"]


def test_paper_split_validates_on_the_last_pairs():
    x, labels = _clusters(people=80)
    config = TrainConfig(backbone="sface", epochs=1, split="paper")
    result = fit(x, labels, TableBackbone(x.shape[1]), config, progress=False)
    a, b, y = draw_pairs(labels, epoch_rng(0, 1))
    at = keras_split_at(len(a), 0.2)
    assert result.summary["val_pairs"] == len(a) - at
    assert result.history[1]["pairs"] == at


def test_paper_preset_hyperparameters():
    c = TrainConfig(backbone="vggface", preset="paper").resolved()
    assert (c.head, c.loss, c.optimizer, c.lr, c.batch_size, c.epochs, c.pairs) == (
        "pretrained",
        "bce",
        "adam",
        1e-3,
        32,
        60,
        "fixed",
    )
    assert TrainConfig(backbone="vggface", preset="paper", epochs=5).resolved().epochs == 5


def test_auto_head_precision_is_bf16_only_for_vggface_on_amx():
    has_amx = "amx_bf16" in cpu_flags()
    assert TrainConfig(backbone="sface").resolved().precision == "fp32"
    assert TrainConfig(backbone="vggface").resolved().precision == ("bf16" if has_amx else "fp32")
    assert TrainConfig(backbone="vggface", precision="fp32").resolved().precision == "fp32"


def test_siamese_forward_shapes():
    model = Siamese(build_head(TableBackbone(8), "residual"))
    d, z = model(torch.randn(4, 8), torch.randn(4, 8))
    assert d.shape == z.shape == (4,)


def test_person_batches_cover_every_row_once_with_pairs_together():
    from facetwin.training.batches import person_batches

    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4])
    rows = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])  # row 10 is a validation image
    batches = person_batches(labels, rows, 4, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == rows.tolist()
    people_with_pairs = sum(1 for b in batches for p in set(labels[b]) if (labels[b] == p).sum() >= 2)
    assert people_with_pairs >= 3  # persons 0, 1 and 3 (twice) keep two photos side by side
    assert all(len(b) <= 5 for b in batches)  # a group of two never split, so at most one over


def test_batch_pairs_take_the_other_photo_and_a_random_stranger():
    from facetwin.training.batches import batch_pairs

    labels = np.array([0, 0, 1, 2, 2])
    a, b, y = batch_pairs(labels, np.random.default_rng(0))
    positives = {(int(i), int(j)) for i, j, s in zip(a, b, y, strict=True) if s == 1}
    assert positives == {(0, 1), (1, 0), (3, 4), (4, 3)}  # person 1 has no second photo in the batch
    negatives = [(int(i), int(j)) for i, j, s in zip(a, b, y, strict=True) if s == 0]
    assert sorted(i for i, _ in negatives) == [0, 1, 2, 3, 4] and all(labels[i] != labels[j] for i, j in negatives)
    strangers = {int(batch_pairs(labels, np.random.default_rng(seed))[1][-1]) for seed in range(40)}
    assert strangers == {0, 1, 2}  # image 4's stranger: any photo of another person
    assert len(batch_pairs(np.array([3, 3]), np.random.default_rng(0))[2]) == 2  # one person: positives only


def test_batch_pairs_training_improves_held_out_people():
    x, labels = _clusters()
    result = fit(x, labels, TableBackbone(x.shape[1]),
                 TrainConfig(backbone="sface", epochs=8, lr=3e-3, seed=0, pairs="batch"), progress=False)
    s = result.summary
    assert s["val_auc"] > s["initial_val_auc"] + 0.02
    assert all(h["pairs"] > len(labels) for h in result.history[1:])  # about two pairs per training image

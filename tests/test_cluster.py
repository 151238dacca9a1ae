"""Clustering faces into people: the algorithm, its metrics, incremental updates (synthetic planted people)."""

from __future__ import annotations

import numpy as np

from facetwin.collection.cluster import NOISE, average_linkage, cluster, merge_distance, relabel, update
from facetwin.collection.cluster_graph import knn_graph
from facetwin.evaluation.clustering import bcubed, pairwise

CUT = 0.55  # about sface's merge distance (its threshold is 0.66)


def planted(people: int = 60, per: int = 5, singles: int = 40, seed: int = 0):
    """Faces of ``people`` people (``per`` each) plus ``singles`` strangers; intra distance ~0.4, inter ~1."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people + singles, 128)).astype(np.float32)
    truth = np.concatenate([np.repeat(np.arange(people), per), people + np.arange(singles)])
    x = centres[truth] / np.linalg.norm(centres[truth], axis=1, keepdims=True)
    x = x + rng.standard_normal(x.shape).astype(np.float32) * (0.8 / np.sqrt(128))
    return x, truth


def test_metrics_on_known_cases():
    truth = np.array([0, 0, 0, 1, 1, 2])
    perfect = bcubed(truth, truth)
    assert perfect == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    alone = bcubed(np.full(6, NOISE), truth)  # every face on its own
    assert alone["precision"] == 1.0 and np.isclose(alone["recall"], (3 * 1 / 3 + 2 * 1 / 2 + 1) / 6)
    one = pairwise(np.zeros(6, int), truth)  # everything together: 4 true pairs of 15
    assert np.isclose(one["precision"], 4 / 15) and one["recall"] == 1.0


def test_cluster_finds_planted_people_and_leaves_strangers_as_noise():
    x, truth = planted()
    labels = cluster(x, "cosine", CUT)
    assert bcubed(labels, truth)["f1"] > 0.99
    assert (labels[truth >= 60] == NOISE).all()
    sizes = np.bincount(labels[labels >= 0])
    assert (np.diff(sizes) <= 0).all()  # numbered biggest first


def test_min_faces_turns_small_clusters_into_noise():
    assert relabel(np.array([5, 5, 5, 7, 7, 9]), min_faces=3).tolist() == [0, 0, 0, -1, -1, -1]
    assert relabel(np.array([5, 7, 7, 9, 9, 9])).tolist() == [-1, 1, 1, 0, 0, 0]


def test_average_linkage_does_not_chain_through_one_lookalike():
    # two tight groups joined by a single close pair: single linkage would merge them, average linkage must not
    i = np.array([0, 0, 1, 3, 3, 4, 2, 0, 1, 2, 0, 1])
    j = np.array([1, 2, 2, 4, 5, 5, 3, 3, 4, 5, 4, 3])
    d = np.array([0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.5, 0.95, 0.95, 0.95, 0.95, 0.95])
    labels = average_linkage(6, i, j, d, CUT)
    assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1 and labels[0] != labels[3]


def test_update_keeps_ids_adds_new_faces_and_new_people():
    x, truth = planted()
    old = truth < 40  # the collection before new photos arrived: people 0..39 only
    first = cluster(x[old], "cosine", CUT)
    ids = first + 100  # named or not, ids are whatever the store holds
    seeds = np.full(len(x), NOISE)
    seeds[np.flatnonzero(old)] = ids
    labels = update(x, "cosine", CUT, seeds, next_id=1000)
    assert (labels[old] == ids).all()  # nobody renumbered
    for person in range(40):  # new photos of known people join their cluster
        assert len(set(labels[truth == person])) == 1
    new_people = labels[(truth >= 40) & (truth < 60)]
    assert (new_people >= 1000).all() and len(set(new_people)) == 20


def test_update_never_merges_two_existing_clusters():
    x, truth = planted(people=1, per=10, singles=0)
    seeds = np.array([7] * 5 + [8] * 5)  # a person the user split in two
    labels = update(x, "cosine", CUT, seeds, next_id=9)
    assert labels.tolist() == seeds.tolist()


def test_knn_graph_is_exact_and_leaves_self_out():
    x, _ = planted(people=10, per=3, singles=5)
    graph = knn_graph(x, "cosine", k=4)
    assert (graph.neighbors != np.arange(len(x))[:, None]).all()
    full = 1 - (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    np.fill_diagonal(full, np.inf)
    assert np.allclose(np.sort(full, axis=1)[:, :4], graph.distances, atol=1e-5)


def test_merge_distance_is_where_the_calibration_says_097():
    cut = merge_distance(0.6636, -24.9758, 17.1334)
    assert 0.54 < cut < 0.55  # sface: 0.82 × its threshold
    p = 1 / (1 + np.exp(-(-24.9758 * cut + 17.1334)))
    assert abs(p - 0.97) < 1e-9
    assert merge_distance(0.6, None, None) == 0.82 * 0.6  # a model without calibration
    assert merge_distance(0.6, -1.0, 5.0) == 0.6  # never above the threshold


def test_radius_counts_missing_pairs_as_far():
    # faces 0-1 and 2-3 are tight pairs; one close edge 1-2 links them; the graph saw nothing else between them
    i, j, d = np.array([0, 2, 1]), np.array([1, 3, 2]), np.array([0.1, 0.1, 0.4])
    observed_only = average_linkage(4, i, j, d, 0.5)
    assert len(set(observed_only)) == 1  # the mean of the edges seen (0.4) is below the cut: one cluster
    far = average_linkage(4, i, j, d, 0.5, radius=np.full(4, 0.9))
    assert len(set(far)) == 2  # 3 missing pairs at 0.9 and one at 0.4: mean 0.78, two people

"""`facetwin evaluate` end to end on real LFW images, with a pairs file of three folds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import DATA, need

LFW = DATA / "lfw-dev" / "images"


def _people_with(n: int, count: int) -> list[tuple[str, int]]:
    people = []
    for folder in sorted(need(LFW).iterdir()):
        k = len(list(folder.glob("*.jpg")))
        if k >= n:
            people.append((folder.name, k))
        if len(people) == count:
            return people
    pytest.skip("not enough LFW people")


def _three_fold_pairs(path, per_fold=4):
    people = _people_with(3, 3 * per_fold + 1)
    lines = [f"3\t{per_fold}"]
    for fold in range(3):
        group = people[fold * per_fold : (fold + 1) * per_fold]
        lines += [f"{name} 1 2" for name, _ in group]
        for i, (name, _) in enumerate(group):
            other = people[(fold * per_fold + i + 1) % len(people)][0]
            lines.append(f"{name} 3 {other} 1")
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(*args):
    return subprocess.run([sys.executable, "-m", "facetwin.cli", *map(str, args)], capture_output=True, text=True)


def test_three_folds_through_the_cli(tmp_path):
    pairs = _three_fold_pairs(tmp_path / "pairs.txt")
    out = tmp_path / "result.json"
    done = _run("evaluate", pairs, "--images", LFW, "--backbone", "sface", "--json", out, "--plot", tmp_path / "r.png",
                "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["pairs"] == 24 and result["folds"] == 3
    assert result["accuracy"] >= 0.9 and result["auc"] >= 0.95
    for key in ("accuracy_std", "eer", "images", "no_face", "seconds", "model"):
        assert key in result
    assert set(result["tar_at_far"]) == {"0.001", "0.01"}
    assert (tmp_path / "r.png").stat().st_size > 10_000
    assert result["embedding_cache"]["computed"] == result["images"]
    again = _run("evaluate", pairs, "--images", LFW, "--backbone", "sface", "--json", out, "--quiet")
    assert again.returncode == 0, again.stderr
    second = json.loads(out.read_text())
    assert second["embedding_cache"] == {"computed": 0, "cached": result["images"]}  # the trunk did not run again
    assert second["accuracy"] == result["accuracy"] and second["auc"] == result["auc"]


def test_missing_images_are_an_error_or_skipped(tmp_path):
    pairs = _three_fold_pairs(tmp_path / "pairs.txt")
    text = pairs.read_text().splitlines()
    name = text[1].split()[0]
    text[1] = f"{name} 1 999"
    pairs.write_text("\n".join(text) + "\n")
    done = _run("evaluate", pairs, "--images", LFW, "--backbone", "sface", "--quiet")
    assert done.returncode == 2
    assert f"{name}_0999.jpg" in done.stderr and "--skip-missing" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    out = tmp_path / "r.json"
    done = _run("evaluate", pairs, "--images", LFW, "--backbone", "sface", "--skip-missing", "--json", out, "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["pairs"] == 23 and result["skipped_pairs"] == 1


def _fold_people(pairs_text: str) -> list[set[str]]:
    """Names on each fold's lines of a pairs file (the people a cross-trained head must never see)."""
    lines = pairs_text.splitlines()
    folds, per_fold = map(int, lines[0].split())
    people = [set() for _ in range(folds)]
    for i, line in enumerate(lines[1:]):
        parts = line.split()
        people[i // (2 * per_fold)].update(parts[0::2] if len(parts) == 4 else parts[:1])
    return people


def test_cross_train_holds_out_each_folds_people(tmp_path):
    pairs = _three_fold_pairs(tmp_path / "pairs.txt")
    fold_people = _fold_people(pairs.read_text())
    images = tmp_path / "images"  # the pairs' people plus people in no pair, linked from lfw-dev
    images.mkdir()
    in_pairs = set().union(*fold_people)
    extra = [f.name for f in sorted(LFW.iterdir()) if f.name not in in_pairs][:20]
    for name in sorted(in_pairs) + extra:
        (images / name).symlink_to(LFW / name, target_is_directory=True)
    out, plot = tmp_path / "x.json", tmp_path / "x.png"
    options = ("--cross-train", "--epochs", "3", "--json", out, "--plot", plot, "--quiet")
    done = _run("evaluate", pairs, "--images", images, *options)
    assert done.returncode == 0, done.stderr
    assert "own threshold" in done.stdout
    result = json.loads(out.read_text())
    assert result["pairs"] == 24 and result["folds"] == 3 and len(result["per_fold"]) == 3
    total = len(in_pairs) + len(extra)
    for fold, held_out in zip(result["per_fold"], fold_people, strict=True):
        assert fold["held_out_people"] == len(held_out)
        assert fold["train_people"] == total - len(held_out)
    assert result["accuracy"] == pytest.approx(sum(result["fold_accuracies"]) / 3)
    assert result["accuracy"] >= 0.8 and result["auc"] >= 0.9
    assert set(result["tar_at_far"]) == {"0.001", "0.01"} and "accuracy_kfold_threshold" in result
    assert plot.stat().st_size > 10_000


def test_cross_train_trains_on_augmented_copies_when_asked(tmp_path):
    """``augment`` reaches every fold's training rows (as in ``facetwin train --augment``); pairs stay clean."""
    from facetwin.evaluation.crosstrain import cross_train_evaluate

    pairs = _three_fold_pairs(tmp_path / "pairs.txt")
    images = tmp_path / "images"
    images.mkdir()
    for name in sorted(set().union(*_fold_people(pairs.read_text()))):
        (images / name).symlink_to(LFW / name, target_is_directory=True)
    plain, augmented = (
        cross_train_evaluate(pairs, images, backbone="sface", progress=False,
                             train_options={"epochs": 2, "keep": "final", "augment": n})
        for n in (0, 1)
    )
    assert augmented["model"]["train_options"]["augment"] == 1 and plain["model"]["train_options"]["augment"] == 0
    assert [f["train_images"] for f in augmented["per_fold"]] == [f["train_images"] for f in plain["per_fold"]]
    # the same clean rows, the same seed: only the augmented copies can have changed the trained heads
    assert [f["threshold"] for f in augmented["per_fold"]] != [f["threshold"] for f in plain["per_fold"]]

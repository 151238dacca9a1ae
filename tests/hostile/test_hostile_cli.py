"""Careless or hostile command lines: one sentence on stderr, exit 2, nothing read or written where it should
not be."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from facetwin.core.validate import person_name
from facetwin.errors import FacetwinError

from conftest import DATA, need

ATT = DATA / "att_faces"
LFW = DATA / "lfw-dev" / "images"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "facetwin.cli", *map(str, args)], capture_output=True, text=True)


def _one_line_error(done) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facetwin: error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("top_k", ["0", "-3"])
def test_identify_top_k_must_be_positive(tmp_path, top_k):
    line = _one_line_error(_cli("identify", need(ATT / "s1" / "1.pgm"), "--gallery", tmp_path / "g.db",
                                "--top-k", top_k))
    assert "--top-k must be a whole number from 1" in line


def test_output_paths_that_are_folders(tmp_path):
    photo = need(ATT / "s1" / "1.pgm")
    assert "is a folder" in _one_line_error(_cli("embed", photo, "--out", tmp_path))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t1\na 1 2\na 1 b 1\n")
    assert "is a folder" in _one_line_error(_cli("evaluate", pairs, "--images", tmp_path, "--plot", tmp_path))


@pytest.mark.parametrize("flag", [["--lr", "nan"], ["--lr", "inf"], ["--lr", "-1"], ["--val-fraction", "nan"]])
def test_training_numbers_must_be_finite(tmp_path, flag):
    line = _one_line_error(_cli("train", tmp_path, "--out", tmp_path / "run", *flag))
    assert flag[0] in line


def test_pairs_names_cannot_leave_the_images_folder(tmp_path):
    from facetwin.evaluation.pairs_file import read_pairs

    secret = tmp_path / "secret"
    secret.mkdir()
    for bad in ("../secret 1 2", "/etc 1 2", "a/../../secret 1 2", ".. 1 2"):
        pairs = tmp_path / "pairs.txt"
        pairs.write_text(f"1\t1\n{bad}\nok 1 ok 2\n")
        with pytest.raises(FacetwinError, match=r"pairs\.txt, line 2: the name .* is not a folder name inside"):
            read_pairs(pairs)
    pairs.write_text("1\t1\nok 1 2\nok 1 ../secret 2\n")
    with pytest.raises(FacetwinError, match=r"line 3: the name '\.\./secret'"):
        read_pairs(pairs)


def test_a_one_fold_pairs_file_does_not_claim_held_out_thresholds(tmp_path, facetwin_home):
    people = [p for p in sorted(need(LFW).iterdir()) if len(list(p.glob("*.jpg"))) >= 2][:6]
    lines = ["1\t3"] + [f"{p.name} 1 2" for p in people[:3]]
    lines += [f"{people[i].name} 1 {people[i + 3].name} 1" for i in range(3)]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    done = _cli("evaluate", pairs, "--images", LFW, "--backbone", "sface", "--json", tmp_path / "r.json", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "other folds" not in done.stdout and "one fold" in done.stdout
    assert "other folds" not in (tmp_path / "r.json").read_text()


def test_person_names_are_validated():
    assert person_name("  Zoë O'Neil-Ng  ") == "Zoë O'Neil-Ng"
    for bad in ("", "   ", "a\x00b", "a\x1b[31mred", "evil\u202egnp.exe", "..", "a/b", "x" * 60_000, "zero\u200bwidth"):
        with pytest.raises(FacetwinError, match="the person's name|a person's name"):
            person_name(bad)


def test_enroll_refuses_a_bad_name_before_any_work(tmp_path):
    line = _one_line_error(_cli("enroll", "bad\x1bname", need(ATT / "s1" / "1.pgm"), "--gallery", tmp_path / "g.db"))
    assert "U+001B" in line


_KILLED_IMPORT = """
import os, signal, sys, tempfile
from pathlib import Path
from facetwin.core import paths
target = Path(sys.argv[1])
target.parent.mkdir(parents=True, exist_ok=True)
fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=paths.temp_prefix(target), suffix=".tmp")
os.write(fd, b"half of a 580 MB weights file")
print(tmp, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_weight_import_leaves_no_temporary_file(tmp_path, facetwin_home):
    import torch

    from facetwin.backbones.vggface import weights as W

    target = W.default_path()
    done = subprocess.run([sys.executable, "-c", _KILLED_IMPORT, str(target)], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL
    left = done.stdout.strip()
    assert os.path.exists(left)  # what `kill -9` during `facetwin weights import` leaves
    W._write_safetensors(target, {"w": torch.zeros(2)}, {"format": "test"})  # the next import
    assert not os.path.exists(left)
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_library_search_refuses_top_k_zero(tmp_path):
    from facetwin.gallery import Gallery

    gallery = Gallery(tmp_path / "g.db")
    gallery.enroll_embeddings("Ada", np.ones((1, 128), np.float32))
    with pytest.raises(FacetwinError, match="top_k must be a whole number"):
        gallery.search(np.ones(128, np.float32), top_k=0)

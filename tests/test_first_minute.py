"""What a new user meets first: the command list, help texts, clear errors, light start-up, PIL input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, need

OBAMA = DATA / "face_recognition_examples" / "obama"


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facetwin.cli", *map(str, args)], capture_output=True, text=True, **kwargs
    )


def test_facetwin_alone_lists_every_command_with_one_line():
    from facetwin.cli import build_parser

    done = _run()
    assert done.returncode == 0, done.stderr
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        lines = [line for line in done.stdout.splitlines() if line.strip().startswith(name + " ")]
        assert lines, f"`facetwin` does not list {name}"
    assert "Face verification" in done.stdout and "offline" in done.stdout


def _all_parsers():
    from facetwin.cli import build_parser

    todo = [("facetwin", build_parser())]
    while todo:
        name, parser = todo.pop()
        yield name, parser
        for action in parser._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                todo += [(f"{name} {sub}", p) for sub, p in action.choices.items()]


def test_every_command_has_a_description_and_clean_help():
    for name, parser in _all_parsers():
        assert parser.description, f"`{name}` has no description"
        text = parser.format_help()
        assert "%%" not in text, f"`{name} --help` shows a literal %%"
        for action in parser._actions:
            if action.help:
                assert action.help.count("default") <= 1, f"`{name}` {action.option_strings}: two defaults"
                assert "(default: None)" not in (action.help % vars(action) if "%(" in action.help else action.help)


def test_gallery_commands_refuse_a_missing_gallery_and_create_nothing(tmp_path):
    missing = tmp_path / "nobody.db"
    for args in (
        ["identify", OBAMA / "obama.jpg"],
        ["gallery", "list"],
        ["gallery", "stats"],
        ["gallery", "remove", "Ada"],
    ):
        done = _run(*args, "--gallery", missing)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "no such gallery" in done.stderr and done.stderr.count("\n") == 1
        assert not missing.exists() and not list(tmp_path.iterdir())


def test_a_folder_where_a_photo_is_expected_says_so(tmp_path):
    done = _run("verify", tmp_path, tmp_path)
    assert done.returncode == 2 and "is a folder, not a photo" in done.stderr


def test_verify_with_sface_never_imports_torch():
    need(OBAMA)
    code = (
        "import sys; from facetwin.cli import main; "
        f"main(['verify', {str(OBAMA / 'obama.jpg')!r}, {str(OBAMA / 'obama2.jpg')!r}]); "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert "same person" in done.stdout


def test_model_accepts_pil_images(model):
    path = need(OBAMA / "obama.jpg")
    with Image.open(path) as img:
        pil = img.copy()
    from_pil = model.embed(pil)
    from_file = model.embed(path)
    np.testing.assert_allclose(from_pil, from_file, atol=1e-5)
    assert model.verify(pil, OBAMA / "obama2.jpg").same
    with pytest.raises(Exception, match="no face"):
        model.embed(Image.new("RGB", (200, 200), (90, 90, 90)))

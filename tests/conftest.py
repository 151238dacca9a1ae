"""Shared test fixtures: the real data in ../shared, an isolated FACETWIN_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"
FIXTURES = SHARED / "fixtures"


def need(path: Path) -> Path:
    """Return ``path``, or skip the test with a reason when the shared asset is absent."""
    if not path.exists():
        pytest.skip(f"shared asset {path} is absent")
    return path


@pytest.fixture
def facetwin_home(tmp_path, monkeypatch) -> Path:
    """A private cache folder for one test."""
    home = tmp_path / "facetwin-home"
    monkeypatch.setenv("FACETWIN_HOME", str(home))
    return home

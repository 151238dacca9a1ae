"""The README and docs/ as a user meets them: the set-up CI runs, links that lead somewhere, commands that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), re.M)}


def test_the_readme_fits_on_a_few_screens_and_its_test_command_is_what_ci_runs():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    block = re.search(r"## Set up\n\n```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(block) == 2 and "pip install -e" in block[0]
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip()]
    assert block[1] == ci[-1] == "python -m pytest -q"


def test_links_between_pages_lead_somewhere():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            assert linked.is_file(), f"{page.name}: {target}"
            if anchor:
                assert anchor in _anchors(linked), f"{page.name}: {target}"


def test_every_command_shown_exists_and_no_install_line_needs_a_package_index():
    from facetwin.cli import build_parser

    commands = set(next(a for a in build_parser()._actions if a.dest == "command").choices)
    for page in PAGES:
        text = page.read_text()
        assert "pip install 'facetwin[" not in text and 'pip install "facetwin[' not in text, page.name
        shell = "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S))
        shown = re.findall(r"^(?:\S+=\S+ )?facetwin ([a-z]+)", shell, re.M)
        assert len(shown) >= 20 or page != README
        for word in shown:
            assert word in commands, f"{page.name}: facetwin {word}"


def _expanded(name: str) -> list[str]:
    """``a_{x,y}.json`` -> ``a_x.json``, ``a_y.json``."""
    found = re.search(r"\{(.*?)\}", name)
    return [name] if found is None else [name.replace(found.group(0), part) for part in found.group(1).split(",")]


def test_the_fine_tuning_section_names_its_commands_and_results():
    text = (ROOT / "docs" / "method.md").read_text()
    section = text.split("## Fine-tuning the trunks (--trainable-from, --adapt)\n", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(section.split())
    for command in ("python benchmarks/domain_shift.py", "python benchmarks/adapt_epoch_time.py"):
        assert command in flat, command
    names = [n for name in re.findall(r"`(domain_shift_[^`]+\.json)`", flat) for n in _expanded(name)]
    assert len(names) >= 3
    for name in names:
        assert (ROOT / "benchmarks" / "results" / name).is_file(), name

"""environment.yml (conda users) and pyproject.toml (pip users) install the same things, and `make book`'s
light list (book/requirements.txt) is pyproject's `book` extra."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import pyproject

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_matches_pyproject() -> None:
    project = pyproject()["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= set(extra)
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    listed = {requirement.replace(" ", "") for requirement in pip_section if not requirement.startswith("-e")}
    assert listed == {requirement.replace(" ", "") for requirement in wanted}
    assert "-e ." in pip_section, "the conda environment must install simclr_core itself"


def test_book_requirements_are_the_book_extra() -> None:
    extra = pyproject()["project"]["optional-dependencies"]["book"]
    lines = (ROOT / "book" / "requirements.txt").read_text().splitlines()
    listed = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert sorted(listed) == sorted(extra)
    assert not any(name.startswith(("torch", "simclr")) for name in listed), "rendering the book needs no PyTorch"


def test_citation_cff_has_the_required_fields() -> None:
    """The fields CFF 1.2.0 requires (full validation: pip install cffconvert; cffconvert --validate)."""
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["message"] and citation["title"] and citation["authors"]
    assert set(citation["license"]) == {"MIT", "CC-BY-4.0"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "Attribution 4.0 International" in (ROOT / "LICENSE-docs").read_text()

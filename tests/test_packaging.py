"""environment.yml (conda users) and pyproject.toml (pip users) install the same things."""

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

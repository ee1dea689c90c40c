"""Each notebook's .py (the source people edit) and .ipynb (what nbval and the book read) say the same."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


CODE_COLUMNS = 88  # the built book shows code cells in a column of about 90 characters


def test_there_are_nine_chapters() -> None:
    assert len(SOURCES) == 9


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_code_fits_the_page_and_checks_are_folded(source: Path) -> None:
    """No code cell scrolls sideways in the book, and every check cell is folded (Jupyter Book's hide-cell tag:
    one click opens it); nbval's cell tags, not comment lines, say which outputs depend on the machine."""
    notebook = jupytext.read(source)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        long = [line for line in cell.source.splitlines() if len(line) > CODE_COLUMNS]
        assert not long, f"{source.name}: code lines over {CODE_COLUMNS} characters: {long}"
        tags = cell.metadata.get("tags", [])
        if cell.source.lstrip().startswith("# Check"):
            assert "hide-cell" in tags, f"{source.name}: a check cell is not folded: {cell.source[:60]!r}"
        assert "NBVAL_IGNORE_OUTPUT" not in cell.source, f"{source.name}: use the nbval-ignore-output tag"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_pair_is_in_sync(source: Path) -> None:
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"{source.name} has no paired notebook: run `make notebooks`"
    from_py, from_ipynb = jupytext.read(source), jupytext.read(paired)
    cells_py = [(c.cell_type, c.source) for c in from_py.cells]
    cells_ipynb = [(c.cell_type, c.source) for c in from_ipynb.cells]
    assert cells_py == cells_ipynb, f"{source.name} and {paired.name} differ: run `make notebooks`"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_stored_outputs_are_complete_and_small(source: Path) -> None:
    notebook = jupytext.read(source.with_suffix(".ipynb"))
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "some cells were never run: run `make notebooks`"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    assert source.with_suffix(".ipynb").stat().st_size < 1_500_000

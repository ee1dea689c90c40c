"""Fail the book build when a notebook's stored outputs contain an error.

The book renders the outputs committed with each notebook (execution is off), so a notebook that raised
when it was last run would otherwise be published with a traceback in it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError


def check_notebooks(app: Sphinx, env: object, docnames: list[str]) -> None:
    for docname in docnames:
        path = Path(app.srcdir) / f"{docname}.ipynb"
        if not path.is_file():
            continue
        notebook = nbformat.read(path, as_version=4)
        for index, cell in enumerate(notebook.cells):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    raise ExtensionError(
                        f"{path.name}: cell {index + 1} raised {output.get('ename')}: {output.get('evalue')}. "
                        f"Fix it and re-run the notebook (make notebooks) before building the book.")


def setup(app: Sphinx) -> dict[str, bool]:
    app.connect("env-before-read-docs", check_notebooks)
    return {"parallel_read_safe": True}

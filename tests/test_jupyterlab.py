"""`make lab`'s JupyterLab, in a real browser: a double click on a chapter's .py opens it as a notebook (the
default viewer the repository's notebooks/jupyterlab-settings sets), and its MyST citations are rendered (the
jupyterlab-myst extension), not shown as raw `{cite:p}` roles."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import skip_unless_ci
from test_book import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser  # JupyterLab in Chromium

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "notebooks" / "jupyterlab-settings"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab() -> str:
    if CHROMIUM is None:
        skip_unless_ci("chromium is not installed (apt-get install chromium; .ci/run installs it in CI)")
    port = _free_port()
    server = subprocess.Popen(["jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
                               "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", f"--ServerApp.root_dir={ROOT}",
                               f"--LabApp.app_settings_dir={SETTINGS}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within a minute")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_repository_sets_the_default_viewer_of_python_files(jupyterlab: str) -> None:
    """Recent jupytext opens percent scripts as notebooks anyway; older ones (which pyproject admits) open a text
    editor unless the setting says otherwise, so the server must serve the repository's setting."""
    with urllib.request.urlopen(f"{jupyterlab}/lab/api/settings/@jupyterlab/docmanager-extension:plugin") as reply:
        schema = json.load(reply)["schema"]
    assert schema["properties"]["defaultViewers"]["default"] == {"python": "Jupytext Notebook"}


def test_a_chapter_opens_as_a_notebook_with_its_citations_rendered(jupyterlab: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    source = (ROOT / "notebooks" / "03_training.py").read_text()
    assert "{cite:p}`he2016resnet`" in source
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{jupyterlab}/lab/tree/notebooks", wait_until="networkidle")
        page.locator(".jp-DirListing-item", has_text="03_training.py").dblclick(timeout=60_000)
        page.wait_for_selector(".jp-NotebookPanel .jp-MarkdownCell", timeout=60_000)
        page.wait_for_function("() => document.querySelector('.jp-NotebookPanel').innerText.includes('he2016resnet')",
                               timeout=60_000)
        try:  # JupyterLab renders a long notebook's cells in batches: wait for more than the first
            page.wait_for_function("() => document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length > 10",
                                   timeout=30_000)
        except PlaywrightTimeout:
            pass  # the count below says how many there were
        cells = page.eval_on_selector_all(".jp-NotebookPanel .jp-Cell", "els => els.length")
        text = page.inner_text(".jp-NotebookPanel")
        browser.close()
    assert cells > 10, "the .py opened in a text editor, not as a notebook"
    assert "he2016resnet" in text and "{cite" not in text, "the MyST citation role was shown as raw text"

"""The Jupyter Book builds with warnings as errors, every chapter is in it with its figures, and the
figures load in a real browser (headless Chromium)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import skip_unless_ci

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "book" / "_build" / "html"
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.title = ""
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        self._in_h1 = self._in_h1 or tag == "h1"

    def handle_endtag(self, tag: str) -> None:
        self._in_h1 = self._in_h1 and tag != "h1"

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.title += data


@pytest.fixture(scope="module")
def built_book() -> Path:
    shutil.rmtree(ROOT / "book" / "_build", ignore_errors=True)
    result = subprocess.run(["jupyter-book", "build", "-W", "-n", "--keep-going", str(ROOT / "book")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return HTML


def _parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text())
    return parser


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_is_built_with_its_figures(built_book: Path, chapter: str) -> None:
    page = built_book / "notebooks" / f"{chapter}.html"
    assert page.is_file(), f"{chapter} is missing from the book"
    parsed = _parse(page)
    assert parsed.title.strip().startswith(chapter[:2].lstrip("0") + ".")
    figures = [src for src in parsed.images if "_images/" in src]
    assert figures, f"{chapter} has no figures"
    for src in figures:
        assert (page.parent / src).resolve().is_file(), f"{chapter}: {src} is not in the build"


def test_intro_and_full_run_pages(built_book: Path) -> None:
    assert "SimCLR from scratch" in _parse(built_book / "intro.html").title
    assert "GPU" in _parse(built_book / "full_run.html").title


def test_figures_load_in_headless_chromium(built_book: Path) -> None:
    if CHROMIUM is None:
        skip_unless_ci("chromium is not installed (apt-get install chromium; .ci/run installs it in CI)")
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = browser.new_page()
        for chapter in CHAPTERS:
            page.goto((built_book / "notebooks" / f"{chapter}.html").as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "article img", "els => els.map(e => [e.getAttribute('src'), e.complete, e.naturalWidth])")
            figures = [img for img in images if "_images/" in img[0]]
            assert figures, f"{chapter}: no figures on the page"
            broken = [src for src, complete, width in figures if not (complete and width > 0)]
            assert not broken, f"{chapter}: images that did not load in Chromium: {broken}"
        browser.close()

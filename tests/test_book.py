"""The Jupyter Book builds with warnings as errors, every chapter is in it with its figures, the figures load in a
real browser (headless Chromium), and the formulas are typeset with the network cut off (MathJax is served from
the built book itself)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import skip_unless_ci

pytestmark = pytest.mark.browser  # the book built, then read in Chromium

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


def test_references_page_and_every_chapter_cites_and_ends_with_exercises(built_book: Path) -> None:
    references = (built_book / "references.html").read_text()
    assert references.count('role="doc-biblioentry"') >= 10, "the references page lists too few works"
    assert "A simple framework for contrastive learning" in references
    for chapter in CHAPTERS:
        html = (built_book / "notebooks" / f"{chapter}.html").read_text()
        assert 'href="../references.html#' in html, f"{chapter} cites nothing"
        assert "{cite" not in html, f"{chapter} has a citation role that was not rendered"
        text = html[html.index("What to take away"):]
        assert "Exercises" in text, f"{chapter} does not end with exercises after its summary"


def _require_chromium() -> None:
    if CHROMIUM is None:
        skip_unless_ci("chromium is not installed (apt-get install chromium; .ci/run installs it in CI)")


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def test_figures_load_in_headless_chromium(built_book: Path) -> None:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
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


def _math_pages(html: Path) -> list[Path]:
    """Every page of the book whose source has formulas (Sphinx wraps each in an element of class "math")."""
    pages = sorted(p for p in html.rglob("*.html") if not {"_static", "_sources"} & set(p.parts)
                   and p.name not in ("genindex.html", "search.html"))
    return [p for p in pages if 'class="math' in p.read_text()]


def _offline_math_problems(page, url: str, wait_ms: int = 10_000) -> list[str]:
    """Open `url` in a page whose every request other than file:// is refused, wait for MathJax, and return what
    is wrong with the page's formulas (nothing when MathJax loaded offline and typeset every one)."""
    blocked: list[str] = []

    def refuse_network(route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", refuse_network)
    page.goto(url, wait_until="load")
    problems = []
    try:  # MathJax replaces the page's configuration object with itself once its script has loaded
        page.wait_for_function("() => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise",
                               timeout=wait_ms)
        page.evaluate("() => window.MathJax.startup.promise")  # resolves when the first typesetting is done
    except Exception as error:  # a time-out or a script error: either way the formulas stay TeX
        problems.append(f"MathJax did not start ({type(error).__name__})")
    containers = page.eval_on_selector_all("mjx-container", "els => els.length")
    if containers == 0:
        problems.append("no mjx-container (MathJax output) on the page")
    text = page.inner_text("body")
    for delimiter in ("\\(", "\\["):
        if delimiter in text:
            at = text.index(delimiter)
            problems.append(f"TeX left in the visible text: {text[max(0, at - 40):at + 60]!r}")
    if blocked:
        problems.append(f"requests refused: {blocked}")
    page.unroute("**/*")
    return problems


def test_formulas_are_typeset_offline(built_book: Path) -> None:
    """With every non-file:// request refused, each page with formulas loads MathJax from the built book and
    typesets them all: MathJax's output elements are there and no TeX delimiter is left in the visible text."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    pages = _math_pages(built_book)
    with_math = {p.stem for p in pages}
    assert {"02_loss_indexing", "04_temperature_hard_negatives", "06_representation_geometry"} <= with_math
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        failures = {html.relative_to(built_book).as_posix(): _offline_math_problems(page, html.as_uri())
                    for html in pages}
        browser.close()
    failures = {name: problems for name, problems in failures.items() if problems}
    assert not failures, f"formulas not typeset offline: {failures}"


def test_offline_math_check_fails_when_mathjax_comes_from_a_cdn(built_book: Path) -> None:
    """The check above can fail: the same chapter, pointed at MathJax on a CDN, is caught with the network off."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    chapter = built_book / "notebooks" / "02_loss_indexing.html"
    local = "../_static/mathjax/tex-chtml.js"
    html = chapter.read_text()
    assert local in html, "the chapter no longer loads MathJax from the built book"
    cdn_copy = chapter.with_name("_cdn_mathjax_check.html")  # beside the chapter, so its other links still work
    cdn_copy.write_text(html.replace(local, "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            # a local MathJax starts in well under a second: 3 s of waiting tell a CDN copy apart
            problems = _offline_math_problems(browser.new_page(), cdn_copy.as_uri(), wait_ms=3_000)
            browser.close()
    finally:
        cdn_copy.unlink()
    assert any("MathJax did not start" in problem for problem in problems), problems
    assert any("TeX left" in problem for problem in problems), problems
    assert any("cdn.jsdelivr.net" in problem for problem in problems), problems


def test_no_code_cell_scrolls_sideways_at_a_1280_pixel_window(built_book: Path) -> None:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        wide = {}
        for chapter in CHAPTERS:
            page.goto((built_book / "notebooks" / f"{chapter}.html").as_uri(), wait_until="load")
            page.eval_on_selector_all("details", "els => els.forEach(e => e.open = true)")  # folded cells too
            overflowing = page.eval_on_selector_all(
                ".cell_input pre", "els => els.filter(e => e.scrollWidth > e.clientWidth + 1)"
                                   ".map(e => e.innerText.split('\\n').sort((a, b) => b.length - a.length)[0])")
            if overflowing:
                wide[chapter] = overflowing
        browser.close()
    assert not wide, f"code cells that scroll sideways (their longest line): {wide}"


def test_check_cells_are_folded_until_opened(built_book: Path) -> None:
    """A check cell's code is hidden on the page; one click on its toggle shows it."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    chapter = built_book / "notebooks" / "03_training.html"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(chapter.as_uri(), wait_until="load")
        folded = page.locator(".cell.tag_hide-cell")
        assert folded.count() >= 3, "chapter 3's check cells are not tagged hide-cell"
        check = folded.first.locator("pre", has_text="assert")
        assert not check.is_visible(), "a folded check cell's code is visible before it is opened"
        folded.first.locator("summary, .toggle-button, button").first.click()
        assert check.is_visible(), "opening the fold did not show the check"
        browser.close()

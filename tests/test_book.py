"""The HTML book (``make book``): built in fast mode into a temporary folder, then read in a real
browser (Debian's chromium through Playwright, as tests/test_browser.py does).

Checked on every page: it loads with no request leaving ``file://`` (MathJax, the theme and the
search are served from the book itself), MathJax has left no raw ``$...$``, ``\\(`` or ``\\[`` in
the rendered text, no traceback is shown; every notebook page has figures that load; every
internal link resolves (file and anchor); the search box finds a course word; solutions are
collapsed. The landing page's screenshot goes to ``test-artifacts/book/landing.png``.
The build takes about 3 minutes on 2 cores (executing the notebooks is most of it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "book"
RAW_MATH = re.compile(r"\$[^$\s][^$\n]*\$|\\\(|\\\[")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """The book built in fast mode by the same command as ``make book``."""
    tmp = tmp_path_factory.mktemp("book")
    out = tmp / "out"
    cmd = [sys.executable, "tools/book.py", "--out", str(out), "--src", str(tmp / "src")]
    cmd += ["--cache", str(tmp / "executed")]
    env = dict(os.environ, DRSL_FAST="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"out": out, "src": tmp / "src", "log": proc.stdout}


def _pages(out: Path) -> list[Path]:
    skip = ("_static", "_sources", "_images")
    return sorted(p for p in out.rglob("*.html") if p.relative_to(out).parts[0] not in skip)


def _course_stems() -> list[str]:
    return [p.stem for p in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py"))]


def test_book_has_every_notebook_the_spec_the_guide_results_and_api(book):
    out = book["out"]
    for stem in _course_stems():
        assert (out / "notebooks" / f"{stem}.html").is_file(), stem
    for page in ("index", "spec", "instructor", "results", "api", "search", "genindex"):
        assert (out / f"{page}.html").is_file(), page
    assert list((out / "generated").glob("drsl.*.html")), "no API page generated"
    assert (out / "_static" / "mathjax" / "MathJax.js").is_file()
    warnings = (book["src"] / "sphinx-warnings.log").read_text()
    assert "failed to import" not in warnings, warnings[:2000]
    landing = (out / "index.html").read_text()
    for stem in _course_stems():  # the course map links every notebook and says its time
        assert f"notebooks/{stem}.html" in landing, stem
    from bs4 import BeautifulSoup

    cells = [td.get_text().strip() for td in BeautifulSoup(landing, "html.parser").find_all("td")]
    times = [int(c[:-2]) for c in cells if re.fullmatch(r"\d+ s", c)]
    # one time per notebook, then the total row
    assert len(times) == len(_course_stems()) + 1, "no time per notebook on the landing page"
    assert abs(sum(times[:-1]) - times[-1]) <= len(times), "the total is not the sum of the rows"


def _internal_links(out: Path, page: Path):
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    for a in soup.find_all("a", href=True):
        href = a["href"]
        if urlparse(href).scheme or href.startswith(("mailto:", "javascript:")):
            continue
        path, _, anchor = href.partition("#")
        target = (page.parent / unquote(path)).resolve() if path else page
        yield href, target, unquote(anchor)


def test_internal_links_resolve(book):
    from bs4 import BeautifulSoup

    out, ids, broken = book["out"], {}, []
    for page in _pages(book["out"]):
        for href, target, anchor in _internal_links(out, page):
            if not target.is_file():
                broken.append(f"{page.relative_to(out)}: {href}")
                continue
            if anchor and target.suffix == ".html":
                if target not in ids:
                    soup = BeautifulSoup(target.read_text(encoding="utf-8"), "html.parser")
                    ids[target] = {t["id"] for t in soup.find_all(id=True)}
                if anchor not in ids[target]:
                    broken.append(f"{page.relative_to(out)}: {href} (no #{anchor})")
    assert broken == [], "\n".join(broken)


@pytest.fixture(scope="module")
def browser():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no chromium at {CHROMIUM}: run tools/ensure_chromium.sh")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


_VISIBLE_TEXT = """() => {
    const body = document.querySelector('article') || document.body;
    const copy = body.cloneNode(true);
    copy.querySelectorAll('pre, code, script, style, .highlight, .MathJax_Preview')
        .forEach(e => e.remove());
    return copy.innerText;
}"""
_MATHJAX_DONE = """() => new Promise(done => {
    if (!window.MathJax) { done('none'); return; }
    // MathJax 2 sets isReady once started (its first typeset queued): then wait for the queue
    const wait = () => (MathJax.isReady && MathJax.Hub)
        ? MathJax.Hub.Queue(() => done('typeset'))
        : setTimeout(wait, 50);
    wait();
})"""


class _Tab:
    """One browser tab that records every request leaving file:// since the last ``goto``."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.external: list[str] = []
        self.page.on("request", self._record)

    def _record(self, request):
        if not request.url.startswith(LOCAL_SCHEMES):
            self.external.append(request.url)

    def goto(self, url: str):
        self.external = []
        self.page.goto(url, wait_until="load")
        return self.page


def test_every_page_loads_offline_with_math_rendered_and_no_traceback(book, browser):
    problems, typeset, tab = [], 0, _Tab(browser)
    for path in _pages(book["out"]):
        name = path.relative_to(book["out"]).as_posix()
        page = tab.goto(path.as_uri())
        state = page.evaluate(
            f"() => Promise.race([({_MATHJAX_DONE})(), "
            "new Promise(d => setTimeout(() => d('timeout'), 30000))])"
        )
        typeset += state == "typeset"
        if state == "timeout":
            problems.append(f"{name}: MathJax did not finish within 30 s")
        text = page.evaluate(_VISIBLE_TEXT)
        raw = RAW_MATH.findall(text)
        if raw:
            problems.append(f"{name}: raw math {raw[:3]}")
        outputs = " ".join(page.locator(".cell_output").all_inner_texts())
        if "Traceback (most recent call last)" in text + outputs:
            problems.append(f"{name}: a traceback is shown")
        if page.locator(".output.traceback, .output.error").count():
            problems.append(f"{name}: an error output is shown")
        if tab.external:
            problems.append(f"{name}: requests left the book: {sorted(set(tab.external))[:3]}")
        if name.startswith("notebooks/"):
            sizes = page.locator(".cell_output img").evaluate_all(
                "imgs => imgs.map(i => i.naturalWidth)"
            )
            if not sizes or min(sizes) == 0:
                problems.append(f"{name}: figures {sizes} (none, or one did not load)")
        if name == "index.html":
            page.screenshot(path=ARTIFACTS / "landing.png", full_page=True)
    tab.page.close()
    assert problems == [], "\n".join(problems)
    assert typeset >= len(_course_stems()), "MathJax typeset too few pages"


def test_solutions_are_collapsed_and_search_finds_a_course_word(book, browser):
    out, tab = book["out"], _Tab(browser)
    for path in sorted((out / "notebooks").glob("*.html")):
        page = tab.goto(path.as_uri())
        shown = page.get_by_text("Show solution")
        for i in range(shown.count()):  # every solution starts closed
            details = shown.nth(i).locator("xpath=ancestor::details[1]")
            assert details.count() == 1 and details.get_attribute("open") is None, path.name
    page = tab.goto((out / "search.html").as_uri() + "?q=imbalance")
    page.wait_for_selector("ul.search li", timeout=30_000)
    assert page.locator("ul.search li").count() >= 1
    assert tab.external == []
    page.close()

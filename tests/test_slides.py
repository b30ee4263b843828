"""The slides (``make slides``): one reveal.js deck per notebook, one slide per ``## `` section
(after the title slide), solutions left out, and nothing loaded from the internet: reveal.js
and MathJax are copied next to the decks. In chromium (Playwright), every slide of every executed
deck is measured against the deck's height (tests/layout.py), and a crafted deck with one
overflowing slide shows the check catches it; the tallest slide of each deck is saved to
``test-artifacts/slides/``."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from course import course_sources, holds_solution, read_source  # noqa: E402
from layout import TALL_SLIDES  # noqa: E402
from slides import (  # noqa: E402
    HIDE_TAGS,
    MAX_CODE_LINES,
    MAX_OUTPUT_LINES,
    build_slides,
    slide_code,
)

SOURCES = course_sources()
FENCE = re.compile(r"^\s*(```|~~~)")
ARTIFACTS = REPO / "test-artifacts" / "slides"


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    out = tmp_path_factory.mktemp("slides")
    build_slides(out, execute=False)
    return out


def _section_titles(nb) -> list[str]:
    """The ``## `` headings of the notebook's non-solution markdown, outside code fences."""
    titles = []
    for cell in nb.cells:
        if cell.cell_type != "markdown" or holds_solution(cell):
            continue
        fenced = False
        for line in cell.source.splitlines():
            fenced = fenced != bool(FENCE.match(line))
            if not fenced and line.startswith("## "):
                titles.append(re.sub(r"[`*]", "", line[3:]).strip())
    return titles


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_one_slide_per_section_and_no_solution(decks, source):
    deck = decks / f"{source.stem}.slides.html"
    soup = BeautifulSoup(deck.read_text(encoding="utf-8"), "html.parser")
    slides = soup.select("div.reveal > div.slides > section")
    titles = _section_titles(read_source(source))
    assert len(slides) == 1 + len(titles)  # the title slide, then one per section
    assert slides[0].find("h1") is not None
    assert [s.find("h2").get_text().strip().rstrip("\u00b6") for s in slides[1:]] == titles
    cells = read_source(source).cells
    shown = [
        c
        for c in cells
        if c.cell_type == "code" and not set(c.metadata.get("tags", [])) & HIDE_TAGS
    ]
    code = [c for c in shown if not holds_solution(c)]
    solutions = [c for c in shown if holds_solution(c)]
    text = soup.get_text()
    assert len(soup.select("div.jp-CodeCell")) >= len(code), "code cells lost"
    for cell in solutions:  # no solution's code in the deck
        first = next(line for line in cell.source.splitlines() if line.strip())
        assert first not in text or any(first in c.source for c in code), first
    assert "BEGIN SOLUTION" not in text, "an answer cell's solution in the deck"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_no_url_leaves_the_deck(decks, source):
    html = (decks / f"{source.stem}.slides.html").read_text(encoding="utf-8")
    soup = BeautifulSoup(html, "html.parser")
    urls = [t.get("src") for t in soup.find_all(["script", "img", "iframe"], src=True)]
    urls += [t.get("href") for t in soup.find_all("link", href=True)]
    assert urls and not [u for u in urls if re.match(r"^(https?:)?//", u)]
    assert "import mermaid" not in html and "require.js" not in html
    for url in urls:
        assert (decks / url.split("?")[0]).is_file(), url
    assert (decks / "_assets" / "mathjax" / "MathJax.js").is_file()


def test_an_executed_deck_shows_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("DRSL_FAST", "1")
    (deck,) = build_slides(tmp_path / "out", sources=SOURCES[:1], cache=tmp_path / "executed")
    soup = BeautifulSoup(deck.read_text(encoding="utf-8"), "html.parser")
    assert soup.select(".jp-OutputArea-output img"), "no figure in the executed deck"


def test_a_figure_or_prose_cell_hides_its_code_and_long_text_is_cut():
    import nbformat

    figure = nbformat.v4.new_code_cell("plot()")
    figure.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"})]
    assert slide_code(figure).metadata["transient"] == {"remove_source": True}
    function = "\n".join(["def f():"] + [f"    x{i} = {i}" for i in range(40)])
    printed = nbformat.v4.new_code_cell("show(f)")
    printed.outputs = [
        nbformat.v4.new_output(
            "display_data", data={"text/markdown": f"```python\n{function}\n```"}
        )
    ]
    shown = slide_code(printed).outputs[0]["data"]["text/markdown"]
    assert len(shown.splitlines()) == MAX_OUTPUT_LINES + 1 and shown.rstrip().endswith("```")
    assert "more lines in the notebook" in shown and "x39" not in shown
    long_code = nbformat.v4.new_code_cell("\n".join(f"y{i} = {i}" for i in range(30)))
    source = slide_code(long_code).source
    assert len(source.splitlines()) == MAX_CODE_LINES and "y29" not in source


def _browser(pw):
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no chromium at {CHROMIUM}: run tools/ensure_chromium.sh")
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def _open_deck(browser, deck: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(deck.as_uri(), wait_until="load")
    page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=30_000)
    page.wait_for_function("() => window.MathJax && MathJax.isReady", timeout=30_000)
    page.evaluate("() => new Promise(done => MathJax.Hub.Queue(() => done(1)))")
    return page


@pytest.fixture(scope="module")
def executed_decks(tmp_path_factory):
    """Every deck with its outputs, fast mode; the executed notebooks come from (or go to) the
    cache that ``make book`` and ``make slides`` share (build/executed/fast)."""
    out = tmp_path_factory.mktemp("executed-slides")
    before = os.environ.get("DRSL_FAST")
    os.environ["DRSL_FAST"] = "1"
    try:
        return build_slides(out)
    finally:
        if before is None:
            os.environ.pop("DRSL_FAST", None)
        else:
            os.environ["DRSL_FAST"] = before


@pytest.mark.browser
@pytest.mark.slow
def test_every_slide_of_every_deck_fits_the_deck(executed_decks):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems, measured = [], 0
    with sync_playwright() as pw:
        browser = _browser(pw)
        for deck in executed_decks:
            page = _open_deck(browser, deck)
            result = page.evaluate(TALL_SLIDES)
            measured += result["measured"]
            problems += [f"{deck.name}: {p}" for p in result["problems"]]
            h, v = result["where"]
            page.evaluate(f"() => Reveal.slide({h}, {v})")
            page.screenshot(path=ARTIFACTS / f"{deck.name.split('.')[0]}-tallest.png")
            page.close()
        browser.close()
    assert problems == [], "\n".join(problems)
    assert measured > 2 * len(executed_decks)


CRAFTED = """# %% [markdown]
# # A crafted deck
#
# ## One section
# Some prose.
#
# <div style="height: 1200px; background: teal">a block no slide can hold</div>
"""


@pytest.mark.browser
def test_the_slide_check_catches_an_overflowing_slide(tmp_path):
    from playwright.sync_api import sync_playwright

    source = tmp_path / "99_crafted.py"
    source.write_text(CRAFTED)
    (deck,) = build_slides(tmp_path / "out", execute=False, sources=[source])
    with sync_playwright() as pw:
        browser = _browser(pw)
        result = _open_deck(browser, deck).evaluate(TALL_SLIDES)
        browser.close()
    assert len(result["problems"]) == 1, result
    assert "One section" in result["problems"][0] and "the deck is 700 px" in result["problems"][0]


@pytest.mark.browser
def test_a_deck_runs_offline_in_chromium(decks):
    from playwright.sync_api import sync_playwright

    deck = decks / f"{SOURCES[0].stem}.slides.html"
    with sync_playwright() as pw:
        browser = _browser(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        external = []
        page.on("request", lambda r: external.append(r.url) if r.url.startswith("http") else 0)
        page.goto(deck.as_uri(), wait_until="load")
        page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=30_000)
        total = page.evaluate("() => Reveal.getTotalSlides()")
        page.wait_for_function("() => window.MathJax && MathJax.isReady", timeout=30_000)
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => Reveal.getIndices().h === 1", timeout=10_000)
        browser.close()
    assert external == []
    assert total > len(_section_titles(read_source(SOURCES[0])))

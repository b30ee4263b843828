"""The slides (``make slides``): one reveal.js deck per notebook, one slide per ``## `` section
(after the title slide), solutions left out, and nothing loaded from the internet: reveal.js
and MathJax are copied next to the decks. One deck is opened in chromium (Playwright)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from course import course_sources, holds_solution, is_solution, read_source  # noqa: E402
from slides import build_slides  # noqa: E402

SOURCES = course_sources()
CHROMIUM = os.environ.get("DRSL_CHROMIUM", "/usr/bin/chromium")
FENCE = re.compile(r"^\s*(```|~~~)")


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    out = tmp_path_factory.mktemp("slides")
    build_slides(out, execute=False)
    return out


def _section_titles(nb) -> list[str]:
    """The ``## `` headings of the notebook's non-solution markdown, outside code fences."""
    titles = []
    for cell in nb.cells:
        if cell.cell_type != "markdown" or is_solution(cell):
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
    code = [c for c in cells if c.cell_type == "code" and not holds_solution(c)]
    assert len(soup.select("div.jp-CodeCell")) == len(code), "solutions in the deck, or cells lost"
    assert "BEGIN SOLUTION" not in soup.get_text(), "an answer cell's solution in the deck"


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


@pytest.mark.browser
def test_a_deck_runs_offline_in_chromium(decks):
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no chromium at {CHROMIUM}: run tools/ensure_chromium.sh")
    from playwright.sync_api import sync_playwright

    deck = decks / f"{SOURCES[0].stem}.slides.html"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True
        )
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

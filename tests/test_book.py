"""The HTML book (``make book``): built in fast mode into a temporary folder, then read in a real
browser (Debian's chromium through Playwright, as tests/test_browser.py does).

Checked on every page: it loads with no request leaving ``file://`` (MathJax, the theme and the
search are served from the book itself), MathJax has left no raw ``$...$``, ``\\(`` or ``\\[`` in
the rendered text, no traceback is shown; every notebook page has figures that load; every
internal link resolves (file and anchor); the search box finds a course word; solutions are
collapsed. The layout at 1280 x 900 (tests/layout.py): no formula clipped, at most one toggle per
exercise, no figure sticking out of its column or shrunk unreadably; a crafted page with one of
each fault shows that the checks catch them. Screenshots go to ``test-artifacts/book/``.
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
from layout import CLIPPED_MATH, OVERWIDE_FIGURES, TOGGLES_PER_EXERCISE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from book_pages import (  # noqa: E402
    EXPLORER_NOTE,
    SHOW,
    WIDGET_NOTE,
    book_notebook,
    explorer_stem,
    launch_header,
    solution_count,
    student_minutes,
    typeset_spec,
)
from course import read_source  # noqa: E402

VIEWPORT = {"width": 1280, "height": 900}
MAX_SHRINK = 1.5  # a figure shown narrower than its width / 1.5 is unreadable (tests/layout.py)
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


def test_book_has_every_notebook_the_spec_the_guide_the_glossary_and_api(book):
    out = book["out"]
    for stem in _course_stems():
        assert (out / "notebooks" / f"{stem}.html").is_file(), stem
    for page in ("index", "spec", "instructor", "glossary", "api", "search", "genindex"):
        assert (out / f"{page}.html").is_file(), page
    assert not (out / "results.html").is_file(), "the build-timing page is back"
    assert list((out / "generated").glob("drsl.*.html")), "no API page generated"
    assert (out / "_static" / "mathjax" / "MathJax.js").is_file()
    warnings = (book["src"] / "sphinx-warnings.log").read_text()
    assert "failed to import" not in warnings, warnings[:2000]
    glossary = (out / "glossary.html").read_text()
    for term in ("BNNeck", "PK batch", "mINP", "junk", "distractor", "reference item", "XBM"):
        assert f'id="term-{term.replace(" ", "-")}"' in glossary, term


def test_landing_page_gives_each_notebook_its_class_time_from_the_guide(book):
    from bs4 import BeautifulSoup

    landing = (book["out"] / "index.html").read_text()
    planned = student_minutes((REPO / "docs" / "instructor.md").read_text())
    rows = BeautifulSoup(landing, "html.parser").select("table tbody tr")
    shown = {}
    for row in rows:
        cells = [td.get_text().strip() for td in row.find_all("td")]
        link = row.find("a", href=True)
        if link and re.fullmatch(r"\d+ min", cells[-1]):
            shown[Path(link["href"]).stem] = int(cells[-1].split()[0])
    assert shown == {stem: planned[stem] for stem in _course_stems()}
    assert f"{sum(shown.values())} min" in rows[-1].get_text(), "the total row"
    assert not re.search(r"\d+ s\b", " ".join(r.get_text() for r in rows)), "build seconds shown"
    log = (book["src"] / "build-times.txt").read_text()  # the build's own timings: in its log
    for stem in _course_stems():
        assert re.search(rf"^{stem}\t[\d.]+ s$", log, flags=re.M), stem


def test_the_spec_page_typesets_its_formulas(book):
    html = (book["out"] / "spec.html").read_text()
    assert "sum_{j in P_a u N_a}" not in html, "the ASCII formula block is still shown"
    assert "\\mathrm{rank}^+(i)" in html and "\\ell^*_S(i)" in html


def test_each_notebook_page_offers_its_notebook_for_download(book):
    out = book["out"]
    for stem in _course_stems():
        html = (out / "notebooks" / f"{stem}.html").read_text()
        found = re.search(rf'href="(\.\./_downloads/[0-9a-f]+/{stem}\.ipynb)"', html)
        assert found, f"{stem}: no download link"
        import nbformat

        nb = nbformat.read(out / "notebooks" / found.group(1), as_version=4)
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), stem


def _widget_notebook():
    """A notebook with a tqdm bar (HBox of label, progress, counts) and a slider."""
    import nbformat

    def model(name, **state):
        return {"model_name": name, "state": state}

    ids = {"box": "b1", "label": "l1", "bar": "p1", "counts": "c1", "slider": "s1"}
    state = {
        "b1": model(
            "HBoxModel", children=[f"IPY_MODEL_{ids[k]}" for k in ("label", "bar", "counts")]
        ),
        "l1": model("HTMLModel", value="train: 100%"),
        "p1": model("FloatProgressModel", value=36.0, max=36.0),
        "c1": model("HTMLModel", value="36/36"),
        "s1": model("IntSliderModel", value=4),
    }
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    for model_id in ("b1", "s1"):
        cell = nbformat.v4.new_code_cell("show()")
        view = {"application/vnd.jupyter.widget-view+json": {"model_id": model_id}}
        cell.outputs = [nbformat.v4.new_output("display_data", data=view)]
        nb.cells.append(cell)
    return nb


def test_a_progress_bar_stays_a_bar_and_the_explorer_note_is_for_the_explorer_only():
    page = book_notebook(_widget_notebook(), "00_overview")
    bar, widget = (c.outputs[0]["data"]["text/html"] for c in page.cells)
    assert '<progress value="36" max="36">' in bar and "train: 100%" in bar
    assert widget == WIDGET_NOTE and "widgets" not in page.metadata
    explorer = book_notebook(_widget_notebook(), explorer_stem())
    assert explorer.cells[1].outputs[0]["data"]["text/html"] == EXPLORER_NOTE


def test_an_exercise_solution_of_prose_and_code_is_one_toggle():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("**Exercise 1.** Do it."),
        nbformat.v4.new_markdown_cell("**Solution 1.** Done.", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("## References"),
    ]
    sources = [c.source for c in book_notebook(nb).cells]
    assert sum(SHOW in text for text in sources) == 1
    assert sources[1].startswith("<details") and sources[4].startswith("</details>")


def test_the_typeset_spec_must_match_the_spec_block():
    equations = (REPO / "docs" / "book" / "spec-equations.md").read_text()
    spec = (REPO / "docs" / "drsl-loss-spec.md").read_text()
    assert "\\ell^*_S(i)" in typeset_spec(spec, equations)
    changed = spec.replace("rank+(i)     = 1", "rank+(i)     = 2")
    with pytest.raises(ValueError, match="spec-equations.md"):
        typeset_spec(changed, equations)


def test_the_guide_gives_every_notebook_a_class_time():
    planned = student_minutes((REPO / "docs" / "instructor.md").read_text())
    assert set(planned) == set(_course_stems())
    assert all(10 <= minutes <= 180 for minutes in planned.values())


def test_launch_links_follow_the_repository_url():
    alone = launch_header("00_overview", "../x/00_overview.ipynb", None)
    assert "Download this notebook" in alone and "binder" not in alone.lower()
    url = "https://github.com/o/r"
    links = launch_header("00_overview", "../x/00_overview.ipynb", url, colab=True)
    assert "https://mybinder.org/v2/gh/o/r/main?labpath=notebooks/00_overview.ipynb" in links
    colab = "https://colab.research.google.com/github/o/r/blob/main/notebooks/00_overview.ipynb"
    assert colab in links
    no_install = launch_header("00_overview", "../x/00_overview.ipynb", url, colab=False)
    assert "mybinder.org" in no_install and "colab" not in no_install.lower()


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
        self.page = browser.new_page(viewport=VIEWPORT)
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
        elif name.startswith("notebooks/") or name in ("spec.html", "glossary.html"):
            page.screenshot(path=ARTIFACTS / f"{path.stem}.png")
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


def _layout_problems(page, *, expected_toggles: int | None = None) -> tuple[list[str], dict]:
    """The page's layout faults (tests/layout.py) and how much was measured."""
    page.evaluate(_MATHJAX_DONE)
    maths = page.evaluate(CLIPPED_MATH, "article")
    toggles = page.evaluate(TOGGLES_PER_EXERCISE, "article")
    figures = page.evaluate(OVERWIDE_FIGURES, ["article", ".bd-content", MAX_SHRINK])
    problems = maths["problems"] + toggles["problems"] + figures["problems"]
    if expected_toggles is not None and toggles["toggles"] != expected_toggles:
        problems.append(f"{toggles['toggles']} solution toggles for {expected_toggles} solutions")
    counts = {"formulas": maths["measured"], "figures": figures["measured"]}
    return problems, counts | {"exercises": toggles["exercises"]}


def test_layout_fits_formulas_toggles_and_figures_on_every_page(book, browser):
    """At 1280 x 900: no formula clipped, one toggle per exercise, every figure fits."""
    problems, totals, tab = [], {"formulas": 0, "figures": 0, "exercises": 0}, _Tab(browser)
    sources = {stem: REPO / "notebooks" / f"{stem}.py" for stem in _course_stems()}
    solutions = {stem: solution_count(read_source(path)) for stem, path in sources.items()}
    for path in _pages(book["out"]):
        name = path.relative_to(book["out"]).as_posix()
        if name.startswith("generated/"):
            continue  # the API pages: docstrings, no figures or exercises
        page = tab.goto(path.as_uri())
        found, counts = _layout_problems(page, expected_toggles=solutions.get(path.stem))
        problems += [f"{name}: {p}" for p in found]
        totals = {k: totals[k] + counts[k] for k in totals}
    tab.page.close()
    assert problems == [], "\n".join(problems)
    assert totals["formulas"] > 100 and totals["figures"] >= len(_course_stems()), totals
    assert totals["exercises"] == sum(solutions.values()), totals


CRAFTED = """
<p><strong>Exercise 1.</strong> A crafted exercise with two toggles.</p>
<details><summary>Show solution</summary><p>one</p></details>
<details><summary>Show solution</summary><p>two</p></details>
<div style="overflow: hidden; width: 240px">\\[\\begin{matrix} a_{1} & a_{2} & a_{3} & a_{4} &
 a_{5} & a_{6} & a_{7} & a_{8} & a_{9} & a_{10} & a_{11} & a_{12} & a_{13} & a_{14} & a_{15}
 & a_{16} & a_{17} & a_{18} \\end{matrix}\\]</div>
<img alt="wide" src="data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg'
 width='2400' height='300'><rect width='2400' height='300' fill='teal'/></svg>">
"""


def test_layout_checks_catch_a_clipped_formula_a_second_toggle_and_a_wide_figure(book, browser):
    """A page of the built book (same theme, CSS and MathJax) with one of each fault planted."""
    glossary = (book["out"] / "glossary.html").read_text(encoding="utf-8")
    start = glossary.index("<article")
    body = glossary.index(">", start) + 1
    crafted = book["out"] / "crafted.html"
    crafted.write_text(glossary[:body] + CRAFTED + glossary[glossary.index("</article>") :])
    tab = _Tab(browser)
    page = tab.goto(crafted.as_uri())
    problems, counts = _layout_problems(page)
    page.screenshot(path=ARTIFACTS / "crafted-faults.png")
    tab.page.close()
    crafted.unlink()
    text = "\n".join(problems)
    assert len(problems) == 3, text
    assert "clipped" in problems[0] and "Exercise 1. has 2 toggles" in problems[1], text
    assert "wide" in problems[2] and "shrunk" in problems[2], text

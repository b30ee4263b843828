"""The imbalance verdict, said once.

The decisive experiment's verdict is computed as data by ``drsl.endpoints.decisive_verdict``
from ``experiments/results/decisive.csv`` and ``configs/decisive/plan.toml``; notebook 05
renders it. Every other sentence in the course and the README that states a verdict on the
imbalance claim must quote its headline word for word, so no two places can disagree; while
final runs are missing the headline makes no claim, and neither may any page. The first
experiment's verdict (``drsl.analysis.imbalance_verdict``) is kept as a function, tested here,
and quoted nowhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import numpy as np
import pandas as pd
import pytest
import tomllib

from drsl.analysis import imbalance_verdict, sweep_history
from drsl.endpoints import decisive_verdict

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
EXPERIMENT = ROOT / "notebooks" / "05_imbalance.py"
PLAN = ROOT / "configs" / "decisive" / "plan.toml"


def _rows(costs: dict, with_ce: bool = False, seeds: int = 4) -> pd.DataFrame:
    """Final test rows of two cells (16 x 4 without and with a memory) for losses whose
    memory costs ``costs[loss]`` mAP; a seed shifts every loss alike, plus a little noise."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        base = rng.normal(0.4, 0.05)
        for memory in (0, 64):
            for loss, cost in costs.items():
                mAP = base - (memory > 0) * cost + rng.normal(0, 0.002)
                rows.append(
                    dict(
                        phase="final",
                        split="test",
                        P=16,
                        K=4,
                        memory_size=memory,
                        loss=loss,
                        with_ce=with_ce,
                        seed=seed,
                        mAP=mAP,
                    )  # fmt: skip
                )
    return pd.DataFrame(rows)


CELLS = dict(reference=(16, 4, 0), extreme=(16, 4, 64))


def test_a_baseline_that_loses_more_and_ends_below_is_outlasted():
    v = imbalance_verdict(_rows({"drsl": 0.0, "contrastive": 0.3, "triplet": 0.001}), **CELLS)
    assert v.outlasted == {False: ("contrastive",), True: ()}
    assert v.regimes == (False,)
    gaps = v.gaps.set_index("baseline")
    assert gaps.loc["contrastive", "diff"] == pytest.approx(0.3, abs=0.01)
    assert gaps.loc["contrastive", "low"] > 0 and gaps.loc["triplet", "low"] < 0
    assert "one regime only: with the metric loss alone" in v.headline
    assert "contrastive lose more of their mAP than DRSL" in v.headline


def test_no_baseline_outlasted_says_not_shown_and_both_regimes_say_both():
    none = imbalance_verdict(_rows({"drsl": 0.1, "contrastive": 0.1}), **CELLS)
    assert none.regimes == () and "not shown" in none.headline
    both = pd.concat(
        [_rows({"drsl": 0.0, "smooth_ap": 0.2}, ce) for ce in (False, True)], ignore_index=True
    )
    v = imbalance_verdict(both, **CELLS)
    assert v.regimes == (False, True) and "holds in both regimes" in v.headline
    assert "Smooth-AP with the metric loss alone" in v.headline


def test_the_headline_has_no_number():
    """Every mention quotes the headline, so it carries no number to go stale."""
    for costs in ({"drsl": 0.0, "contrastive": 0.3}, {"drsl": 0.1, "contrastive": 0.1}):
        assert not re.search(r"\d", imbalance_verdict(_rows(costs), **CELLS).headline)


def test_sweep_history_reads_the_steps_and_the_equal_batch_pair():
    sweep = pd.read_csv(RESULTS / "sweep.csv")
    past = sweep_history(sweep, pd.read_csv(RESULTS / "sensitivity_studies.csv"))
    assert past["runs"] == len(sweep) and past["lr"] == sweep["lr"].iloc[0]
    assert past["steps"] == {
        (int(p), int(k)): int(n) for (p, k), n in sweep.groupby(["P", "K"]).steps.first().items()
    }
    assert set(past["equal_batch"]) == set(sweep["loss"])  # one pair per loss
    assert past["imbalanced_no_worse"] == all(b >= a for a, b in past["equal_batch"].values())


# ------------------------------------------------------------------ one verdict, said once
def _verdict():
    """The decisive verdict on the committed results, as notebook 05 computes it."""
    plan = tomllib.loads(PLAN.read_text())
    return decisive_verdict(pd.read_csv(RESULTS / "decisive.csv"), plan)


def _headline() -> str:
    return _verdict().headline


def _prose() -> dict[str, str]:
    """README, the docs and every notebook's markdown; one block per paragraph, list item,
    heading or table row (a line of its own), each with one space between words."""
    texts = {p.name: p.read_text() for p in [ROOT / "README.md", *ROOT.glob("docs/*.md")]}
    for src in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        cells = jupytext.read(src).cells
        texts[src.name] = "\n\n".join(c.source for c in cells if c.cell_type == "markdown")
    out = {}
    for name, text in texts.items():
        text = re.sub(r"[*`]", "", text)
        text = re.sub(r"\n(?=\s*(- |\d+\. |\||#|```))", "\n\n", text)  # items, rows, headings
        text = re.sub(r"^(#+ .*)$", r"\1\n", text, flags=re.M)  # a heading ends its block
        out[name] = "\n\n".join(" ".join(b.split()) for b in re.split(r"\n\s*\n", text))
    return out


VERDICT_WORDS = re.compile(
    r"\b(holds?|established|shown|resists?|alleviates?|advantage|outlasts?|confirm\w*|"
    r"refute\w*|supports?|keeps? (its|most)|better under|trains? better|hurts?|most robust)\b",
    re.I,
)
ABOUT_THE_CLAIM = re.compile(
    r"\b(claim|verdict)\b|\bDRSL\b.*\bimbalance|\bimbalance\w*\b.*\bDRSL\b"
)
QUESTION = re.compile(r"\b(whether|question|the paper says|asks?|returns)\b", re.I)  # not a verdict
#: verdicts of the first experiment, and phrasings of it, that no page may keep
CONTRADICTIONS = re.compile(
    r"no (established )?advantage for DRSL|not established|no sign that (positive/negative )?"
    r"imbalance|holds in one regime|outlasts no other loss|most robust of the|"
    r"keeps its retrieval quality",
    re.I,
)


def _sentences_about_the_claim(text: str, headline: str) -> list[str]:
    text = text.replace(" ".join(headline.split()), " [the verdict]. ")
    sentences = [
        s for block in text.split("\n\n") for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(\[])", block)
    ]
    return [
        s
        for s in sentences
        if ABOUT_THE_CLAIM.search(s) and VERDICT_WORDS.search(s) and not QUESTION.search(s)
    ]


def test_every_verdict_on_the_claim_quotes_the_computed_one():
    """A sentence that names the claim (or DRSL and imbalance) and states a verdict holds the
    computed headline word for word; no page keeps the first experiment's verdict. Once every
    final run is in, the README quotes the headline; until then no page states one."""
    verdict = _verdict()
    prose = _prose()
    bad = {}
    for name, text in prose.items():
        own = [
            s
            for s in _sentences_about_the_claim(text, verdict.headline)
            if "[the verdict]" not in s
        ]
        old = CONTRADICTIONS.findall(text)
        if own or old:
            bad[name] = own + [str(o) for o in old]
    assert not bad, f"verdicts that do not quote notebook 05's computed headline: {bad}"
    quoted = [name for name, text in prose.items() if verdict.headline in text.replace("\n\n", " ")]
    if verdict.complete:
        assert "README.md" in quoted, "the README quotes the computed headline"
    else:
        assert quoted == [], "no page quotes a headline of runs still in progress"


def test_notebook_05_renders_the_decisive_verdict_and_the_readme_points_there():
    code = "\n".join(c.source for c in jupytext.read(EXPERIMENT).cells if c.cell_type == "code")
    assert "decisive_verdict(rows, PLAN)" in code and "verdict.headline" in code
    assert "imbalance_verdict" not in code  # the first experiment's verdict is not the course's
    readme = (ROOT / "README.md").read_text()
    assert "notebooks/05_imbalance" in readme and "decisive_verdict" in readme


def test_the_check_catches_a_contradicting_sentence():
    headline = _headline()
    text = f"Notebook 05 says: {headline} The claim is not established on our data."
    flagged = _sentences_about_the_claim(" ".join(text.split()), headline)
    assert flagged == ["The claim is not established on our data."]
    assert _sentences_about_the_claim(f"The verdict: {headline}", headline) == []
    old = "On our data the claim holds in one regime only: DRSL outlasts Smooth-AP."
    assert _sentences_about_the_claim(old, headline) == [old] and CONTRADICTIONS.search(old)


def test_an_endpoint_table_in_the_readme_is_the_computed_one():
    """The README may show the decisive endpoint table only as ``endpoint_markdown`` prints it
    from the committed results, and only once every final run is in."""
    from drsl.endpoints import endpoint_markdown

    verdict = _verdict()
    readme = (ROOT / "README.md").read_text()
    shown = [b for b in readme.split("\n\n") if b.startswith("| endpoint | loss |")]
    if not verdict.complete:
        assert shown == [], "an endpoint table before every final run is in"
    for table in shown:
        assert table.strip() == endpoint_markdown(verdict.table)

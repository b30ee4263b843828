"""drsl.geometry_reading: the two-model comparison of notebook 06 as data, and its reading,
whose every sentence fits the numbers it prints (checked on embeddings of known quality)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from drsl import geometry as G
from drsl.geometry_reading import WORDS, GeometryReading, geometry_reading
from drsl.metrics import evaluate_rank


def _split(noise: float, seed: int = 0, num_ids: int = 10, per_id: int = 7):
    """Identity centres plus noise (the same identities and cameras for every noise level):
    the first image of each identity is the query, the rest the gallery."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(num_ids, 8)) * 2.0
    pids = np.repeat(np.arange(1, num_ids + 1), per_id)
    cams = rng.integers(0, 4, size=pids.size)
    feats = centres[pids - 1] + noise * np.random.default_rng(seed).normal(size=(pids.size, 8))
    first = np.zeros(pids.size, bool)
    first[np.unique(pids, return_index=True)[1]] = True
    return feats[first], feats[~first], pids[first], pids[~first], cams[first], cams[~first]


def _model(noise: float, seed: int = 0):
    qf, gf, qp, gp, qc, gc = _split(noise, seed)
    geo = G.pair_geometry(qf, gf, qp, gp, qc, gc)
    norms = np.linalg.norm(np.concatenate([qf, gf]), axis=1)
    return geo, evaluate_rank(geo.dist, qp, gp, qc, gc), norms


@pytest.fixture(scope="module")
def clean_vs_noisy():
    (ga, ra, na), (gb, rb, nb) = _model(0.3), _model(3.0, seed=1)
    return geometry_reading({"clean": ga, "noisy": gb}, {"clean": ra, "noisy": rb},
                            {"clean": na, "noisy": nb})  # fmt: skip


def _reading(**changes) -> GeometryReading:
    """A reading built by hand: every number chosen by the test."""
    stat = {"mean_a": 0.9, "mean_b": 0.8, "diff": 0.1, "se": 0.01, "a_higher": 0.7,
            "b_higher": 0.3, "queries": 10}  # fmt: skip
    base = GeometryReading(
        models=("A", "B"),
        queries=10,
        gallery=60,
        negatives_per_query=54,
        compared={
            "mAP": (0.5, 0.4),
            "rank-1": (0.5, 0.4),
            "mINP": (0.5, 0.4),
            "the pooled distance AUC": (0.9, 0.8),
            "the pooled angle AUC": (0.9, 0.8),
            "the median rho": (0.95, 0.93),
        },  # fmt: skip
        overlap=(0.5, 0.6),
        pos_angle_mean=(30.0, 35.0),
        neg_angle_mean=(80.0, 85.0),
        norms={"A": (10.0, 1.0), "B": (12.0, 1.2)},
        paired={k: dict(stat) for k in ("auc_distance", "auc_angle", "spearman")},
    )
    return replace(base, **changes)


def test_every_comparison_is_stated_once_with_the_word_its_numbers_give(clean_vs_noisy):
    reading = clean_vs_noisy
    text = reading.markdown()
    compared = reading.compared
    found = re.findall(
        "(" + "|".join(map(re.escape, compared)) + r") is (\w+) for clean \(([\d.]+) against "
        r"([\d.]+)\)",
        text,
    )
    assert sorted(what for what, *_ in found) == sorted(compared)
    for what, word, a, b in found:
        assert word == WORDS[int(np.sign(float(a) - float(b)))], (what, word, a, b)
        assert np.allclose([float(a), float(b)], compared[what], atol=5e-5, rtol=0), what
    assert reading.word("mAP") == "higher"  # the clean embedding retrieves better
    assert text == "\n".join(reading.bullets()) and len(reading.bullets()) == 6
    assert all(bullet.startswith("- **") for bullet in reading.bullets())


def test_the_word_is_taken_at_the_printed_precision():
    reading = _reading(compared={"mAP": (0.50001, 0.50003), "rank-1": (0.4, 0.5)})
    assert reading.word("mAP") == "equal"
    assert reading.claim("mAP") == "mAP is equal for A (0.5000 against 0.5000)"
    assert reading.word("rank-1") == "lower"


def test_differences_beyond_two_standard_errors_are_listed_in_the_table_and_the_reading(
    clean_vs_noisy,
):
    beyond = clean_vs_noisy.beyond_noise
    assert "auc_distance" in beyond  # clean against very noisy clusters: far beyond the noise
    table = clean_vs_noisy.paired_table()
    heads = ["clean", "noisy", "clean - noisy", "std. error", "clean higher", "noisy higher"]
    assert list(table.columns) == [*heads, "queries", "beyond 2 SE"]
    assert table.index[table["beyond 2 SE"] == "yes"].tolist() == list(beyond)
    se_rule = table["clean - noisy"].abs() > 2 * table["std. error"]
    assert (se_rule == (table["beyond 2 SE"] == "yes")).all()
    listed = clean_vs_noisy.markdown().split("beyond two standard errors of this query set: ")[1]
    assert listed.startswith(", ".join(beyond) + ".")


def test_a_model_against_itself_has_nothing_beyond_the_noise_and_wins_no_query():
    geo, res, norms = _model(1.0)
    reading = geometry_reading({"A": geo, "B": geo}, {"A": res, "B": res}, {"A": norms, "B": norms})
    assert reading.beyond_noise == ()
    assert all(reading.word(what) == "equal" for what in reading.compared)
    text = reading.markdown()
    assert "query set: none." in text
    assert "by rho A is never the higher one" in text and "neither model" not in text


def test_the_shares_sentence_says_neither_model_wins_every_query_only_when_true():
    assert "neither model wins every query" in _reading().markdown()
    paired = {k: {**_reading().paired[k]} for k in _reading().paired}
    paired["auc_angle"]["b_higher"] = 0.0
    text = _reading(paired=paired).markdown()
    assert "by angle AUC B is never the higher one" in text
    assert "neither model" not in text


def test_the_norms_vary_little_only_below_the_threshold_and_with_rho_near_one():
    assert "vary little" in _reading().markdown()
    wide = _reading(norms={"A": (10.0, 1.0), "B": (12.0, 6.0)})
    assert "vary little" not in wide.markdown() and "vary by up to 50%" in wide.markdown()
    far = _reading(compared={**_reading().compared, "the median rho": (0.95, 0.5)})
    assert "vary little" not in far.markdown() and "0.95 and 0.50" in far.markdown()


def test_precomputed_statistics_give_the_same_reading():
    (ga, ra, na), (gb, rb, nb) = _model(0.5), _model(1.5, seed=2)
    geo, res, norms = {"a": ga, "b": gb}, {"a": ra, "b": rb}, {"a": na, "b": nb}
    stats = pd.DataFrame({name: g.stats() for name, g in geo.items()})
    computed = geometry_reading(geo, res, norms)
    assert geometry_reading(geo, res, norms, stats=stats).markdown() == computed.markdown()
    assert computed.negatives_per_query == ga.num_neg // ga.dist.shape[0]
    assert computed.norms["a"] == pytest.approx((na.mean(), na.std(ddof=1)))


def test_it_compares_exactly_two_models():
    geo, res, norms = _model(1.0)
    with pytest.raises(ValueError, match="two models"):
        geometry_reading({"A": geo}, {"A": res}, {"A": norms})

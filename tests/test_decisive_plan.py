"""The committed plan of the decisive experiment: its losses, cells, endpoints, fresh seeds and
a cost estimate within the budget it was cut to."""

from __future__ import annotations

from pathlib import Path

import tomllib

from drsl.losses import LOSSES

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_plan_names_every_endpoint_loss_and_fresh_seeds():
    plan = tomllib.loads((ROOT / "configs/decisive/plan.toml").read_text())
    assert set(plan["losses"]) <= set(LOSSES)
    assert {"drsl", "drsl_rank", "smooth_ap", "contrastive", "triplet_soft",
            "multi_similarity", "circle"} == set(plan["losses"])  # fmt: skip
    assert len(plan["seeds"]) >= 5 and plan["tune_seed"] not in plan["seeds"]
    assert {e["id"] for e in plan["endpoints"]} == {"E1", "E2", "E3", "E4"}
    for ep in plan["endpoints"]:
        for key in ("plus", "minus"):
            if key in ep:
                assert ep[key] in plan["cells"]
    assert set(plan["tune_cells"]) <= set(plan["cells"])
    assert plan["estimate"]["core_hours"] <= 8.5
    est = plan["estimate"]
    runs = len(plan["cells"]) * len(plan["losses"]) * len(plan["seeds"]) * len(plan["with_ce"])
    assert est["final_runs"] == runs
    assert est["tune_runs"] == len(plan["losses"]) * len(plan["lrs"]) * len(plan["tune_cells"])

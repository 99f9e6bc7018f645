"""The report's Budget section: a time-limited run's limit, its plan, what the run did to keep it
(the keeper's re-plans), and each stage's planned against used seconds, from the manifest."""

from __future__ import annotations

from typing import Any

from harness.report.collect import RunData
from harness.report.fmt import as_float

AFTER_STAGES = ("export and benchmark", "int8", "ensemble", "submission", "report")


def budget_view(run: RunData) -> dict[str, Any] | None:
    """None for a run without a time limit; else what the section shows."""
    from harness.report import time_figures

    budget = run.manifest.get("budget")
    if not isinstance(budget, dict) or not isinstance(budget.get("plan"), dict):
        return None
    plan, stages = budget["plan"], run.manifest.get("stages_s") or {}
    costs = budget.get("costs") or {}
    # the calibration and the run's start are measured, not planned: the same figure on both sides
    start = (as_float(stages.get("calibration")) or 0.0) + (as_float(stages.get("start")) or 0.0) \
        if "start" in stages else None
    rows = [
        {"stage": "calibration and start", "planned": start, "used": start},
        {"stage": "training", "planned": as_float(plan.get("training_s")), "used": as_float(stages.get("training"))},
        # the run's own seconds less those before training (`start_s`), which the first row has
        {"stage": "after training", "planned": (as_float(plan.get("after_s")) or 0.0) + (as_float(costs.get("run_s")) or 0.0)
         - (as_float(costs.get("start_s")) or 0.0),
         "used": sum(as_float(stages.get(s)) or 0.0 for s in AFTER_STAGES) if any(s in stages for s in AFTER_STAGES)
         else None},
    ]
    jobs = [j for s in run.manifest.get("sessions", []) for j in s.get("jobs", [])
            if j.get("planned_s") is not None and j.get("wall_s") is not None]
    used = as_float(run.manifest.get("duration_s"))
    limit = as_float(budget.get("limit_s"))
    return {
        "limit_s": limit, "predicted_s": as_float(plan.get("predicted_s")), "used_s": used,
        "within": used is not None and limit is not None and used <= limit * 1.05 + (30 if limit < 600 else 0),
        "k": plan.get("k"), "slots": plan.get("slots"), "full_recipes": plan.get("full_recipes"),
        "models": plan.get("jobs") or [], "given_up": budget.get("given_up") or [],
        "left_out": budget.get("left_out") or [],
        "standby": plan.get("standby") or {},
        "events": budget.get("events") or [], "stages": rows,
        "calibration": {"cached": bool((budget.get("calibration") or {}).get("cached")),
                        "seconds": (budget.get("calibration") or {}).get("seconds")},
        "jobs": [{"job": j["job"], "planned": j["planned_s"], "used": j["wall_s"]} for j in jobs],
        "chart": time_figures.budget_bars(rows, jobs, limit) if any(r["used"] for r in rows) else None,
    }

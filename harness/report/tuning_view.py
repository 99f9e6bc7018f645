"""The report's tuning block: what `harness tune` found for a model trained with `run --tuned`,
from the runs/tuned/<model>.json document the run recorded (any hand edit degrades to '-')."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from harness.report.collect import ModelData, RunData
from harness.report.fmt import as_float, fmt_value, pick


def _when(v: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(v)) if v else None
    except ValueError:
        return None


def _seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    try:
        return (end - start).total_seconds() if start and end else None
    except TypeError:  # one naive, one aware: no honest answer
        return None


def _same(a: Any, b: Any) -> bool:
    fa, fb = as_float(a), as_float(b)
    if fa is not None and fb is not None:
        return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _space_text(entry: Any) -> str:
    try:
        from harness.tune.space import describe

        return describe(tuple(entry))
    except Exception:  # noqa: BLE001 - a hand-edited entry prints as it is
        return fmt_value(entry)


def _model_defaults(name: str) -> dict[str, Any]:
    """The registered model's default parameters, or {} when it is not registered here."""
    try:
        from harness.registry import get_model

        return dict(get_model(name).params())
    except Exception:  # noqa: BLE001 - unknown or broken plugin: the baseline trial still tells
        return {}


def tuning_view(run: RunData, m: ModelData, lb_row: dict[str, Any]) -> dict[str, Any] | None:
    """The tuning block of a model trained with `harness run --tuned` parameters, or None."""
    if m.tuned_source is None:
        return None
    if not isinstance(m.tuned, dict):
        return {"available": False, "source": m.tuned_source,
                "note": f"This model was trained with tuned parameters from {m.tuned_source}, "
                        "which could not be read now (see the notes at the top)."}
    from harness.report import time_figures

    doc = m.tuned
    d = lambda key: doc.get(key) if isinstance(doc.get(key), dict) else {}  # noqa: E731
    space, fixed, tuned, budget, counts = (d("search_space"), d("fixed"), d("params"),
                                           d("budget"), d("n_trials"))
    raw = [t for t in doc.get("trials") or [] if isinstance(t, dict)]
    starts = [w for w in (_when(t.get("datetime_start")) for t in raw) if w is not None]
    t0 = None
    for w in starts:  # min() would raise on naive and aware times mixed
        t0 = w if t0 is None or (_seconds_between(w, t0) or 0) > 0 else t0
    trials = []
    for i, t in enumerate(raw):
        curve = [as_float(v) for v in t.get("curve") or [] if as_float(v) is not None] \
            if isinstance(t.get("curve"), list) else []
        number = as_float(t.get("number"))
        trials.append({"number": int(number) if number is not None else i,
                       "state": str(t.get("state") or "unknown").lower(),
                       "value": as_float(t.get("value")), "last": curve[-1] if curve else None,
                       "t": _seconds_between(t0, _when(t.get("datetime_complete"))),
                       "baseline": bool(t.get("baseline"))})

    base = doc.get("baseline") if isinstance(doc.get("baseline"), dict) else None
    if base is None:
        bt = next((t for t in trials if t["baseline"] and t["value"] is not None), None)
        base = {"trial": bt["number"], "value": bt["value"], "params": {}} if bt else None
    base_params = base.get("params") if base and isinstance(base.get("params"), dict) else {}
    best_value = as_float(doc.get("best_value"))
    base_value = as_float(base.get("value")) if base else None

    importances = {str(k): as_float(v) for k, v in d("importances").items() if as_float(v) is not None}
    defaults = _model_defaults(m.name)
    run_params = (run.manifest.get("params") or {}).get(m.name) \
        if isinstance(run.manifest.get("params"), dict) else None
    run_params = run_params if isinstance(run_params, dict) else {}
    params = []
    for name in dict.fromkeys([*space, *fixed, *tuned]):
        has_default = name in base_params or name in defaults
        default = base_params[name] if name in base_params else defaults.get(name)
        params.append({
            "name": name,
            "space": "fixed (--fix)" if name in fixed else _space_text(space[name])
            if name in space else "-",
            "default": default if has_default else None, "has_default": has_default,
            "tuned": tuned.get(name), "has_tuned": name in tuned,
            "changed": has_default and name in tuned and not _same(default, tuned[name]),
            "importance": importances.get(name),
        })
    stale = [n for n in tuned if n in run_params and not _same(run_params[n], tuned[n])]

    return {
        "available": True,
        "source": m.tuned_source,
        "study": doc.get("study_name"), "storage": doc.get("storage"),
        "metric": doc.get("metric") or "cv_accuracy",
        "updated": doc.get("updated"),
        "best_value": best_value, "best_trial": doc.get("best_trial"),
        "baseline_value": base_value, "baseline_trial": base.get("trial") if base else None,
        "gain": best_value - base_value if best_value is not None and base_value is not None
        else None,
        "run_accuracy": lb_row.get("cv_accuracy"),
        "counts": pick(counts, "complete", "pruned", "fail", "running", "waiting"),
        "budget": pick(budget, "rows", "limit", "folds", "folds_used", "epochs", "seed",
                        "pruner", "trials", "timeout_s", "trial_seconds"),
        "params": params,
        "stale": stale,
        "figure": time_figures.tuning_trials(trials) if trials else None,
        "importances": time_figures.param_importances(importances, doc.get("importance_evaluator"))
        if importances else None,
        "importances_note": doc.get("importances_note"),
        "note": None,
    }

"""What a tuning study reports: the runs/tuned/<model>.json document and one line per finished trial.

    doc = summarize(study, spec, opts, budget, space, storage_path, seed)
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness import __version__
from harness.core.progress import fmt_seconds
from harness.registry import ModelSpec
from harness.tune.space import check_params

if TYPE_CHECKING:
    from harness.tune.options import TuneOptions


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone().isoformat(timespec="seconds") if dt else None


def _jsonable(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def plain_json(obj: Any) -> Any:
    """Plain JSON values (tuples become lists), as the storage gives them back."""
    return json.loads(json.dumps(obj, default=_jsonable))


def finished_trials(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def _importances(study: Any, seed: int) -> tuple[dict[str, float] | None, str | None, str | None]:
    """Parameter importances: fANOVA (Optuna's default) where scikit-learn is installed, else
    PED-ANOVA (no extra dependency). Returns (importances, evaluator, note)."""
    import optuna

    try:
        import sklearn  # noqa: F401  (fANOVA's random forest)

        evaluator: Any = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    except ImportError:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    name = type(evaluator).__name__.replace("ImportanceEvaluator", "").lower()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as e:  # e.g. every trial had the same parameters; never worth failing a study
        return None, name, f"not computed: {type(e).__name__}: {e}"
    return {k: round(float(v), 6) for k, v in imp.items()}, name, None


def summarize(study: Any, spec: ModelSpec, opts: TuneOptions, budget: dict[str, Any],
              space: dict[str, tuple], storage_path: Path, seed: int) -> dict[str, Any]:
    """The runs/tuned/<model>.json document (see the module docstring and the README)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    rows = []
    for t in trials:
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        rows.append({
            "number": t.number, "state": t.state.name.lower(),
            "value": t.value if t.state == TrialState.COMPLETE else None,  # CV accuracy of complete trials
            "params": {k: _jsonable(v) for k, v in t.params.items()},
            "datetime_start": _iso(t.datetime_start), "datetime_complete": _iso(t.datetime_complete),
            "duration_s": round(duration, 2) if duration is not None else None,
            "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
            "fold_accuracies": t.user_attrs.get("fold_accuracies"),
            "pruned_at_epoch": t.user_attrs.get("pruned_at_epoch"),
            "baseline": bool(t.user_attrs.get("baseline")),
        })
    importances, note, evaluator = None, None, None
    if len(complete) >= 2:
        importances, evaluator, note = _importances(study, seed)
    else:
        note = "needs at least 2 complete trials"
    baseline = next((t for t in trials if t.user_attrs.get("baseline") and t.state == TrialState.COMPLETE), None)
    counts = {s: sum(t.state.name.lower() == s for t in trials)
              for s in ("complete", "pruned", "fail", "running", "waiting")}
    params = {**opts.fix, **({k: _jsonable(v) for k, v in best.params.items()} if best else {})}
    return {
        "model": spec.name,
        "study_name": study.study_name,
        "storage": str(storage_path),
        "metric": "cv_accuracy",
        "direction": "maximize",
        "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "params": check_params(spec, params, where="best trial") if best else {},
        "fixed": dict(opts.fix),
        "baseline": {"trial": baseline.number, "value": baseline.value,
                     "params": {k: _jsonable(v) for k, v in baseline.params.items()}} if baseline else None,
        "search_space": plain_json(space),
        "budget": {**budget, "trials": opts.trials, "timeout_s": opts.timeout,
                   "trial_seconds": round(sum(r["duration_s"] or 0 for r in rows), 1)},
        "n_trials": counts,
        "importances": importances,
        "importance_evaluator": evaluator,
        "importances_note": note,
        "trials": rows,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "harness_version": __version__,
    }


class TrialProgress:
    """One line per finished trial on stderr (a tqdm bar over trials on a terminal)."""

    def __init__(self, target: int, done: int, timeout: float | None, say: Callable[[str], None],
                 tty: bool) -> None:
        self.target, self.timeout, self.say = target, timeout, say
        self.t0 = time.perf_counter()
        self.bar = None
        if tty:
            from tqdm import tqdm

            self.bar = tqdm(total=target, initial=min(done, target), desc="tune", unit="trial",
                            file=sys.stderr, dynamic_ncols=True)

    def trial_done(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        finished = finished_trials(study)
        n = len(finished)
        elapsed = time.perf_counter() - self.t0
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in finished
                     if t.datetime_complete and t.datetime_start]
        eta = (sum(durations) / len(durations)) * max(self.target - n, 0) if durations else 0.0
        if self.timeout is not None:
            eta = min(eta, max(self.timeout - elapsed, 0.0))
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
        best_txt = f"best {best.value:.4f} (#{best.number})" if best else "best -"
        if trial.state == TrialState.COMPLETE:
            what = f"{trial.value:.4f}"
        elif trial.state == TrialState.PRUNED:
            what = f"pruned at epoch {trial.user_attrs.get('pruned_at_epoch', '?')}"
            if trial.intermediate_values:
                what += f" (val {trial.intermediate_values[max(trial.intermediate_values)]:.4f})"
        else:
            what = trial.state.name.lower()
        if self.bar is not None:
            self.bar.n = min(n, self.target)
            self.bar.set_postfix_str(f"#{trial.number} {what}, {best_txt}")
            self.bar.refresh()
        else:
            over = " (beyond the target: another process shares the study)" if n > self.target else ""
            self.say(f"trial {n}/{self.target} (#{trial.number}): {what}  {best_txt}  "
                     f"elapsed {fmt_seconds(elapsed)}  ETA {fmt_seconds(eta)}{over}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

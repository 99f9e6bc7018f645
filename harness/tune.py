"""Hyperparameter tuning with Optuna over the search space each model plugin declares.

    result = tune(settings, TuneOptions(model="cnn_small", trials=20, limit=8000))
    params, source = load_tuned(settings.runs_dir, get_model("cnn_small"))   # what `run --tuned` uses

Protocol (what a trial's score means):
- rows: all of train.csv, or `stratified_subset(y, limit, seed)` with `limit`, exactly as
  `harness run --limit` picks them;
- folds: `make_folds(y[rows], folds, seed)`, the very folds `harness run --folds K --seed S` uses;
  a trial trains the first `folds_used` of them (fold f validates on fold f and trains on the
  other K-1, with `harness run`'s per-fold seed), and scores the accuracy over those folds'
  validation rows pooled. With `folds_used == folds` that is `harness run`'s CV accuracy;
- epochs: the model's own (or `epochs`, a budget knob that is never saved as a tuned value);
- pruning: the first fold reports its validation accuracy after every epoch; Optuna's
  MedianPruner stops a trial whose accuracy is below the median of earlier trials at that epoch
  (after 3 finished trials, and not in the first third of the epochs).

Storage: an Optuna study in `runs/tune/<model>.db` (SQLite), so an interrupted `tune` resumes
(`trials` is the number of finished trials the study should reach, not a per-call count; the
trial cut off by Ctrl-C is queued again) and several processes can work on one study. The first
trial of a new study scores the model's defaults (the baseline). After every trial the best
parameters, every trial and the parameter importances go to `runs/tuned/<model>.json`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness import __version__, io
from harness.config import Settings
from harness.errors import ModelError, UsageError
from harness.registry import ModelSpec, get_model

KINDS = ("int", "float", "log", "categorical")
PRUNERS = ("median", "hyperband", "none")
STARTUP_TRIALS = 5          # TPE: random trials (after the baseline) before it models the space
PRUNE_STARTUP_TRIALS = 3    # MedianPruner: trials that always run to the end first
PRUNE_WARMUP_FRACTION = 3   # MedianPruner: no pruning in the first third of the epochs (noisy)
HEARTBEAT_S = 60            # a trial whose process died is failed after 3 missed heartbeats


# ----------------------------------------------------------------------------- search spaces

def search_space(spec: ModelSpec) -> dict[str, tuple]:
    """The plugin's declared space, checked: name -> (kind, ...) with known parameter names."""
    known = spec.params()
    space: dict[str, tuple] = {}
    for name, entry in spec.search_space.items():
        where = f"model {spec.name!r}: search space entry {name!r}"
        if name not in known:
            raise ModelError(f"{where} is not a parameter of the model (known: {', '.join(sorted(known))})")
        if not isinstance(entry, (tuple, list)) or not entry or entry[0] not in KINDS:
            raise ModelError(f"{where} must be (kind, ...) with kind one of {', '.join(KINDS)}, got {entry!r}")
        kind = entry[0]
        if kind == "categorical":
            if len(entry) != 2 or not isinstance(entry[1], (list, tuple)) or not entry[1]:
                raise ModelError(f"{where} must be ('categorical', [choices...]), got {entry!r}")
            space[name] = (kind, list(entry[1]))
            continue
        if len(entry) not in (3, 4) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in entry[1:]):
            raise ModelError(f"{where} must be ({kind!r}, low, high[, step]), got {entry!r}")
        lo, hi = entry[1], entry[2]
        step = entry[3] if len(entry) == 4 else (1 if kind == "int" else None)
        if not lo <= hi or (kind == "log" and lo <= 0) or (step is not None and step <= 0) \
                or (kind == "log" and len(entry) == 4):
            raise ModelError(f"{where} has an empty or invalid range: {entry!r}")
        if kind == "int" and not all(float(v).is_integer() for v in (lo, hi, step)):
            raise ModelError(f"{where}: an int range needs integer bounds and step, got {entry!r}")
        space[name] = (kind, lo, hi) if step is None else (kind, lo, hi, step)
    return space


def describe(entry: tuple) -> str:
    kind = entry[0]
    if kind == "categorical":
        return "one of " + ", ".join(map(repr, entry[1]))
    text = f"{kind} {entry[1]:g}..{entry[2]:g}"
    return text + (f" step {entry[3]:g}" if len(entry) == 4 and not (kind == "int" and entry[3] == 1) else "")


def in_space(value: Any, entry: tuple) -> bool:
    """Whether `value` is a point of the declared space entry (bounds, integrality, step, choices)."""
    kind = entry[0]
    if kind == "categorical":
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in entry[1])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    lo, hi = entry[1], entry[2]
    if not lo - 1e-12 * abs(lo) <= value <= hi + 1e-12 * abs(hi):
        return False
    if kind == "int" and not float(value).is_integer():
        return False
    if len(entry) == 4:
        k = (value - lo) / entry[3]
        return abs(k - round(k)) < 1e-9
    return True


def _unknown_name(spec: ModelSpec, name: str, known: list[str], what: str) -> ModelError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ModelError(f"model {spec.name!r} has no {what} {name!r} (known: {', '.join(sorted(known))}){hint}")


def check_params(spec: ModelSpec, params: dict[str, Any], *, where: str) -> dict[str, Any]:
    """Validate parameter values: known names, the default's type, inside the declared space.

    Returns them typed as the model's defaults are (an int parameter given 64.0 becomes 64)."""
    if not isinstance(params, dict):
        raise ModelError(f"{where}: parameters must be a JSON object of name: value, got {type(params).__name__}")
    defaults, space = spec.params(), search_space(spec)
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in defaults:
            raise ModelError(f"{where}: " + str(_unknown_name(spec, name, list(defaults), "parameter")))
        default = defaults[name]
        if value is None:
            raise ModelError(f"{where}: parameter {name!r} is null")
        if isinstance(default, bool) != isinstance(value, bool):
            raise ModelError(f"{where}: parameter {name!r} must be {type(default).__name__}, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ModelError(f"{where}: parameter {name!r} must be a number, got {value!r}")
            if isinstance(default, int) and not float(value).is_integer():
                raise ModelError(f"{where}: parameter {name!r} must be a whole number, got {value!r}")
            if value < 0 or (value == 0 and name in ("epochs", "batch_size", "learning_rate")):
                raise ModelError(f"{where}: parameter {name!r} must be positive, got {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise ModelError(f"{where}: parameter {name!r} must be a string, got {value!r}")
        if name in space and not in_space(value, space[name]):
            raise ModelError(f"{where}: {name}={value!r} is outside the search space of {spec.name!r} "
                             f"({describe(space[name])})")
        out[name] = spec.params({name: value})[name]
    return out


def parse_assignments(spec: ModelSpec, items: list[str]) -> dict[str, Any]:
    """`--fix NAME=VALUE` flags -> checked values (JSON literals, else plain strings)."""
    raw: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise UsageError(f"--fix expects NAME=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text.strip()
        raw[name.strip()] = value
    return check_params(spec, raw, where="--fix")


def active_space(spec: ModelSpec, only: list[str] | None, fixed: dict[str, Any]) -> dict[str, tuple]:
    """The declared space restricted to `only` (if given), minus the `fixed` names."""
    space = search_space(spec)
    if only:
        names = [n.strip() for item in only for n in item.split(",") if n.strip()]
        defaults = spec.params()
        for name in names:
            if name not in defaults:
                raise _unknown_name(spec, name, list(space) or list(defaults), "parameter")
            if name not in space:
                raise ModelError(f"--only {name}: {name!r} is not in the search space of {spec.name!r} "
                                 f"(searchable: {', '.join(space) or 'none'}); use --fix {name}=VALUE to set it")
            if name in fixed:
                raise UsageError(f"--only {name} and --fix {name}=... contradict each other")
        space = {n: space[n] for n in space if n in names}
    space = {n: e for n, e in space.items() if n not in fixed}
    if not space:
        raise ModelError(f"model {spec.name!r}: nothing to tune (its search space is "
                         f"{'empty' if not spec.search_space else 'all fixed'})")
    return space


def _suggest(trial: Any, name: str, entry: tuple) -> Any:
    kind = entry[0]
    if kind == "categorical":
        return trial.suggest_categorical(name, entry[1])
    if kind == "int":
        return trial.suggest_int(name, int(entry[1]), int(entry[2]), step=int(entry[3]) if len(entry) == 4 else 1)
    if kind == "log":
        return trial.suggest_float(name, float(entry[1]), float(entry[2]), log=True)
    return trial.suggest_float(name, float(entry[1]), float(entry[2]),
                               step=float(entry[3]) if len(entry) == 4 else None)


# ----------------------------------------------------------------------------- saved parameters

def tuned_path(runs_dir: Path, model: str) -> Path:
    return Path(runs_dir) / "tuned" / f"{model}.json"


def load_tuned(runs_dir: Path, spec: ModelSpec) -> tuple[dict[str, Any], Path | None]:
    """The tuned parameters of `spec` from runs/tuned/<model>.json, validated; ({}, None) if none.

    A hand-edited file with an unknown name or a value outside the declared space is a ModelError."""
    path = tuned_path(runs_dir, spec.name)
    if not path.is_file():
        return {}, None
    try:
        doc = io.read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: not readable JSON ({e}); fix it or re-run `harness tune {spec.name}`") from None
    if not isinstance(doc, dict) or "params" not in doc:
        raise ModelError(f"{path}: expected an object with a \"params\" object (written by `harness tune`)")
    if doc.get("model", spec.name) != spec.name:
        raise ModelError(f"{path}: holds parameters of model {doc.get('model')!r}, not {spec.name!r}")
    return check_params(spec, doc["params"], where=str(path)), path


# ----------------------------------------------------------------------------- tuning

@dataclass
class TuneOptions:
    model: str
    trials: int = 20                 # finished (complete + pruned) trials the study should reach
    timeout: float | None = None     # stop starting new trials after this many seconds
    folds: int | None = None         # k of the stratified folds (default settings.folds)
    folds_used: int = 2              # folds trained per trial (the first ones)
    limit: int | None = None         # stratified subset of rows (as `harness run --limit`)
    epochs: int | None = None        # epochs per trial (default: the model's; never saved)
    seed: int | None = None          # folds, subset, sampler, training (default settings.seed)
    fix: dict[str, Any] = field(default_factory=dict)   # checked values held fixed (and saved)
    only: list[str] | None = None    # tune only these names of the declared space
    pruner: str = "median"
    study: str | None = None         # study name (default: the model name)
    fresh: bool = False              # delete an existing study of that name first
    source: str = "auto"
    executor: str = "local"          # local | ray: parallel trials (harness.tune_parallel)
    jobs: int | None = None          # trials at once (local default 1: in this process)
    cpus_per_job: int | None = None
    ray_address: str | None = None
    ray_timeout: float = 30.0

    @property
    def parallel(self) -> bool:
        return self.executor != "local" or (self.jobs or 1) > 1 or self.cpus_per_job is not None


class _PerTrialTPE:
    """TPESampler re-seeded per trial from (seed, trial number).

    A plain seeded TPESampler restarts its random stream in every process, so a resumed study,
    or a second process on the same study, would repeat the first trials' parameters. Trial
    numbers are unique in the storage, so seeding by them keeps a study reproducible and
    free of repeats however many processes and restarts it took."""

    def __init__(self, seed: int, n_startup_trials: int) -> None:
        import optuna

        self._seed, self._startup = seed, n_startup_trials
        # constant_liar: trials running in parallel count as bad, so trials handed out together differ
        self._make = lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=n_startup_trials,
                                                          constant_liar=True)
        self._inner = self._make(seed)

    def __getattr__(self, name: str) -> Any:  # everything else: the current TPESampler
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def before_trial(self, study: Any, trial: Any) -> None:
        self._inner = self._make((self._seed * 1_000_003 + trial.number * 7919) % 2**32)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        return self._inner.sample_independent(study, trial, name, dist)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def protocol_rows(y_train: np.ndarray, limit: int | None, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows of train.csv, fold of each row): what `harness run --limit N --folds K --seed S` uses."""
    from harness.cv import make_folds, stratified_subset

    index = stratified_subset(y_train, limit, seed) if limit else np.arange(len(y_train))
    return index, make_folds(y_train[index], k, seed)


def _sampler(seed: int) -> Any:
    import optuna

    class PerTrialTPE(_PerTrialTPE, optuna.samplers.BaseSampler):  # a BaseSampler for optuna's checks
        pass

    return PerTrialTPE(seed, STARTUP_TRIALS)


def make_pruner(name: str, epochs: int) -> Any:
    """Optuna pruner by name; steps are the first fold's epochs (0-based)."""
    import optuna

    if name == "median":  # under a cosine schedule the first epochs say little about the last
        return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP_TRIALS,
                                           n_warmup_steps=max(1, epochs // PRUNE_WARMUP_FRACTION))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"unknown pruner {name!r} (choose from {', '.join(PRUNERS)})")


def storage_url(runs_dir: Path, model: str) -> tuple[str, Path]:
    path = (Path(runs_dir) / "tune" / f"{model}.db").resolve()
    return f"sqlite:///{path}", path


def _storage(url: str) -> Any:
    import optuna

    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.x
        warnings.simplefilter("ignore")
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": 60}},  # two processes: wait for the lock
            heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone().isoformat(timespec="seconds") if dt else None


def _jsonable(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _plain(obj: Any) -> Any:
    """Plain JSON values (tuples become lists), as the storage gives them back."""
    return json.loads(json.dumps(obj, default=_jsonable))


def _fmt_s(seconds: float) -> str:
    seconds = int(round(max(seconds, 0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _finished(study: Any) -> list[Any]:
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
        "search_space": _plain(space),
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


class _Progress:
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

        finished = _finished(study)
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
                     f"elapsed {_fmt_s(elapsed)}  ETA {_fmt_s(eta)}{over}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def tune(settings: Settings, opts: TuneOptions, *, say: Callable[[str], None] | None = None,
         pruner: Any = None, tty: bool | None = None) -> dict[str, Any]:
    """Run (or resume) the study of `opts.model`; returns and saves the runs/tuned/<model>.json document.

    `pruner` overrides `opts.pruner` with any Optuna pruner (tests use it). One command at a time
    per study database (harness.lock): a second one stops with a line naming the first."""
    from harness import lock

    _, db_path = storage_url(settings.runs_dir, get_model(opts.model).name)
    with lock.hold(db_path.with_suffix(".lock"), what=f"the tuning study database {db_path}"):
        return _tune(settings, opts, say=say, pruner=pruner, tty=tty)


def _tune(settings: Settings, opts: TuneOptions, *, say: Callable[[str], None] | None = None,
          pruner: Any = None, tty: bool | None = None) -> dict[str, Any]:
    from harness import data as data_mod
    from harness.cv import configure_threads, train_fold

    say = say or (lambda _msg: None)
    spec = get_model(opts.model)
    fixed = check_params(spec, opts.fix, where="--fix")
    opts = dataclasses.replace(opts, fix=fixed)
    space = active_space(spec, opts.only, fixed)
    if opts.epochs is not None and ("epochs" in space or "epochs" in fixed):
        raise UsageError("--epochs sets every trial's epochs, but epochs is also "
                         + ("in the search space" if "epochs" in space else "fixed with --fix") +
                         "; use one or the other")
    if opts.epochs is not None and opts.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    k = opts.folds or settings.folds
    seed = settings.seed if opts.seed is None else opts.seed
    if opts.trials < 1:
        raise UsageError("--trials must be at least 1")
    if k < 2:
        raise UsageError("--folds must be at least 2")
    if not 1 <= opts.folds_used <= k:
        raise UsageError(f"--folds-used must be between 1 and --folds ({k}), got {opts.folds_used}")
    if opts.limit is not None and opts.limit < 2 * k:
        raise UsageError(f"--limit must be at least {2 * k} rows for {k} folds")
    if opts.timeout is not None and opts.timeout <= 0:
        raise UsageError("--timeout must be positive")
    executor = None
    if opts.parallel:
        from harness.executor import make_executor

        if pruner is not None or opts.pruner == "hyperband":
            raise UsageError(f"--pruner {opts.pruner if pruner is None else type(pruner).__name__} needs trials "
                             "run one at a time; use --pruner median or none with --jobs > 1 or --executor ray")
        executor = make_executor(opts.executor, jobs=opts.jobs, cpus_per_job=opts.cpus_per_job,
                                 address=opts.ray_address, timeout=opts.ray_timeout)
    import optuna  # after the cheap checks: bad flags fail fast
    from optuna.trial import TrialState

    info = data_mod.ensure_data(settings, source=opts.source, progress=say)
    ds = data_mod.load(settings.data_dir)
    index, folds = protocol_rows(ds.y_train, opts.limit, k, seed)
    x, y = ds.x_train[index], ds.y_train[index]
    x_test = ds.x_test[:1]  # train_fold predicts the test set; a trial needs none of it
    base_epochs = int(spec.params(fixed)["epochs"]) if opts.epochs is None else int(opts.epochs)

    trial_pruner = pruner if pruner is not None else make_pruner(opts.pruner, base_epochs)

    # What a score means: a study only continues under the same protocol.
    protocol = _plain({"rows": int(len(index)), "limit": opts.limit, "folds": k, "folds_used": opts.folds_used,
                       "epochs": None if "epochs" in space else base_epochs, "seed": seed,
                       "space": space, "fixed": fixed, "data": info.sha256})
    budget = {key: v for key, v in protocol.items() if key not in ("space", "fixed", "data")}
    budget["pruner"] = opts.pruner if pruner is None else type(pruner).__name__

    url, db_path = storage_url(settings.runs_dir, spec.name)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    study_name = opts.study or spec.name
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own progress lines instead
    storage = _storage(url)
    if opts.fresh:
        try:
            optuna.delete_study(study_name=study_name, storage=storage)
            say(f"deleted the old study {study_name!r}")
        except KeyError:
            pass
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                sampler=_sampler(seed), pruner=trial_pruner, load_if_exists=True)
    stored = study.user_attrs.get("protocol")
    if stored is None:
        study.set_user_attr("protocol", protocol)
        study.set_user_attr("model", spec.name)
        defaults = {n: spec.params()[n] for n in space}
        if not study.trials and all(in_space(v, space[n]) for n, v in defaults.items()):
            study.enqueue_trial(defaults, user_attrs={"baseline": True}, skip_if_exists=True)
    elif study.user_attrs.get("model", spec.name) != spec.name:
        raise UsageError(f"study {study_name!r} in {db_path} tunes model {study.user_attrs['model']!r}")
    elif stored != protocol:
        diff = sorted(key for key in set(stored) | set(protocol) if stored.get(key) != protocol.get(key))
        shown = ", ".join(f"{key}={json.dumps(stored.get(key))}" for key in diff if key != "data")
        raise UsageError(f"study {study_name!r} in {db_path} was started with other settings "
                         f"({', '.join(diff)} differ{'; it has ' + shown if shown else ''}); repeat its "
                         "flags to resume it, --fresh to start over, or --study NAME for a separate study")

    done = len(_finished(study))
    say(f"{spec.name}: {'resuming' if done else 'new'} study {study_name!r} ({db_path}), "
        f"{done}/{opts.trials} trials finished; {len(index)} rows, {opts.folds_used} of {k} folds, "
        f"{'tuned' if 'epochs' in space else base_epochs} epochs per trial, tuning {', '.join(space)}")
    out_path = tuned_path(settings.runs_dir, spec.name)

    def objective(trial: Any) -> float:
        sampled = {n: _suggest(trial, n, e) for n, e in space.items()}
        params = spec.params({**fixed, **sampled})
        epochs = int(params["epochs"]) if "epochs" in space else base_epochs
        accs, correct, total = [], 0, 0
        tmp = Path(tempfile.mkdtemp(prefix="harness-tune-"))
        try:
            for f in range(opts.folds_used):
                tr, va = folds != f, folds == f

                def on_epoch(epoch: int, logs: dict, _f: int = f) -> None:
                    if _f != 0:
                        return
                    trial.report(float(logs.get("val_accuracy", 0.0)), epoch)
                    if trial.should_prune():
                        trial.set_user_attr("pruned_at_epoch", epoch + 1)
                        raise optuna.TrialPruned(f"val accuracy {logs.get('val_accuracy', 0):.4f} "
                                                 f"after epoch {epoch + 1}")

                result = train_fold(spec, params, x[tr], y[tr], x[va], y[va], x_test, seed=seed * 100 + f,
                                    out=tmp / f"fold_{f}", epochs=epochs, fold=f, on_epoch=on_epoch)
                accs.append(result.accuracy)
                correct += round(result.accuracy * result.n_val)
                total += result.n_val
                trial.set_user_attr("fold_accuracies", accs)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            import keras

            keras.backend.clear_session()
        return correct / total

    progress = _Progress(opts.trials, done, opts.timeout, say, sys.stderr.isatty() if tty is None else tty)

    def after_trial(study: Any, trial: Any) -> None:
        progress.trial_done(study, trial)
        io.write_json(out_path, summarize(study, spec, opts, budget, space, db_path, seed))

    current: dict[str, int] = {}
    remaining = opts.trials - done
    if executor is not None and remaining > 0:
        from harness import tune_parallel
        from harness.jobs import JobData, TrialJob

        def make_job(trial: Any) -> TrialJob:
            sampled = {n: _suggest(trial, n, e) for n, e in space.items()}
            params = spec.params({**fixed, **sampled})
            epochs = int(params["epochs"]) if "epochs" in space else base_epochs
            bars = tune_parallel.thresholds(study, opts.pruner, epochs, PRUNE_STARTUP_TRIALS, PRUNE_WARMUP_FRACTION)
            return TrialJob(model=spec.name, number=trial.number, params=params, epochs=epochs,
                            folds_used=opts.folds_used, seed=seed, thresholds=bars)

        try:
            tune_parallel.optimize(study, make_job=make_job, executor=executor,
                                   data=JobData(x=x, y=y, x_test=x_test, folds=folds), target=opts.trials,
                                   timeout=opts.timeout, after_trial=after_trial,
                                   finished=lambda: len(_finished(study)), say=say)
        finally:
            progress.close()
            if _finished(study):
                io.write_json(out_path, summarize(study, spec, opts, budget, space, db_path, seed))
        doc = summarize(study, spec, opts, budget, space, db_path, seed)
        return {**doc, "path": str(out_path)}
    try:
        if remaining > 0:
            configure_threads()  # imports TensorFlow (quietly)

            def tracked(trial: Any) -> float:
                current["number"] = trial.number
                return objective(trial)

            study.optimize(tracked, n_trials=remaining, timeout=opts.timeout, gc_after_trial=True,
                           callbacks=[optuna.study.MaxTrialsCallback(
                               opts.trials, states=(TrialState.COMPLETE, TrialState.PRUNED)), after_trial])
    except KeyboardInterrupt:
        # Queue the trial that was cut off, so that the next `tune` starts with it.
        cut = next((t for t in study.get_trials(deepcopy=False) if t.number == current.get("number")), None)
        if cut is not None and cut.state == TrialState.FAIL:
            attrs = {"retry_of": cut.number, **({"baseline": True} if cut.user_attrs.get("baseline") else {})}
            study.enqueue_trial(dict(cut.params), user_attrs=attrs)
        if _finished(study):
            io.write_json(out_path, summarize(study, spec, opts, budget, space, db_path, seed))
        raise
    finally:
        progress.close()
    doc = summarize(study, spec, opts, budget, space, db_path, seed)
    io.write_json(out_path, doc)
    return {**doc, "path": str(out_path)}



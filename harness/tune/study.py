"""Hyperparameter tuning with Optuna over the search space each model plugin declares.

    result = tune(settings, TuneOptions(model="cnn_small", trials=20, limit=8000))

Beside it: harness.tune.space (the declared search spaces; the saved parameters `run --tuned`
loads), harness.tune.summary (the runs/tuned/<model>.json document, the per-trial lines),
harness.tune.parallel (trials on the executor).

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
import json
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.core import io
from harness.core.config import Settings
from harness.core.errors import UsageError
from harness.registry import get_model
from harness.tune.options import TuneOptions
from harness.tune.space import active_space, check_params, in_space, suggest, tuned_path
from harness.tune.summary import TrialProgress, finished_trials, plain_json, summarize

PRUNERS = ("median", "hyperband", "none")
STARTUP_TRIALS = 5          # TPE: random trials (after the baseline) before it models the space
PRUNE_STARTUP_TRIALS = 3    # MedianPruner: trials that always run to the end first
PRUNE_WARMUP_FRACTION = 3   # MedianPruner: no pruning in the first third of the epochs (noisy)
HEARTBEAT_S = 60            # a trial whose process died is failed after 3 missed heartbeats


# ----------------------------------------------------------------------------- tuning

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
    from harness.train.cv import make_folds, stratified_subset

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


def tune(settings: Settings, opts: TuneOptions, *, say: Callable[[str], None] | None = None,
         pruner: Any = None, tty: bool | None = None) -> dict[str, Any]:
    """Run (or resume) the study of `opts.model`; returns and saves the runs/tuned/<model>.json document.

    `pruner` overrides `opts.pruner` with any Optuna pruner (tests use it). One command at a time
    per study database (harness.core.lock): a second one stops with a line naming the first."""
    from harness.core import lock

    _, db_path = storage_url(settings.runs_dir, get_model(opts.model).name)
    with lock.hold(db_path.with_suffix(".lock"), what=f"the tuning study database {db_path}"):
        return _tune(settings, opts, say=say, pruner=pruner, tty=tty)


@dataclass
class _Setup:
    """A study's fixed frame: the model, what it tunes and holds fixed, its rows and folds, where
    it is stored and what it reports."""
    spec: Any
    opts: TuneOptions
    space: dict[str, Any]
    fixed: dict[str, Any]
    k: int
    seed: int
    base_epochs: int
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    folds: np.ndarray
    protocol: dict[str, Any]
    budget: dict[str, Any]
    url: str
    db_path: Path
    out_path: Path
    classes: int = 10
    policy: str = "digits"           # harness.train.augment: every trial trains under it, as a run would

    def summary(self, study: Any) -> dict[str, Any]:
        return summarize(study, self.spec, self.opts, self.budget, self.space, self.db_path, self.seed)

    def trial_params(self, trial: Any) -> tuple[dict[str, Any], int]:
        """A trial's parameters (drawn from the space over the fixed ones) and its epochs."""
        from harness.train.augment import apply_policy

        params = self.spec.params({**self.fixed, **{n: suggest(trial, n, e) for n, e in self.space.items()}})
        # saved as drawn: `run --tuned` applies its own policy to them, as here
        return apply_policy(params, self.policy), int(params["epochs"]) if "epochs" in self.space else self.base_epochs


def augmentation_policy(opts: TuneOptions, competition: Any, runs_dir: Path, data: Any) -> tuple[str, str]:
    """(policy, why) for a study's trials: --augment, else the one the competition's spec pins, else
    the one the newest finished run on the same data chose (its probe), else `digits` (the
    recipes as written)."""
    if opts.augment:
        return opts.augment, "--augment"
    if competition.augment:
        return competition.augment, f"the competition's spec ({competition.slug})"
    from harness.core.runs import list_runs

    for run_dir in reversed(list_runs(runs_dir)):
        try:
            manifest = io.read_json(run_dir / "manifest.json")
        except (OSError, ValueError):
            continue
        chosen = (manifest.get("augmentation") or {}).get("policy")
        if manifest.get("finished") and manifest.get("data") == data and chosen:
            return chosen, f"chosen by run {run_dir.name} on this data"
    return "digits", "no run on this data chose one yet (harness run's probe does)"


def _tune(settings: Settings, opts: TuneOptions, *, say: Callable[[str], None] | None = None,
          pruner: Any = None, tty: bool | None = None) -> dict[str, Any]:
    say = say or (lambda _msg: None)
    opts, space, k, seed = _checked(settings, opts, pruner)
    executor = _executor(opts, pruner)
    setup = _setup(settings, opts, space, k, seed, pruner, say)
    study = _open_study(setup, pruner, say)
    done = len(finished_trials(study))
    say(f"{setup.spec.name}: {'resuming' if done else 'new'} study {study.study_name!r} ({setup.db_path}), "
        f"{done}/{opts.trials} trials finished; {len(setup.x)} rows, {opts.folds_used} of {k} folds, "
        f"{'tuned' if 'epochs' in space else setup.base_epochs} epochs per trial, tuning {', '.join(space)}")
    progress = TrialProgress(opts.trials, done, opts.timeout, say, sys.stderr.isatty() if tty is None else tty)

    def after_trial(study: Any, trial: Any) -> None:
        progress.trial_done(study, trial)
        io.write_json(setup.out_path, setup.summary(study))

    parallel = executor is not None and opts.trials > done
    try:
        if parallel:
            _trials_on_executor(setup, study, executor, after_trial, say)
        elif opts.trials > done:
            _trials_here(setup, study, opts.trials - done, after_trial)
    finally:
        progress.close()
        if finished_trials(study):
            io.write_json(setup.out_path, setup.summary(study))
    doc = setup.summary(study)
    if not parallel:  # in this process the document is written even when no trial finished
        io.write_json(setup.out_path, doc)
    return {**doc, "path": str(setup.out_path)}


def _checked(settings: Settings, opts: TuneOptions, pruner: Any) -> tuple[TuneOptions, dict[str, Any], int, int]:
    """The flags checked before anything is imported or read: (opts with the checked --fix values,
    the space tuned, k, seed); a bad combination is a UsageError."""
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
    return opts, space, k, seed


def _executor(opts: TuneOptions, pruner: Any) -> Any:
    """The executor of parallel trials (--jobs > 1, --executor ray), or None: trials in this process."""
    if not opts.parallel:
        return None
    from harness.executors import make_executor

    if pruner is not None or opts.pruner == "hyperband":
        raise UsageError(f"--pruner {opts.pruner if pruner is None else type(pruner).__name__} needs trials "
                         "run one at a time; use --pruner median or none with --jobs > 1 or --executor ray")
    return make_executor(opts.executor, jobs=opts.jobs, cpus_per_job=opts.cpus_per_job,
                         address=opts.ray_address, timeout=opts.ray_timeout)


def _setup(settings: Settings, opts: TuneOptions, space: dict[str, Any], k: int, seed: int, pruner: Any,
           say: Callable[[str], None]) -> _Setup:
    """The data, the protocol's rows and folds, and what a score means (the protocol)."""
    from harness.data import dataset

    spec = get_model(opts.model)
    info = dataset.ensure_data(settings, source=opts.source, progress=say)
    ds = dataset.load(settings.data_dir, settings.competition)
    index, folds = protocol_rows(ds.y_train, opts.limit, k, seed)
    base_epochs = int(spec.params(opts.fix)["epochs"]) if opts.epochs is None else int(opts.epochs)
    policy, why = augmentation_policy(opts, ds.competition, settings.runs_dir, info.sha256)
    say(f"augmentation policy {policy}: {why}")
    # What a score means: a study only continues under the same protocol (and policy: `digits`,
    # the recipes as written, is left out so that studies begun before it was recorded go on).
    protocol = plain_json({"rows": int(len(index)), "limit": opts.limit, "folds": k, "folds_used": opts.folds_used,
                           "epochs": None if "epochs" in space else base_epochs, "seed": seed,
                           "space": space, "fixed": opts.fix, "data": info.sha256,
                           **({"augment": policy} if policy != "digits" else {})})
    budget = {key: v for key, v in protocol.items() if key not in ("space", "fixed", "data")}
    budget["pruner"] = opts.pruner if pruner is None else type(pruner).__name__
    url, db_path = storage_url(settings.runs_dir, spec.name)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return _Setup(spec=spec, opts=opts, space=space, fixed=opts.fix, k=k, seed=seed, base_epochs=base_epochs,
                  x=ds.x_train[index], y=ds.y_train[index],
                  x_test=ds.x_test[:1],  # train_fold predicts the test set; a trial needs none of it
                  folds=folds, protocol=protocol, budget=budget, url=url, db_path=db_path,
                  out_path=tuned_path(settings.runs_dir, spec.name), classes=ds.competition.n_classes,
                  policy=policy)


def _open_study(setup: _Setup, pruner: Any, say: Callable[[str], None]) -> Any:
    """The study, created or resumed; resuming needs the same model and protocol."""
    import optuna

    opts, spec, space, db_path = setup.opts, setup.spec, setup.space, setup.db_path
    study_name = opts.study or spec.name
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own progress lines instead
    storage = _storage(setup.url)
    if opts.fresh:
        try:
            optuna.delete_study(study_name=study_name, storage=storage)
            say(f"deleted the old study {study_name!r}")
        except KeyError:
            pass
    trial_pruner = pruner if pruner is not None else make_pruner(opts.pruner, setup.base_epochs)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                sampler=_sampler(setup.seed), pruner=trial_pruner, load_if_exists=True)
    stored = study.user_attrs.get("protocol")
    if stored is None:
        study.set_user_attr("protocol", setup.protocol)
        study.set_user_attr("model", spec.name)
        defaults = {n: spec.params()[n] for n in space}
        if not study.trials and all(in_space(v, space[n]) for n, v in defaults.items()):
            study.enqueue_trial(defaults, user_attrs={"baseline": True}, skip_if_exists=True)
    elif study.user_attrs.get("model", spec.name) != spec.name:
        raise UsageError(f"study {study_name!r} in {db_path} tunes model {study.user_attrs['model']!r}")
    elif stored != setup.protocol:
        diff = sorted(key for key in set(stored) | set(setup.protocol) if stored.get(key) != setup.protocol.get(key))
        shown = ", ".join(f"{key}={json.dumps(stored.get(key))}" for key in diff if key != "data")
        raise UsageError(f"study {study_name!r} in {db_path} was started with other settings "
                         f"({', '.join(diff)} differ{'; it has ' + shown if shown else ''}); repeat its "
                         "flags to resume it, --fresh to start over, or --study NAME for a separate study")
    return study


def _trials_on_executor(setup: _Setup, study: Any, executor: Any, after_trial: Callable,
                        say: Callable[[str], None]) -> None:
    """Trials as jobs on an executor, several at once (harness.tune.parallel: ask and tell)."""
    from harness.train.jobs import JobData, TrialJob
    from harness.tune import parallel

    opts = setup.opts

    def make_job(trial: Any) -> TrialJob:
        params, epochs = setup.trial_params(trial)
        bars = parallel.thresholds(study, opts.pruner, epochs, PRUNE_STARTUP_TRIALS, PRUNE_WARMUP_FRACTION)
        return TrialJob(model=setup.spec.name, number=trial.number, params=params, epochs=epochs,
                        folds_used=opts.folds_used, seed=setup.seed, thresholds=bars)

    parallel.optimize(study, make_job=make_job, executor=executor,
                      data=JobData(x=setup.x, y=setup.y, x_test=setup.x_test, folds=setup.folds,
                                   classes=setup.classes),
                      target=opts.trials, timeout=opts.timeout, after_trial=after_trial,
                      finished=lambda: len(finished_trials(study)), say=say)


def _trials_here(setup: _Setup, study: Any, remaining: int, after_trial: Callable) -> None:
    """Trials one at a time in this process, each pruned on its first fold's epochs; a trial cut off
    by Ctrl-C is queued again, so the next `tune` starts with it."""
    import optuna
    from optuna.trial import TrialState

    from harness.train.cv import configure_threads

    configure_threads()  # imports TensorFlow (quietly)
    current: dict[str, int] = {}

    def tracked(trial: Any) -> float:
        current["number"] = trial.number
        return _objective(setup, trial)

    try:
        study.optimize(tracked, n_trials=remaining, timeout=setup.opts.timeout, gc_after_trial=True,
                       callbacks=[optuna.study.MaxTrialsCallback(
                           setup.opts.trials, states=(TrialState.COMPLETE, TrialState.PRUNED)), after_trial])
    except KeyboardInterrupt:
        cut = next((t for t in study.get_trials(deepcopy=False) if t.number == current.get("number")), None)
        if cut is not None and cut.state == TrialState.FAIL:
            attrs = {"retry_of": cut.number, **({"baseline": True} if cut.user_attrs.get("baseline") else {})}
            study.enqueue_trial(dict(cut.params), user_attrs=attrs)
        raise


def _objective(setup: _Setup, trial: Any) -> float:
    """One trial: the first `folds_used` folds trained, the pooled validation accuracy its score."""
    import optuna

    from harness.train.cv import train_fold

    params, epochs = setup.trial_params(trial)
    accs, correct, total = [], 0, 0
    tmp = Path(tempfile.mkdtemp(prefix="harness-tune-"))
    try:
        for f in range(setup.opts.folds_used):
            tr, va = setup.folds != f, setup.folds == f

            def on_epoch(epoch: int, logs: dict, _f: int = f) -> None:
                if _f != 0:
                    return
                trial.report(float(logs.get("val_accuracy", 0.0)), epoch)
                if trial.should_prune():
                    trial.set_user_attr("pruned_at_epoch", epoch + 1)
                    raise optuna.TrialPruned(f"val accuracy {logs.get('val_accuracy', 0):.4f} "
                                             f"after epoch {epoch + 1}")

            result = train_fold(setup.spec, params, setup.x[tr], setup.y[tr], setup.x[va], setup.y[va], setup.x_test,
                                classes=setup.classes,
                                seed=setup.seed * 100 + f, out=tmp / f"fold_{f}", epochs=epochs, fold=f,
                                on_epoch=on_epoch)
            accs.append(result.accuracy)
            correct += round(result.accuracy * result.n_val)
            total += result.n_val
            trial.set_user_attr("fold_accuracies", accs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        import keras

        keras.backend.clear_session()
    return correct / total

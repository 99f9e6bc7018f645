"""`harness run`: every stage in order, each resumable from the run folder.

    data -> cv (per model) -> export -> bench -> leaderboard -> submission -> report -> [upload]

`run(RunOptions(...), settings)` returns the results dict. A run started with the same options
and data as an unfinished one resumes it: finished folds, exports and benchmarks are kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.core import device, io, lock
from harness.core.competition import describe
from harness.core.config import Settings
from harness.core.errors import HarnessError, ModelError, RunError
from harness.core.progress import TrainingProgress, fmt_seconds
from harness.core.runs import list_runs, new_run_id, resolve_run
from harness.registry import ModelSpec, select_models
from harness.run import policy, training
from harness.run.budget import fit_after_training, observe_folds, observe_stages, plan_run, replay_plan, replayed
from harness.run.options import RunOptions
from harness.run.planner import standby_bags
from harness.run.state import Run
from harness.train import bags
from harness.train.cv import configure_threads, enable_determinism, make_folds, stratified_subset


def _fingerprint(opts: RunOptions, names: list[str], folds: int, seed: int, data_hashes: dict) -> str:
    """What makes two invocations 'the same run' for automatic resume: the same command-line choices
    on the same data. Each model's resolved parameters are checked apart (see harness.run.training.check_params)."""
    key = {"models": names, "folds": folds, "seed": seed, "epochs": opts.epochs, "limit": opts.limit,
           "quick": opts.quick, "deterministic": opts.deterministic, "tuned": opts.tuned, "data": data_hashes,
           **({"time_limit": opts.time_limit} if opts.time_limit is not None else {}),
           **({"replay": opts.replay} if opts.replay else {})}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parents[2]  # the checkout: harness/run/pipeline.py -> ./
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_tree() -> dict[str, Any] | None:
    """Whether the code that ran differs from its commit: `dirty` and the sha256 of `git diff HEAD`
    (untracked files are listed by name), so a figure can be traced to exact code."""
    here = Path(__file__).resolve().parents[2]  # the checkout: harness/run/pipeline.py -> ./
    try:
        diff = subprocess.run(["git", "-C", str(here), "diff", "HEAD"], capture_output=True, timeout=10)
        untracked = subprocess.run(["git", "-C", str(here), "ls-files", "--others", "--exclude-standard"],
                                   capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if diff.returncode != 0:
        return None
    files = [f for f in untracked.stdout.splitlines() if f.strip()]
    return {"dirty": bool(diff.stdout or files), "diff_sha256": hashlib.sha256(diff.stdout).hexdigest()
            if diff.stdout else None, "untracked": files[:50]}


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "harness": __version__}
    for pkg in ("tensorflow-cpu", "tensorflow", "keras", "onnx", "tf2onnx", "onnxruntime", "numpy", "pandas",
                "kaggle", "optuna"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _load_tuned(settings: Settings, spec: ModelSpec) -> tuple[dict[str, Any], str | None]:
    """Parameters saved by `harness tune` (validated: a bad name or value is a ModelError)."""
    from harness.tune.space import load_tuned

    params, path = load_tuned(settings.runs_dir, spec)
    return params, (str(path) if path else None)


def _start_or_resume(opts: RunOptions, settings: Settings, fingerprint: str) -> tuple[Path, bool]:
    if opts.resume:
        run_dir = resolve_run(settings.runs_dir, opts.resume)
        if io.read_json(run_dir / "manifest.json").get("fingerprint") != fingerprint:
            raise RunError(f"run {run_dir.name} was started with other options or data; "
                           f"repeat its command (see its manifest.json) or start a new run")
        return run_dir, True
    if not opts.new:
        for run_dir in reversed(list_runs(settings.runs_dir)):
            manifest = io.read_json(run_dir / "manifest.json")
            if manifest.get("fingerprint") == fingerprint and not manifest.get("finished"):
                return run_dir, True
    run_id = new_run_id()
    while (settings.runs_dir / run_id).exists():  # two runs in one second
        time.sleep(1)
        run_id = new_run_id()
    return settings.runs_dir / run_id, False


def _resolve_params(specs: list[ModelSpec], opts: RunOptions, settings: Settings,
                    progress: TrainingProgress) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each model's parameters (defaults < tuned file < --epochs/--quick) and where they came from."""
    model_params: dict[str, dict[str, Any]] = {}
    param_sources: dict[str, str] = {}
    for spec in specs:
        overrides, source = _load_tuned(settings, spec) if opts.tuned else ({}, None)
        if opts.tuned and source is None:
            progress.stage(f"{spec.name}: --tuned, but no parameters saved by `harness tune {spec.name}`; "
                           f"using the model's defaults")
        params = spec.params({**overrides, "epochs": opts.epochs})
        if opts.quick and opts.epochs is None and opts.time_limit is None:  # a limit plans them instead
            params["epochs"] = params["quick_epochs"]
        model_params[spec.name] = params
        param_sources[spec.name] = source or "model defaults" + (" (--epochs)" if opts.epochs else "")
    return model_params, param_sources


def _export_and_bench(run: Run, names: list[str], parity_x: np.ndarray) -> None:
    """Export each model's fold ensemble (parity-gated) and benchmark it; a failure marks that model
    (export.json ok=false, shown on the leaderboard) and the others go on."""
    from harness.bench import bench_model
    from harness.export.convert import export_model

    run_dir, opts = run.run_dir, run.opts
    for name in names:
        cv_info = io.read_json(run_dir / name / "cv.json")
        if not (run_dir / name / "export.json").is_file():
            try:
                export_model(run_dir, name, parity_x, {
                    "model": name, "folds": run.k, "cv_accuracy": cv_info["oof_accuracy"],
                    "run_id": run_dir.name, "harness_version": __version__})
                run.say(f"{name}: exported to ONNX, parity gate passed")
            except HarnessError as e:
                run.say(f"{name}: export failed: {e}")
                continue
        if opts.bench and (run_dir / name / "model.onnx").is_file() \
                and not _benched(run_dir / name / "bench.json", opts):
            run.say(f"{name}: benchmarking with ONNX Runtime")
            # The Keras baselines are opt-in (--baselines): a TensorFlow child process per model took
            # 194 s of a 51-minute default run; --quick also skips the 2-thread rows. `harness bench
            # --run RUN` adds either later.
            bench_model(run_dir, name, batches=_batches(opts), threads=_threads(opts), baselines=opts.baselines,
                        quick=opts.quick or opts.short_bench, progress=run.say)
            run.checkpoint()


def _int8(run: Run, names: list[str]) -> list[str]:
    """Each exported model's static INT8 variant, gated on OOF accuracy and benchmarked like the
    FP32 graph (harness.export.quantize); the variants' leaderboard names, `<model>@int8`."""
    from harness.bench import bench_model
    from harness.export import quantize

    run_dir, opts = run.run_dir, run.opts
    out = []
    for name in names:
        # --no-int8, or a failed FP32 export (no INT8 from an older graph): none
        if not opts.int8 or not (run_dir / name / "model.onnx").is_file():
            quantize.remove(run_dir, name)
            continue
        quantize.ensure(run_dir, name, run.x, run.y, run.folds, run.x_test, run.seed, progress=run.say)
        if not (run_dir / name / "model.int8.onnx").is_file():
            continue
        variant = quantize.variant(name)
        if opts.bench and not _benched(quantize.artefact(run_dir, variant, "bench"), opts):
            run.say(f"{variant}: benchmarking with ONNX Runtime")
            bench_model(run_dir, variant, batches=_batches(opts), threads=_threads(opts), quick=opts.quick or opts.short_bench,
                        progress=run.say)
            run.checkpoint()
        out.append(variant)
    return out


def _batches(opts: RunOptions) -> tuple[int, ...]:
    """The benchmark's batch sizes: the default ones and the latency budget's."""
    from harness.bench import DEFAULT_BATCHES

    return tuple(sorted(set(DEFAULT_BATCHES) | {opts.latency_batch}))


def _threads(opts: RunOptions) -> tuple[int, ...]:
    """The benchmark's thread counts: one under --quick, else the default ones."""
    from harness.bench import DEFAULT_THREADS

    return (1,) if opts.quick or opts.short_bench else tuple(DEFAULT_THREADS)


def _benched(path: Path, opts: RunOptions) -> bool:
    """A bench JSON that already has every batch size this run needs (a new --latency-batch re-benches),
    and the Keras baselines when --baselines asks for them (an INT8 row never has any)."""
    if not path.is_file():
        return False
    rec = io.read_json(path)
    wants_baselines = opts.baselines and rec.get("precision") != "int8"
    return set(_batches(opts)) <= set(rec.get("settings", {}).get("batches", [])) \
        and (not wants_baselines or "baselines" in rec)


def _ensemble(run: Run, names: list[str]) -> list[str]:
    """Greedy OOF ensemble of the exported models (harness.train.ensemble); [its name] or []."""
    from harness.train import ensemble

    if not run.opts.ensemble:
        if ensemble.remove(run.run_dir):
            run.say("ensemble: removed (--no-ensemble)")
        return []
    doc = ensemble.build(run.run_dir, run.y, run.folds, names)
    if "skipped" in doc:
        run.say(f"ensemble: none ({doc['skipped']})")
        return []
    mix = " + ".join(f"{w:.2f} {m}" for m, w in doc["members"].items())
    run.say(f"ensemble: {mix}, CV accuracy {100 * doc['oof_accuracy']:.3f} % (chosen on OOF errors)")
    return [ensemble.NAME]


def _score_models(run_dir: Path, names: list[str], image_ids: np.ndarray, solution: Path, comp: Any) -> None:
    """Each model's fold-ensemble test accuracy, public/private as Kaggle splits it (score.json;
    score.int8.json for an INT8 variant, from its graph's test predictions)."""
    from harness.core.names import artefact, predictions
    from harness.kaggle.submission import read_solution, score_labels

    answers = read_solution(solution)
    values = np.array(comp.label_values)  # class index -> the label the competition's files hold
    for name in names:
        test = np.load(predictions(run_dir, name, "test"))
        io.write_json(artefact(run_dir, name, "score"),
                      score_labels(image_ids, values[test.argmax(1)], answers).to_dict())


def _write_submission(run_dir: Path, best: str, ds: Any, settings: Settings, solution: Path | None) -> dict:
    """submissions/<run>.csv from the very ONNX file that was benchmarked, validated, written
    atomically, in the competition's format, and scored locally where answers exist."""
    from harness.core.names import onnx_path
    from harness.export.convert import predict_onnx
    from harness.kaggle.submission import score_submission, write_submission

    path = settings.submissions_dir / f"{run_dir.name}.csv"
    probs = predict_onnx(onnx_path(run_dir, best), ds.x_test)
    comp = ds.competition
    write_submission(path, ds.image_ids, np.array(comp.label_values)[probs.argmax(1)], competition=comp)
    submission = {"path": str(path), "model": best, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if solution is not None:
        submission.update(score_submission(path, solution, competition=comp).to_dict())
    return submission


def run(opts: RunOptions, settings: Settings, progress: TrainingProgress | None = None) -> dict[str, Any]:
    """Every stage in order on one run folder (started, or resumed when one matches); the results."""
    run = _open(opts, settings, progress or TrainingProgress())
    if opts.plan_only:  # --plan: what the time limit buys on this machine, nothing trained or written
        return {"plan": run.budget, "run_dir": None}
    # One writer per run folder: a second command on a run a live process holds stops here.
    with lock.hold(run.run_dir / lock.LOCK_NAME, what=f"run {run.run_dir.name}", hint="pass --new to start another run"):
        _prepare(run)
        if run.budget and not run.resumed:  # the time before training: the data, the calibration, the plan
            calibration = 0.0 if run.budget["calibration"].get("cached") else run.budget["calibration"]["seconds"]
            run.manifest.setdefault("stages_s", {}).update({"calibration": calibration, "start": round(
                time.perf_counter() - run.clock - calibration, 1)})
        # Training: (model, fold) jobs on the executor; the driver (this process) alone writes
        # model-level files, as soon as a model's last fold is in. Then the opt-in `+pl` fine-tunes.
        with run.stage("training"):
            training.cross_validate(run, run.specs, run.params)
        if run.budget:
            observe_folds(run)
            fit_after_training(run)
        names = [n for n in run.names if (run.run_dir / n / "cv.json").is_file()]  # a limit may drop some
        run.manifest["trained"] = list(names)
        names += training.pseudo_round(run)
        run.manifest["devices"] = device.run_devices(run.run_dir, names)
        # Export (+ parity) and benchmark; INT8 variants; the OOF ensemble of what exported, alike.
        parity_x = _parity_images(run)
        with run.stage("export and benchmark"):
            _export_and_bench(run, names, parity_x)
        with run.stage("int8"):
            int8 = _int8(run, names)
        with run.stage("ensemble"):
            extra = _ensemble(run, names)
            _export_and_bench(run, extra, parity_x)
            int8 += _int8(run, extra)
        with run.stage("submission"):
            if run.info.solution is not None:  # the replica's hidden answers: each row's local score
                _score_models(run.run_dir, names + extra + int8, run.data.image_ids, run.info.solution,
                              run.data.competition)
            results = _choose_and_write_submission(run)
        if opts.submit:
            results = _upload(run, results)
        if opts.report:
            with run.stage("report"):
                run.checkpoint()  # the report reads the stage times so far
                _report(run)
        # Finished only now: a run killed during its upload or report is resumed, not started again.
        run.checkpoint(finished=True)
        if run.budget:
            observe_stages(run)
        if opts.track == "mlflow":
            _track(run)
    results["run_dir"] = str(run.run_dir)
    return results


def _open(opts: RunOptions, settings: Settings, progress: TrainingProgress) -> Run:
    """The models, the data and each model's parameters, then the run folder these make: a new
    one, or the unfinished run with the same fingerprint. Nothing is written yet.

    Under a time limit the folder comes before the plan: a resumed run keeps the plan it recorded
    (its finished work stays what it is) and has the time its earlier sessions left."""
    from harness.data import dataset

    clock = started = time.perf_counter()  # the session's seconds count the calibration and plan too
    replay = replayed(opts, settings) if opts.replay else None
    if replay is not None:
        opts = replay["opts"]
    specs = select_models(opts.models, opts.all_models)
    if not specs:
        raise ModelError("no model selected: pass --all or --model NAME (see `harness models`)")
    k = opts.folds or (2 if opts.quick else settings.folds)
    seed = settings.seed if opts.seed is None else opts.seed
    info = dataset.ensure_data(settings, source=opts.source, progress=progress.stage)
    comp = settings.competition
    progress.stage(f"data: {info.source} ({settings.data_dir})"
                   + ("" if comp.is_digits else f"; competition {describe(comp)}"))
    data = dataset.load(settings.data_dir, comp)
    # Another competition's spec is part of what makes two runs the same (its files' hashes are not
    # all of it: a spec may rename classes or change labels over the same files).
    data_key = info.sha256 if comp.is_digits else {
        **info.sha256, "competition": {k: v for k, v in comp.to_dict().items() if k != "origin"}}
    # Parameters are resolved (and a bad tuned file rejected) before any run folder exists.
    params, sources = _resolve_params(specs, opts, settings, progress)
    budget = None
    if replay is not None:  # --replay: the epochs and bags the replayed run trained, no clock
        specs, params, sources = replay_plan(replay["manifest"], specs, params, sources, opts.replay,
                                             replay.get("shortened"), replay.get("started"))
        fingerprint = _fingerprint(opts, [s.name for s in specs], k, seed, data_key)
        run_dir, resumed = _start_or_resume(opts, settings, fingerprint)
        augmentation = replay["manifest"].get("augmentation") or _augmentation(opts, specs, params, data, seed,
                                                                              progress, run_dir, resumed)
    elif opts.time_limit is None:
        # --bags N: each model's bags 2..N as models of their own; their names make them part of
        # the fingerprint.
        fingerprint = _fingerprint(opts, [s.name for s in bags.expand(specs, params, sources, opts.bags)[0]], k,
                                   seed, data_key)
        run_dir, resumed = _start_or_resume(opts, settings, fingerprint)
        augmentation = _augmentation(opts, specs, params, data, seed, progress, run_dir, resumed)
        specs, params, sources = bags.expand(specs, params, sources, opts.bags)
    else:  # the plan sets the folds, each model's epochs and bags (harness.run.planner)
        fingerprint = _fingerprint(opts, [s.name for s in specs], opts.folds or 0, seed, data_key)
        run_dir, resumed = (None, False) if opts.plan_only else _start_or_resume(opts, settings, fingerprint)
        recorded = io.read_json(run_dir / "manifest.json") if resumed else {}
        augmentation = _augmentation(opts, specs, params, data, seed, progress, run_dir, resumed)
        params = policy.applied(params, augmentation)
        if recorded.get("budget"):
            budget = recorded["budget"]
            clock -= float(recorded.get("duration_s") or 0.0)  # the time its earlier sessions used
            progress.stage(f"keeping the plan run {run_dir.name} recorded; "
                           f"{fmt_seconds(max(budget['limit_s'] - (time.perf_counter() - clock), 0))} of its "
                           f"time limit left")
        else:
            budget = plan_run(opts, settings, specs, params, data, k, seed, progress,
                              spent_s=float(augmentation.get("seconds") or 0.0))
        k = int(budget["plan"]["k"])
        # a budget too short for every model's fewest epochs plans without the dearest ones
        planned = budget["plan"]["epochs"]
        specs = [s for s in specs if s.name in planned]
        params = {n: p for n, p in params.items() if n in planned}
        sources = {n: src for n, src in sources.items() if n in planned}
        opts = dataclasses.replace(opts, int8=budget["after"]["int8"], short_bench=budget["after"]["short_bench"])
        epochs = {**budget["plan"]["epochs"], **{n: p["epochs"] for n, p in recorded.get("params", {}).items()}}
        # the planned bags and the stand-by ones, which the keeper starts only when they fit
        counts = {n: b + (budget["plan"].get("standby") or {}).get(n, 0) for n, b in budget["plan"]["bags"].items()}
        specs, params, sources = bags.expand(specs, params, sources, counts)
        params = {n: {**p, "epochs": int(epochs.get(n, epochs.get(bags.base(n), p["epochs"])))}
                  for n, p in params.items()}
        standby = standby_bags(budget["plan"])
        sources = {n: f"{src}, epochs planned for --time-limit" + (", a stand-by bag" if n in standby else "")
                   for n, src in sources.items()}
    if opts.time_limit is None or replay is not None:  # a planned run's were applied before its plan
        params = policy.applied(params, augmentation)
    if augmentation["policy"] != "digits":
        sources = {n: f"{src}, augmentation policy {augmentation['policy']}" for n, src in sources.items()}
    return Run(opts=opts, settings=settings, progress=progress, run_dir=run_dir, resumed=resumed, seed=seed, k=k,
               specs=specs, params=params, param_sources=sources, data=data, info=info, fingerprint=fingerprint,
               budget=budget, clock=clock, started=started, augmentation=augmentation)


def _augmentation(opts: RunOptions, specs: list[ModelSpec], params: dict[str, dict[str, Any]], data: Any,
                  seed: int, progress: TrainingProgress, run_dir: Path | None, resumed: bool) -> dict[str, Any]:
    """The policy a resumed run recorded, else the spec's or the probe's (harness.run.policy);
    `--plan` probes nothing."""
    recorded = io.read_json(run_dir / "manifest.json").get("augmentation") if resumed else None
    if recorded:
        return recorded
    if opts.plan_only and not data.competition.augment:
        progress.stage("augmentation: a probe at the start of the run chooses the policy (not run by --plan)")
        return {"policy": "digits", "chosen_by": "not probed (--plan)"}
    return policy.choose_policy(opts, specs, params, data, seed, progress)


def _prepare(run: Run) -> None:
    """Under the run's lock: temp files a killed writer left, threads, the rows and folds (fixed
    once per run, identical for every model) and the manifest, with a new session in it."""
    opts, settings, run_dir = run.opts, run.settings, run.run_dir
    run.say(("resuming run " if run.resumed else "new run ") + run_dir.name)
    stale = io.clean_temp(run_dir) + [p for d in (settings.submissions_dir, settings.reports_dir)
                                      if d.is_dir() for p in io.clean_temp(d, prefix=run_dir.name)]
    if stale:
        run.say(f"removed {len(stale)} temp file(s) a killed writer left: "
                + ", ".join(str(p) for p in stale[:3]) + (" ..." if len(stale) > 3 else ""))
    configure_threads()
    if opts.deterministic:
        enable_determinism()
    y_all = run.data.y_train
    if run.resumed and (run_dir / "folds.npy").is_file():
        run.index, run.folds = np.load(run_dir / "train_index.npy"), np.load(run_dir / "folds.npy")
    else:
        run.index = stratified_subset(y_all, opts.limit, run.seed) if opts.limit else np.arange(len(y_all))
        run.folds = make_folds(y_all[run.index], run.k, run.seed)
    run.x, run.y = run.data.x_train[run.index], y_all[run.index]

    manifest = io.read_json(run.manifest_path) if run.resumed else {}
    manifest.update({
        "run_id": run_dir.name, "fingerprint": run.fingerprint, "command": opts.command or sys.argv,
        "config": {**{k: str(v) for k, v in asdict(settings).items()}, "folds": run.k, "seed": run.seed,
                   "models": run.names, "epochs": opts.epochs, "limit": opts.limit, "quick": opts.quick,
                   "deterministic": opts.deterministic, "tuned": opts.tuned, "source": run.info.source,
                   "ensemble": opts.ensemble, "tta": opts.tta, "bags": opts.bags, "pseudo_label": opts.pseudo_label,
                   "int8": opts.int8, "max_latency_ms": opts.max_latency_ms, "latency_batch": opts.latency_batch,
                   "n_train_rows": int(len(run.index))},
        "competition": run.data.competition.to_dict(), "augmentation": run.augmentation,
        "params": run.params, "param_sources": run.param_sources, "budget": run.budget,
        "versions": _versions(), "hardware": device.hardware(), "data": run.info.sha256, "git_commit": _git_commit(),
        "git_tree": _git_tree(),
        "started": manifest.get("started") or io.utc_now(), "finished": None,
    })
    # The folds go in before the manifest: a folder only counts as a run once both are there.
    io.write_npy(run_dir / "train_index.npy", run.index.astype(np.int32))
    io.write_npy(run_dir / "folds.npy", run.folds)
    # Each invocation is a session; its seconds are saved after every fold, so the time of a killed
    # session still counts in duration_s (up to its last finished fold).
    manifest.setdefault("sessions", []).append({"started": io.utc_now(), "seconds": 0.0})
    manifest.pop("sessions_s", None)
    run.manifest = manifest
    run.checkpoint()


def _parity_images(run: Run) -> np.ndarray:
    """1,000 real digits for the export's parity gate, drawn from all of train.csv (a --limit run too)."""
    x_all = run.data.x_train
    rng = np.random.default_rng(run.seed)
    return x_all[rng.choice(len(x_all), size=min(len(x_all), 1000), replace=False)]


def _choose_and_write_submission(run: Run) -> dict[str, Any]:
    """The leaderboard's best row (within --max-latency-ms, if given) -> submissions/<run>.csv."""
    from harness.results import leaderboard

    budget = _latency_budget(run.opts)
    results = leaderboard.build_results(run.run_dir, run.y, budget=budget)
    best = results["best"]
    if best is None:
        if budget is not None:  # the run stays unfinished: the same command with another budget resumes it
            raise RunError(leaderboard.no_fit_message(results, budget))
        raise RunError("no model passed export; nothing to submit (see the leaderboard's status column)")
    submission = _write_submission(run.run_dir, best, run.data, run.settings, run.info.solution)
    run.say(f"submission: {submission['path']} from {best}")
    results = leaderboard.build_results(run.run_dir, run.y, {"submission": submission}, budget=budget)
    # A resumed run's duration adds up the wall time of every invocation that worked on it.
    run.checkpoint()
    return results


def _upload(run: Run, results: dict[str, Any]) -> dict[str, Any]:
    """--submit: the submission to Kaggle (validated, never twice), recorded in results.json."""
    from harness.kaggle import api as kaggle
    from harness.results import leaderboard

    best, path = results["best"], Path(results["submission"]["path"])
    upload = kaggle.submit_file(path, message=run.opts.message or f"harness {run.run_dir.name} {best}",
                                run_id=run.run_dir.name, model=best, wait=run.opts.wait,
                                history_path=kaggle.history_file(run.settings.submissions_dir), progress=run.say,
                                competition=run.data.competition.slug, n_rows=len(run.data.image_ids),
                                spec=run.data.competition)
    return leaderboard.build_results(run.run_dir, run.y, {"upload": upload.to_dict()},
                                     budget=_latency_budget(run.opts))


def _latency_budget(opts: RunOptions) -> Any:
    """--max-latency-ms as the leaderboard's LatencyBudget, or None."""
    from harness.results import leaderboard

    return leaderboard.LatencyBudget(opts.max_latency_ms, opts.latency_batch) if opts.max_latency_ms else None


def _report(run: Run) -> None:
    """reports/<run>.html; a failure is reported, never fatal (`harness report` retries it)."""
    from harness.report import render_report

    try:
        out = render_report(run.run_dir, run.settings.reports_dir / f"{run.run_dir.name}.html", run.settings.data_dir)
        run.say(f"report: {out}")
    except Exception as e:  # the results stand without their page
        run.say(f"report failed ({type(e).__name__}: {e}); retry with `harness report --run {run.run_dir.name}`")


def _track(run: Run) -> None:
    """--track mlflow, after the run: tracking reads the finished folder and never fails it."""
    from harness.results import track

    tracked = track.log_run(run.run_dir, run.opts.tracking_uri, say=run.say)
    if tracked:
        run.manifest["tracking"] = tracked
        io.write_json(run.manifest_path, run.manifest)
        run.say(f"tracked in MLflow at {tracked['uri']}: run {tracked['run_id']} ({len(tracked['children'])} model runs)")

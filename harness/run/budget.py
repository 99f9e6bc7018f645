"""A time-limited run's stages around the pipeline: the plan before training (calibration, folds,
epochs, bags, the stages after training), what training and the later stages actually took for the
next plan, the stages after training fitted to the time left, and `--replay` of a recorded plan.

    budget = plan_run(opts, settings, specs, params, data, k, seed, progress)   # before training
    fit_after_training(run)                                                   # after training
    observe_folds(run); observe_stages(run)                                   # for the next plan

The plan itself is harness.run.planner's pure function; the keeping of it while jobs run is
harness.run.keeper's.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import io
from harness.core.config import Settings
from harness.core.errors import RunError
from harness.core.progress import TrainingProgress, fmt_seconds
from harness.core.runs import resolve_run
from harness.registry import ModelSpec
from harness.run.options import RunOptions
from harness.run.planner import ENSEMBLE_ROWS
from harness.run.state import Run
from harness.train import bags


def fit_after_training(run: Run) -> None:
    """The stages after training in the time that is left: INT8 variants go first, then the long
    benchmark (one thread, short runs), then the benchmark (unless --max-latency-ms needs it), when
    what they took here before does not fit; export, the ensemble and the submission always run."""
    from harness.run.calibrate import After, after_training

    left = run.budget["limit_s"] - (time.perf_counter() - run.clock)
    rows = sum((run.run_dir / n / "cv.json").is_file() for n in run.names) + ENSEMBLE_ROWS
    slower = max(1.0, float(run.budget.get("speed") or 1.0))  # a machine that slowed during training
    start_s = float(run.budget["costs"].get("start_s", 0.0))  # spent already
    for after in After(**run.budget["after"]).leaner(keep_bench=run.opts.max_latency_ms is not None):
        per_row, run_s = after_training(after, run.budget["calibration"], start_s)
        if slower * (rows * per_row + run_s) <= left:
            break
    if after != After(**run.budget["after"]):
        run.opts = dataclasses.replace(run.opts, int8=after.int8, short_bench=after.short_bench, bench=after.bench)
        run.say(f"budget: {fmt_seconds(max(left, 0))} left after training; "
                + ("no INT8 variants, " if not after.int8 else "")
                + ("short benchmarks" if after.bench else "no benchmark") + ", to end within the limit")
        run.manifest["budget"].setdefault("events", []).append(
            {"event": "after_training", "after": dataclasses.asdict(after), "left_s": round(left, 1)})
    run.budget["after_used"] = dataclasses.asdict(after)


def observe_stages(run: Run) -> None:
    """What the stages after training took, per model row and for the run, for the next plan on
    this machine (harness.run.calibrate.observe_after)."""
    from harness.run.calibrate import After, observe_after

    stages = run.manifest.get("stages_s", {})
    rows = len(run.manifest.get("trained", [])) + ENSEMBLE_ROWS
    per_row = sum(stages.get(n, 0.0) for n in ("export and benchmark", "int8", "ensemble")) / rows
    # the start less the augmentation probe, which a plan counts as spent already
    start = max(stages.get("start", 0.0) - float(run.augmentation.get("seconds") or 0.0), 0.0)
    tail = start + sum(stages.get(n, 0.0) for n in ("submission", "report"))
    # a resumed run's stages are partial; a run that dropped models had other rows than planned
    # (a 5-minute run left with `cnn_small` alone took 3 s a row, a 10-minute one with all three 15 s)
    dropped = any(e.get("event") in ("dropped", "cancelled") for e in run.budget.get("events", []))
    if per_row > 0 and len(run.manifest.get("sessions", [])) == 1 and not dropped:
        observe_after(run.settings.cache_dir, run.budget["calibration"]["key"],
                      After(**run.budget.get("after_used", run.budget["after"])), per_row, tail, start)


def replayed(opts: RunOptions, settings: Settings) -> dict[str, Any]:
    """--replay RUN: that run's manifest, and these options with its models, folds, seed, rows and
    determinism; no time limit."""
    src = resolve_run(settings.runs_dir, opts.replay)
    manifest = io.read_json(src / "manifest.json")
    if not manifest.get("budget"):
        raise RunError(f"run {src.name} had no --time-limit plan to replay; repeat its command instead "
                       f"(see its manifest.json)")
    cfg = manifest["config"]
    models = [n for n in cfg["models"] if bags.base(n) == n]
    replay = dataclasses.replace(opts, models=models, all_models=False, folds=cfg["folds"], seed=cfg["seed"],
                                 limit=cfg.get("limit"), deterministic=bool(cfg.get("deterministic")),
                                 quick=bool(cfg.get("quick")), time_limit=None, replay=src.name)
    return {"opts": replay, "manifest": manifest, **_fold_epochs(src)}


def _fold_epochs(run_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """From a run's fold.json files, per model: `started`, each fold's epochs when it started
    ({fold: epochs}; the keeper may start a model's last folds with fewer than its first), and
    `shortened`, the folds the keeper shortened while they trained ({fold: [epochs done when
    told, epochs it ended with]})."""
    out: dict[str, dict[str, dict[str, Any]]] = {"started": {}, "shortened": {}}
    for path in sorted(run_dir.glob("*/fold_*/fold.json")):
        fold, model = io.read_json(path), path.parent.parent.name
        out["started"].setdefault(model, {})[str(fold["fold"])] = int(fold.get("planned_epochs") or fold["epochs"])
        if fold.get("shortened_at"):
            out["shortened"].setdefault(model, {})[str(fold["fold"])] = [int(fold["shortened_at"]), int(fold["epochs"])]
    return out


def replay_plan(manifest: dict[str, Any], specs: list[ModelSpec], params: dict[str, dict[str, Any]],
                 sources: dict[str, str], run_id: str, shortened: dict[str, dict[str, list[int]]] | None = None,
                 started: dict[str, dict[str, int]] | None = None) -> tuple[list[ModelSpec], dict, dict[str, str]]:
    """The models (bags included) the replayed run finished, each at the epochs it trained; a fold
    that started with other epochs than its model's (`started`, from `replayed`) starts with them
    (params `fold_epochs`: harness.run.training), and one that run shortened while it trained
    (`shortened`) is shortened at the same epoch (params `shortened`: harness.train.jobs.run_fold)."""
    trained = {n: p["epochs"] for n, p in manifest["params"].items()
               if n in manifest.get("trained", manifest["params"])}
    counts = {s.name: max([bags.number(n) for n in trained if bags.base(n) == s.name] or [1]) for s in specs}
    specs, params, sources = bags.expand(specs, params, sources, counts)
    specs = [s for s in specs if s.name in trained]
    if not specs:
        raise RunError(f"run {run_id} finished no model to replay")

    def own(name: str) -> dict[str, Any]:
        folds = {f: e for f, e in (started or {}).get(name, {}).items() if e != int(trained[name])}
        return {**({"fold_epochs": folds} if folds else {}),
                **({"shortened": shortened[name]} if (shortened or {}).get(name) else {})}

    params = {s.name: {**params[s.name], "epochs": int(trained[s.name]), **own(s.name)} for s in specs}
    sources = {s.name: f"{sources[s.name]}, epochs replayed from run {run_id}" for s in specs}
    return specs, params, sources


def observe_folds(run: Run) -> None:
    """After training under a plan: each model's measured speed over whole folds, for the next
    plan of the same setup (harness.run.calibrate.observe)."""
    from harness.core.runs import fold_dir
    from harness.run.calibrate import observe

    jobs = [j for s in run.manifest.get("sessions", []) for j in s.get("jobs", [])]
    for name in run.budget["calibration"]["probes"]:
        folds = [io.read_json(fold_dir(run.run_dir, name, f) / "fold.json") for f in range(run.k)
                 if (fold_dir(run.run_dir, name, f) / "fold.json").is_file()]
        overhead = [j["wall_s"] - j["train_s"] for j in jobs
                    if j["job"].startswith(f"{name} fold ") and j.get("train_s") is not None]
        if folds and overhead:
            per_image = float(np.mean([f["seconds"] / (f["n_train"] * f["epochs"]) for f in folds]))
            observe(run.settings.cache_dir, run.budget["calibration"]["key"], name, per_image,
                    float(np.median(overhead)))


def plan_run(opts: RunOptions, settings: Settings, specs: list[ModelSpec], params: dict[str, dict[str, Any]],
             data: Any, k: int, seed: int, progress: TrainingProgress, spent_s: float = 0.0) -> dict[str, Any]:
    """Calibrate on this machine in the run's layout, then plan the folds, every model's epochs and
    bags, and the stages after training in --time-limit (a PlanError, exit 2, when even the
    cheapest plan does not fit).

    Accuracy first: INT8 variants and the two-thread benchmark rows only when every model still
    gets its full recipe with them; fewer folds (down to 2) only when even every model's fewest
    epochs do not fit in `k` (--folds fixes them); without the dearest models (the cheapest is
    always kept) only when every model's fewest epochs fit in no number of folds. `spent_s`: what
    the run took before (the augmentation probe)."""
    from harness.executors import warm_slots
    from harness.run.calibrate import After, after_training, calibrate, costs_of
    from harness.run.planner import MARGIN, ModelBudget, PlanError, fewer_models

    start = time.perf_counter()
    rows = opts.limit or len(data.y_train)
    layout = {"executor": opts.executor, "jobs": opts.jobs, "cpus_per_job": opts.cpus_per_job,
              "ray_address": opts.ray_address, "ray_timeout": opts.ray_timeout}
    models = [ModelBudget(s.name, min(s.min_epochs or int(params[s.name]["quick_epochs"]), int(params[s.name]["epochs"])),
                          int(params[s.name]["epochs"]), s.bag_gain) for s in specs]
    levels = After(bench=opts.bench, int8=opts.int8, short_bench=opts.quick or opts.short_bench,
                   report=opts.report).leaner(keep_bench=True)
    fewest = {m.name: m.min_epochs for m in models}

    def worth(name: str, s_per_image: float, elapsed: float, probed: dict[str, Any], slots: int) -> bool:
        """Whether `name` at `s_per_image` could train its fewest epochs in 2 folds beside the
        `probed` models' (cheaper: the calibration goes cheapest first, and a plan leaves out the
        dearest first) in what the limit leaves after the calibration so far and the leanest
        stages after training."""
        per_row, run_s = after_training(levels[-1])
        rows_after = len(probed) + 1 + ENSEMBLE_ROWS  # the probed models' rows, this one's, the ensemble's
        left = opts.time_limit * (1 - MARGIN) - spent_s - elapsed - rows_after * per_row - run_s
        fold_s = [p["fit_fixed_s"] + fewest[m] * (rows / 2) * p["train_s_per_image"] for m, p in probed.items()]
        return 2 * (sum(fold_s) + fewest[name] * (rows / 2) * s_per_image) / slots <= left

    probe = calibrate(specs, params, data.x_train, data.y_train, layout, settings.cache_dir, say=progress.stage,
                      seed=seed, classes=data.competition.n_classes, keep_warm=not opts.plan_only, worth=worth)
    # a model the calibration found too dear to probe for this limit is left out with the dearest
    unprobed = [m.name for m in models if m.name not in probe["probes"]]
    models = [m for m in models if m.name in probe["probes"]]
    spent = spent_s + (0.0 if probe.get("cached") else time.perf_counter() - start)
    slots = int(probe.get("slots") or opts.jobs or 1)
    # the probe's (or the augmentation probe's) workers, kept warm, start the training: no warm-up
    warm = opts.executor == "local" and warm_slots(slots, opts.cpus_per_job) >= slots
    errors: list[PlanError] = []  # each the cheapest plan of its models: fewest folds, leanest stages
    # every model when its fewest epochs fit in some number of folds, else without the dearest
    for kept in fewer_models(models, costs_of(probe, rows, opts.folds or k, levels[-1], len(data.x_test), warm)):
        try:
            after, costs, plan = _fold_plan(opts, probe, kept, levels, rows, k, slots, spent, len(data.x_test), warm)
            break
        except PlanError as e:
            errors.append(e)
    else:
        raise errors[-1]  # the cheapest model alone
    left_out = [m.name for m in models if m.name not in plan.epochs] + unprobed
    given_up = [what for what, kept in (("INT8 variants", after.int8 or not opts.int8),
                                        ("two-thread benchmark rows", not after.short_bench or opts.quick
                                         or opts.short_bench or not opts.bench)) if not kept]
    progress.stage(f"plan for {fmt_seconds(opts.time_limit)}: {plan.k} folds on {plan.slots} slot(s), "
                   + ", ".join(f"{n} {plan.epochs[n]} epochs" + (f" x {plan.bags[n]} bags" if plan.bags[n] > 1 else "")
                               for n in plan.epochs)
                   + (f"; without {' and '.join(given_up)}" if given_up else "")
                   + (f"; left out {', '.join(n for n in left_out if n not in unprobed)} (every model needs "
                      f"about {fmt_seconds(errors[0].need_s)} here)" if len(left_out) > len(unprobed) else "")
                   + (f"; left out {', '.join(unprobed)} (too dear to calibrate for this limit)"
                      if unprobed else "")
                   + (f"; stand-by {', '.join(f'{n} x {b} bag(s)' for n, b in plan.standby.items())}"
                      if plan.standby else "")
                   + f"; predicted {fmt_seconds(plan.predicted_s)} (training {fmt_seconds(plan.training_s)})"
                   + ("" if probe.get("cached") else f"; calibration took {probe['seconds']:.0f} s"))
    return {"limit_s": opts.time_limit, "plan": plan.as_dict(), "calibration": probe,
            "costs": dataclasses.asdict(costs), "after": dataclasses.asdict(after), "given_up": given_up,
            "left_out": left_out}


def _fold_plan(opts: RunOptions, probe: dict[str, Any], models: list[Any], levels: list[Any], rows: int, k: int,
               slots: int, spent: float, test_rows: int, warm: bool = False) -> tuple[Any, Any, Any]:
    """(stages after training, costs, plan) of `models` at the most folds (`k` down to 2, or
    --folds) where their fewest epochs fit, the full recipes' stages first; the last PlanError
    (the fewest folds, the leanest stages) when none does."""
    from harness.run.calibrate import costs_of
    from harness.run.planner import PlanError, make_plan

    error = None
    for folds in ([opts.folds] if opts.folds else range(k, 1, -1)):
        plans = []
        for after in levels:
            try:
                costs = costs_of(probe, rows, folds, after, test_rows=test_rows, warm=warm)
                plans.append((after, costs, make_plan(opts.time_limit, models, costs, folds, slots, spent_s=spent)))
            except PlanError as e:
                error = e
        if plans:
            return next((p for p in plans if p[2].full_recipes), plans[-1])
    raise error  # type: ignore[misc]

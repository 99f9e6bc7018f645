"""The training stage of `harness run`: every unfinished (model, fold) as a job on an executor,
longest first, and each model's CV assembled by the driver as soon as its last fold is in; then,
with --pseudo-label, the second round of fine-tunes (harness.train.pseudo).

    cross_validate(run, run.specs, run.params)    # run: harness.run.state.Run
    names += pseudo_round(run)                     # the `+pl` models, when --pseudo-label is set
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core import io
from harness.core.progress import TrainingProgress
from harness.registry import ModelSpec
from harness.run.planner import job_order
from harness.train import bags, pseudo
from harness.train.cv import assemble_cv

if TYPE_CHECKING:
    from harness.run.state import Run


def check_params(run_dir: Path, model: str, params: dict[str, Any], progress: TrainingProgress) -> None:
    """Record a model's parameters; if a resumed run trained it with others (a changed plugin default
    or a re-tuned study), discard those artefacts so one model never mixes two parameter sets."""
    path, cv = run_dir / model / "params.json", run_dir / model / "cv.json"
    recorded = io.read_json(path) if path.is_file() else io.read_json(cv).get("params") if cv.is_file() else None
    if recorded is not None:
        if recorded == json.loads(json.dumps(params, default=io._json_default)):
            if not path.is_file():
                io.write_json(path, params)
            return
        progress.stage(f"{model}: parameters changed since this run trained it; retraining it")
        shutil.rmtree(run_dir / model)
    io.write_json(path, params)


def longest_first(jobs: list[Any], costs: dict[str, float]) -> list[Any]:
    """Jobs by estimated cost (job_costs), longest first: with several at once, the long folds
    start early and short ones fill the gaps, so the last job to finish is a short one (LPT
    scheduling). Ties keep model then fold order."""
    return sorted(jobs, key=lambda j: -costs[j.model])


def job_costs(jobs: list[Any], specs: dict[str, ModelSpec], shape: tuple[int, ...] = (28, 28, 1),
              classes: int = 10) -> dict[str, float]:
    """One job's relative cost per model: epochs x forward FLOPs per image (the rows are alike)."""
    from harness.train.flops import keras_flops

    costs: dict[str, float] = {}
    for job in jobs:
        if job.model not in costs:
            costs[job.model] = float(job.epochs) * keras_flops(specs[job.model].build(job.params, shape=shape,
                                                                                     classes=classes))
    return costs


def cross_validate(run: Run, specs: list[ModelSpec], model_params: dict[str, dict[str, Any]]) -> None:
    """Train every unfinished fold of `specs` as a job and assemble each model's CV once its folds are in."""
    from harness.core.runs import fold_dir
    from harness.executors import make_executor, run_jobs
    from harness.train.jobs import FoldJob, JobData, clean_stale_stages, fold_complete

    run_dir, opts, progress, manifest = run.run_dir, run.opts, run.progress, run.manifest
    x, y, x_test, folds, seed = run.x, run.y, run.x_test, run.folds, run.seed
    k = int(folds.max()) + 1
    jobs: list[FoldJob] = []
    left: dict[str, int] = {}

    def finish(spec: ModelSpec) -> None:
        params = model_params[spec.name]
        if opts.tta > 1:
            seconds = tta_mod.fold_predictions(run_dir, spec.name, opts.tta, x, folds, x_test)
            progress.stage(f"{spec.name}: {opts.tta}-view TTA predictions ({seconds:.0f} s)")
        cv = assemble_cv(run_dir, spec, params, y, folds, epochs=int(params["epochs"]), tta=opts.tta)
        progress.stage(f"{spec.name}: CV accuracy {100 * cv.oof_accuracy:.3f} % "
                       f"(folds {100 * cv.fold_mean:.3f} ± {100 * cv.fold_std:.3f})"
                       + (f", {opts.tta}-view TTA" if opts.tta > 1 else ""))

    from harness.train import tta as tta_mod

    for spec in specs:
        check_params(run_dir, spec.name, model_params[spec.name], progress)
        cv_path = run_dir / spec.name / "cv.json"
        if cv_path.is_file() and io.read_json(cv_path).get("tta", 1) != opts.tta:
            # TTA changed: the model's predictions and all that was built on them are redone; its
            # fold models stay.
            for stale in ("cv.json", "export.json", "model.onnx", "bench.json", "score.json"):
                (run_dir / spec.name / stale).unlink(missing_ok=True)
            progress.stage(f"{spec.name}: --tta changed; recomputing its predictions, export and benchmark")
        if cv_path.is_file():
            progress.stage(f"{spec.name}: cross-validation already complete")
            continue
        for stale in clean_stale_stages(run_dir / spec.name):
            progress.stage(f"{spec.name}: removed {stale.name}, left by a killed worker")
        params = model_params[spec.name]
        progress.stage(f"{spec.name}: {k}-fold CV, {params['epochs']} epochs ({spec.description})")
        left[spec.name] = 0
        for f in range(k):
            if fold_complete(fold_dir(run_dir, spec.name, f)):
                progress.skip_fold(spec.name, f, k)
                continue
            left[spec.name] += 1
            # --replay of a run whose keeper started this fold with fewer epochs than the model's
            epochs = int(params.get("fold_epochs", {}).get(str(f), params["epochs"]))
            jobs.append(FoldJob(run_dir=str(run_dir.resolve()), model=spec.name, fold=f, k=k,
                                params={**params, "epochs": epochs}, seed=bags.job_seed(seed, params, f),
                                epochs=epochs, deterministic=opts.deterministic))
        if not left[spec.name]:
            finish(spec)
    if not jobs:
        return
    by_name = {s.name: s for s in specs}
    keeper = _keeper(run, specs, model_params) if run.budget and specs == run.specs else None
    if keeper is not None:  # the planner's order: the kept model first, the models before their bags
        jobs = job_order(jobs, lambda j: keeper.planned_s(j.model, j.epochs), lambda j: j.model, keeper.standby,
                         first=keeper.protected)
        keeper.started.update(s.name for s in specs if left.get(s.name, 0) < k)
        for name in keeper.started & set(keeper.standby):  # started before a resume: its stages after training
            keeper.deadline -= keeper.standby[name]
        progress.deadline = run.clock + run.budget["limit_s"]
        # the ETA scales from the plan's seconds, which carry a job's fixed cost: from FLOPs alone,
        # the cheap model's folds (dealt first) would put the first ETA several times too high
        costs = {j.model: keeper.planned_s(j.model, j.epochs) for j in jobs}
    else:
        costs = job_costs(jobs, by_name, run.x.shape[1:], run.data.competition.n_classes)
        jobs = longest_first(jobs, costs)
    # the stand-by bags run only when the jobs before them are fast enough: not in the ETA until then
    progress.set_costs(costs, optional=set(keeper.standby) - keeper.started if keeper is not None else ())

    def hooks(job: FoldJob) -> dict:  # the per-step bar, for jobs run in this process
        rows = int((folds != job.fold).sum())
        if job.model != pseudo.base(job.model):
            rows += len(pseudo.load_labels(run_dir, job.fold)[0])
        steps = -(-rows // int(job.params["batch_size"]))
        return progress.fold_hooks(job.model, job.fold, k, job.epochs, steps)

    def on_done(job: FoldJob, result: dict) -> None:
        manifest["sessions"][-1].setdefault("jobs", []).append({
            "job": job.name, "status": result["status"], "node": result.get("node"), "host": result.get("host"),
            "wall_s": result["wall_s"], "worker_s": result.get("worker_s"), "train_s": result.get("seconds"),
            **({"planned_s": round(keeper.planned_s(job.model, job.epochs), 1)} if keeper else {})})
        run.checkpoint()
        left[job.model] -= 1
        if not left[job.model]:
            finish(by_name[job.model])

    executor = make_executor(opts.executor, jobs=opts.jobs, cpus_per_job=opts.cpus_per_job,
                             address=opts.ray_address, timeout=opts.ray_timeout, hooks=hooks)
    with executor.session(JobData(x=x, y=y, x_test=x_test, folds=folds, classes=run.data.competition.n_classes),
                          run_dir):
        info = executor.describe()
        manifest["executor"] = info
        manifest["sessions"][-1]["executor"] = {key: info[key] for key in ("name", "jobs", "cpus_per_job")}
        run.checkpoint()
        progress.stage(f"training {len(jobs)} fold job(s) on the {info['name']} executor, {info['jobs']} at once"
                       + (f", {info['cpus_per_job']} CPU(s) each" if info.get("cpus_per_job") else "")
                       + (f" ({len(info['nodes'])} node(s))" if info["name"] == "ray" else ""))
        try:
            run_jobs(executor, jobs, on_done, progress, keeper=keeper)
        finally:
            if keeper is not None:  # the speed the jobs ran at also scales the stages after training
                run.budget["speed"] = round(keeper.speed(), 3)
                manifest["budget"].setdefault("events", []).extend(keeper.events)
                run.checkpoint()


def _keeper(run: Run, specs: list[ModelSpec], model_params: dict[str, dict[str, Any]]) -> Any:
    """The time limit's keeper of this run's training (harness.run.keeper): the plan's costs, the
    deadline left after the stages that follow training, the cheapest model kept whatever happens."""
    from harness.run.keeper import Keeper
    from harness.run.planner import ENSEMBLE_ROWS, MARGIN, cheapest, standby_bags

    budget = run.budget
    costs, plan = budget["costs"], budget["plan"]
    mins = {j["model"]: int(j.get("min_epochs", j["epochs"])) for j in plan["jobs"]}

    def planned_s(model: str, epochs: int) -> float:
        base = bags.base(model)
        return costs["job_s"][base] + epochs * costs["epoch_s"][base]

    def on_epochs(model: str, epochs: int) -> None:  # a bag re-planned before any of its folds started
        model_params[model] = {**model_params[model], "epochs": epochs}
        io.write_json(run.run_dir / model / "params.json", model_params[model])
        run.manifest["params"][model] = model_params[model]

    limit = budget["limit_s"]
    # the run's own seconds before training (data, run folder, folds) are spent by now: the
    # deadline holds back only those after it (a 10-s start held back twice cut `ann` 8 -> 7
    # epochs at the first fold of a 10-minute run)
    start_s = float(costs.get("start_s", 0.0))
    deadline = run.clock + limit * (1 - MARGIN) - plan["after_s"] - (costs["run_s"] - start_s)
    # the latest a job may end: the limit less the leanest stages after training (no INT8, no
    # benchmark), as this setup took them before or as estimated
    from harness.run.calibrate import After, after_training

    per_row, run_s = after_training(After(**budget["after"]).leaner()[-1], budget["calibration"], start_s)
    rows = sum(plan["bags"].values()) + ENSEMBLE_ROWS
    hard = run.clock + limit - (rows * per_row + run_s)
    protected = cheapest([s.name for s in specs if bags.number(s.name) == 1],
                         lambda n: planned_s(n, int(model_params[n]["epochs"])))
    standby = {n: costs["after_s"][m] for n, m in standby_bags(plan).items()}
    return Keeper(deadline=deadline, slots=int(plan["slots"]), planned_s=planned_s,
                  min_epochs={s.name: mins.get(bags.base(s.name), 1) for s in specs}, protected=protected,
                  grace_s=max(hard - deadline, 0.0), say=run.say, on_epochs=on_epochs,
                  standby={n: s for n, s in standby.items() if n in {sp.name for sp in specs}})


def pseudo_round(run: Run) -> list[str]:
    """With --pseudo-label: label the test rows per fold from round one and fine-tune every model
    on them (`<model>+pl` rows); without it, remove what an earlier invocation made. Returns the
    `+pl` model names."""
    threshold = run.opts.pseudo_label
    if threshold is None:
        for gone in pseudo.remove(run.run_dir):
            run.say(f"{gone}: removed (no --pseudo-label)")
        return []
    teachers = [s.name for s in run.specs if (run.run_dir / s.name / "cv.json").is_file()]
    doc = pseudo.make_labels(run.run_dir, teachers, run.y, run.k, threshold)
    run.say("pseudo-labels: " + pseudo.summary(doc))
    pl_specs = [pseudo.spec_for(s) for s in run.specs if s.name in teachers]
    pl_params = {pseudo.name(s.name): pseudo.params_for(run.params[s.name], threshold)
                 for s in run.specs if s.name in teachers}
    run.manifest["params"].update(pl_params)
    cross_validate(run, pl_specs, pl_params)
    return [s.name for s in pl_specs]

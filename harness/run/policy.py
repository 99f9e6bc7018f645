"""The run's augmentation policy: which transforms its data wants, chosen on OOF accuracy.

    choice = choose_policy(opts, specs, params, data, seed, progress)   # before the plan
    params = {name: apply_policy(p, choice["policy"]) for name, p in params.items()}

A competition's spec may pin a policy (Digit Recognizer and Kannada-MNIST pin `digits`: their
recipes stay as written). Otherwise a short cross-validated probe decides: one model (the
cheapest selected CNN whose recipe augments, else the cheapest model that augments) trains its
full recipe under each policy of harness.train.augment.POLICIES on the same stratified subset,
2 folds, the same seeds; the policy with the most correct out-of-fold predictions wins (ties go
to the earlier policy: `digits`, then `objects`, then `none`). The subset is PROBE_ROWS rows, fewer
under a short time limit (PROBE_SHARE of it at most, by the calibrated speed when there is one),
and the probe's seconds count against the limit. The choice, each policy's OOF accuracy and
errors, and what the probe cost go into the manifest (`augmentation`) and the report.
"""

from __future__ import annotations

import time
from typing import Any

from harness.registry import ModelSpec
from harness.run.options import RunOptions
from harness.train.augment import POLICIES, apply_policy

PROBE_ROWS = 8000
PROBE_FOLDS = 2
MIN_PROBE_ROWS = 1000
PROBE_SHARE = 0.05  # of a time limit, at most


def probe_model(specs: list[ModelSpec], params: dict[str, dict[str, Any]], shape: tuple[int, ...],
                classes: int) -> ModelSpec | None:
    """The model the probe trains: the cheapest selected CNN that augments, else the cheapest
    model that augments (forward FLOPs x epochs); None when no model augments."""
    from harness.train.flops import keras_flops

    augments = [s for s in specs if float(params[s.name].get("augment", 0.0)) > 0]
    if not augments:
        return None
    cnns = [s for s in augments if s.family == "cnn"] or augments

    def cost(s: ModelSpec) -> float:
        return keras_flops(s.build(params[s.name], shape=shape, classes=classes)) * int(params[s.name]["epochs"])

    return min(cnns, key=cost)


def probe_rows(opts: RunOptions, n_rows: int, per_image_s: float | None, epochs: int, slots: int) -> int:
    """Rows for the probe: PROBE_ROWS, fewer when a time limit would give it more than PROBE_SHARE."""
    rows = min(n_rows, PROBE_ROWS)
    if opts.time_limit is not None:
        if per_image_s:  # policies x folds fits of (folds-1)/folds of the rows each, over the slots
            per_row = per_image_s * epochs * len(POLICIES) * (PROBE_FOLDS - 1) / max(1, min(slots, len(POLICIES)))
            rows = min(rows, int(PROBE_SHARE * opts.time_limit / per_row))
        else:
            rows = min(rows, int(PROBE_ROWS * opts.time_limit / 1800))
    return max(min(n_rows, MIN_PROBE_ROWS), rows)


def choose_policy(opts: RunOptions, specs: list[ModelSpec], params: dict[str, dict[str, Any]], data: Any,
                  seed: int, progress: Any, per_image_s: dict[str, float] | None = None) -> dict[str, Any]:
    """The policy the spec pins, or the probe's choice with every policy's figures."""
    from harness.executors import make_executor, run_jobs
    from harness.train.cv import make_folds, stratified_subset
    from harness.train.jobs import JobData, TrialJob

    comp = data.competition
    if comp.augment:
        return {"policy": comp.augment, "chosen_by": f"the competition's spec ({comp.slug})"}
    shape, classes = tuple(data.x_train.shape[1:]), comp.n_classes
    spec = probe_model(specs, params, shape, classes)
    if spec is None:
        return {"policy": "none", "chosen_by": "no selected model augments its training data"}
    epochs = int(params[spec.name]["epochs"])
    executor = make_executor(opts.executor, jobs=opts.jobs, cpus_per_job=opts.cpus_per_job,
                             address=opts.ray_address, timeout=opts.ray_timeout)
    rows = probe_rows(opts, len(data.y_train), (per_image_s or {}).get(spec.name), epochs, executor.slots)
    index = stratified_subset(data.y_train, rows, seed)
    x, y = data.x_train[index], data.y_train[index]
    folds = make_folds(y, PROBE_FOLDS, seed)
    progress.stage(f"augmentation: probing {', '.join(POLICIES)} with {spec.name} ({epochs} epochs, "
                   f"{len(y):,} rows, {PROBE_FOLDS} folds)")
    jobs = [TrialJob(model=spec.name, number=i, params=apply_policy(params[spec.name], policy), epochs=epochs,
                     folds_used=PROBE_FOLDS, seed=seed) for i, policy in enumerate(POLICIES)]
    found: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()

    def done(job: TrialJob, result: dict[str, Any]) -> None:
        correct = int(round(result["value"] * len(y)))
        found[POLICIES[job.number]] = {"oof_accuracy": result["value"], "errors": len(y) - correct,
                                       "seconds": result.get("seconds")}
        progress.stage(f"augmentation: {POLICIES[job.number]}: OOF {100 * result['value']:.2f} % "
                       f"({len(y) - correct} errors in {len(y):,})")

    # its workers, kept warm, go on to the calibration or the training
    with executor.session(JobData(x=x, y=y, x_test=x[:1], folds=folds, classes=classes), keep_warm=True):
        run_jobs(executor, jobs, done)
    policy = min(POLICIES, key=lambda p: (found[p]["errors"], POLICIES.index(p)))
    margin = found["digits"]["errors"] - found[policy]["errors"]
    progress.stage(f"augmentation: {policy}" + (f" ({margin} fewer OOF errors than digits)" if policy != "digits"
                                                 else " (the recipes as written)"))
    return {"policy": policy, "chosen_by": "probe", "model": spec.name, "epochs": epochs, "rows": int(len(y)),
            "folds": PROBE_FOLDS, "policies": found, "margin_over_digits": margin,
            "seconds": round(time.perf_counter() - start, 1)}


def applied(params: dict[str, dict[str, Any]], choice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every model's parameters under the chosen policy."""
    return {name: apply_policy(p, choice["policy"]) for name, p in params.items()}


__all__ = ["PROBE_ROWS", "POLICIES", "applied", "choose_policy", "probe_model", "probe_rows"]

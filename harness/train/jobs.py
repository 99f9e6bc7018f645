"""Jobs: the units of work an executor hands to a worker, and what a worker does with them.

A job is one (model, fold) of a run (`FoldJob`) or one trial of a study (`TrialJob`). The same
`execute(job, data, where)` runs in the driver's process, in a spawned local process or in a Ray
worker, so every executor trains a fold the same way.

A fold is trained into a staging folder of its own (`.fold_<k>.<host>.<pid>.<token>` beside the
fold folder) and published by renaming that folder to `fold_<k>`: a directory rename onto an
existing non-empty folder fails, so the first attempt to finish wins and any other attempt (a Ray
retry, a second driver) discards its copy. A fold folder is therefore never a mix of two
attempts, and a fold that is already complete is never trained again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.core import io
from harness.train import bags, pseudo

# A fold's per-epoch validation (its learning curve) runs on this many of its validation rows:
# on all of them it cost 5-12 % of a 5-fold epoch and ~25 % of a 2-fold (--quick) one, where
# the validation fold is as large as the training folds. Tuning's pruner still sees every row.
CURVE_VAL_ROWS = 2048


@dataclass(frozen=True)
class JobData:
    """The arrays every job of one run or study reads (put once in Ray's object store)."""

    x: np.ndarray          # uint8 [N,H,W,C]: the run's training rows
    y: np.ndarray          # int [N]: class indices
    x_test: np.ndarray     # uint8 [M,H,W,C]: test.csv (a study passes one row)
    folds: np.ndarray      # int8 [N]: the fold of each row
    classes: int = 10      # the competition's number of classes


@dataclass(frozen=True)
class FoldJob:
    """Train fold `fold` of `model` in `run_dir` (absolute: workers may run elsewhere)."""

    run_dir: str
    model: str
    fold: int
    k: int
    params: dict[str, Any]
    seed: int              # the fold's own training seed
    epochs: int
    deterministic: bool = False
    kind: str = "fold"

    @property
    def name(self) -> str:
        return f"{self.model} fold {self.fold + 1}/{self.k}"

    @property
    def key(self) -> str:
        return f"{self.model}/fold_{self.fold}"


@dataclass(frozen=True)
class TrialJob:
    """Score one trial's parameters on the first `folds_used` folds (nothing is kept on disk).

    `thresholds[e]` (or None) is the pruner's bar at epoch e, fixed by the driver when it handed
    the trial out: fold 0 stops once its best validation accuracy so far is below it."""

    model: str
    number: int
    params: dict[str, Any]
    epochs: int
    folds_used: int
    seed: int              # the study's seed; fold f trains with seed * 100 + f, as `harness run`
    thresholds: tuple[float | None, ...] = ()
    kind: str = "trial"

    @property
    def name(self) -> str:
        return f"{self.model} trial #{self.number}"

    @property
    def key(self) -> str:
        return f"{self.model}/trial_{self.number}"


@dataclass(frozen=True)
class ProbeJob:
    """Measure how fast `model` trains and predicts in a worker of the run's layout (the planner's
    calibration, harness.run.calibrate): one fit of 2 epochs on `rows` rows, timed epoch by epoch
    (the first carries the fit's fixed cost: building, tracing; the second is the steady state),
    then predictions on the validation rows. `copy` tells apart the copies run side by
    side, one per slot, so that each sees the contention of a full machine. The first probe of a
    calibration also counts the forward FLOPs of every model in it (`count`), after its timings:
    the driver estimates from them what the models not probed yet would cost."""

    model: str
    params: dict[str, Any]
    rows: int
    seed: int
    copy: int = 0
    count: dict[str, dict[str, Any]] | None = None   # models (and params) whose FLOPs it counts
    kind: str = "probe"

    @property
    def name(self) -> str:
        return f"{self.model} calibration" + (f" ({self.copy + 1})" if self.copy else "")

    @property
    def key(self) -> str:
        return f"{self.model}/probe_{self.copy}"


@dataclass
class Where:
    """Where and how a job runs; recorded in each fold.json."""

    executor: str
    threads: int | None = None       # TF intra-op threads (None: TensorFlow's default, all cores)
    node: str | None = None          # Ray node id, or None locally
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)


def fold_complete(d: Path) -> bool:
    return all((d / f).is_file() for f in ("fold.json", "model.keras", "oof.npy", "test.npy", "history.json"))


def stage_dirs(model_dir: Path) -> list[Path]:
    """Staging folders of attempts at this model's folds (finished or abandoned)."""
    return sorted(model_dir.glob(".fold_*.*")) if model_dir.is_dir() else []


def dead_here(host: str | None, pid: Any) -> bool:
    """Whether `pid` on `host` is known dead: only a process of this host can be checked."""
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError):
        pass
    return False


def clean_stale_stages(model_dir: Path) -> list[Path]:
    """Delete staging folders whose attempt is dead on this host (a killed worker or driver).

    Folders of other hosts are left alone: their owners may still be alive."""
    removed = []
    for d in stage_dirs(model_dir):
        parts = d.name.split(".")  # ['', 'fold_k', host..., pid, token]
        if len(parts) >= 5 and dead_here(".".join(parts[2:-2]), parts[-2]):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _publish(stage: Path, final: Path) -> bool:
    """Rename the staged fold onto its final name; False if another attempt got there first."""
    if final.exists() and not fold_complete(final):
        # A folder from before staging existed (or a hand-made one): move it aside atomically.
        aside = final.with_name(f".{final.name}.stale.{secrets.token_hex(4)}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
    try:
        os.rename(stage, final)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        shutil.rmtree(stage, ignore_errors=True)
        return False
    return True


_IMPORT_S: float | None = None   # what TensorFlow's and Keras's import took in this process


def configure_worker(threads: int | None, deterministic: bool = False) -> float:
    """TensorFlow for this process: `threads` intra-op threads, one inter-op thread, so that jobs
    running side by side use exactly the CPUs they were given. Must run before TF's first op.
    Returns the seconds the first call's import took (a worker's warm-up), remembered so that a
    worker kept warm from an earlier session still reports it."""
    global _IMPORT_S
    from harness.core.tfquiet import import_tensorflow

    begin = time.perf_counter()
    import_tensorflow(threads)
    if _IMPORT_S is None:
        import keras  # noqa: F401  (every job imports it next)

        _IMPORT_S = time.perf_counter() - begin
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    return _IMPORT_S


def clear_keras() -> None:
    """Drop the last job's models and graphs (Keras's global state) before a reused worker
    process takes its next job."""
    if "keras" in sys.modules:
        import gc

        sys.modules["keras"].backend.clear_session()
        gc.collect()


def run_fold(job: FoldJob, data: JobData, where: Where,
             hooks: dict[str, Callable] | None = None) -> dict[str, Any]:
    """Train one fold unless it is complete; returns its fold.json record plus `status`
    (trained | skipped: already complete | duplicate: another attempt published first)."""
    from harness.core.runs import fold_dir
    from harness.registry import get_model
    from harness.train.cv import train_fold

    final = fold_dir(Path(job.run_dir), job.model, job.fold)
    if fold_complete(final):
        return {**io.read_json(final / "fold.json"), "status": "skipped"}
    configure_worker(where.threads, job.deterministic)
    round_one = pseudo.base(job.model)  # `cnn_deep~2+pl` fine-tunes `cnn_deep~2`, a bag of `cnn_deep`
    spec = get_model(bags.base(round_one))
    tr, va = data.folds != job.fold, data.folds == job.fold
    x_tr, y_tr, init = data.x[tr], data.y[tr], None
    if job.model != round_one:  # a pseudo-label fine-tune: the fold's rows plus its test labels
        index, labels = pseudo.load_labels(Path(job.run_dir), job.fold)
        x_tr, y_tr = np.concatenate([x_tr, data.x_test[index]]), np.concatenate([y_tr, labels])
        init = fold_dir(Path(job.run_dir), round_one, job.fold) / "model.keras"
    stage = final.with_name(f".{final.name}.{where.host}.{where.pid}.{secrets.token_hex(4)}")
    from harness.core.device import device_label

    record = {"executor": where.executor, "host": where.host, "node": where.node, "pid": where.pid,
              "threads": where.threads, "device": device_label(),
              "init_from": None if init is None else init.relative_to(job.run_dir).as_posix()}
    stage.mkdir(parents=True)  # now, not when training ends: its name tells whose attempt it is
    hooks = _epoch_failpoint(job, hooks)
    replayed = job.params.get("shortened", {}).get(str(job.fold))
    if replayed:  # --replay of a run that shortened this fold: shortened at the same epoch
        at, epochs = replayed
        hooks = {**(hooks or {}), "control": lambda done: epochs if done == at else None}
    try:
        result = train_fold(spec, job.params, x_tr, y_tr, data.x[va], data.y[va], data.x_test,
                            seed=job.seed, out=stage, epochs=job.epochs, fold=job.fold, record=record,
                            classes=data.classes,
                            init_from=init, val_rows=CURVE_VAL_ROWS, **(hooks or {}))
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    published = _publish(stage, final)
    return {**result.__dict__, "status": "trained" if published else "duplicate"}


def run_trial(job: TrialJob, data: JobData, where: Where) -> dict[str, Any]:
    """Train the trial's folds in a temp folder; returns accuracies, fold 0's curve and where it
    stopped if the pruning bar was crossed."""
    import tempfile

    from harness.registry import get_model
    from harness.train.cv import train_fold

    configure_worker(where.threads)
    spec = get_model(job.model)
    curve: list[float] = []
    accs: list[float] = []
    correct = total = 0

    class Pruned(Exception):
        pass

    def on_epoch(epoch: int, logs: dict) -> None:
        curve.append(float(logs.get("val_accuracy", 0.0)))
        bar = job.thresholds[epoch] if epoch < len(job.thresholds) else None
        if bar is not None and max(curve) < bar:
            raise Pruned()

    tmp = Path(tempfile.mkdtemp(prefix="harness-trial-"))
    start = time.perf_counter()
    try:
        for f in range(job.folds_used):
            tr, va = data.folds != f, data.folds == f
            try:
                r = train_fold(spec, job.params, data.x[tr], data.y[tr], data.x[va], data.y[va], data.x_test,
                               seed=job.seed * 100 + f, out=tmp / f"fold_{f}", epochs=job.epochs, fold=f,
                               classes=data.classes,
                               on_epoch=on_epoch if f == 0 else None)
            except Pruned:
                return {"state": "pruned", "curve": curve, "pruned_at_epoch": len(curve), "fold_accuracies": accs,
                        "seconds": round(time.perf_counter() - start, 2), **where.__dict__}
            accs.append(r.accuracy)
            correct += round(r.accuracy * r.n_val)
            total += r.n_val
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"state": "complete", "value": correct / total, "curve": curve, "fold_accuracies": accs,
            "seconds": round(time.perf_counter() - start, 2), **where.__dict__}


def run_probe(job: ProbeJob, data: JobData, where: Where) -> dict[str, Any]:
    """Seconds per training image in the steady state (the second epoch: its input pipeline
    restarted and its validation pass included, as a fold's later epochs have them), a fit's
    fixed seconds (what the first epoch took beyond it: building, tracing), seconds per
    predicted image and the seconds TensorFlow's import took (a worker's first job: its
    warm-up), measured in this worker (see ProbeJob)."""
    import tempfile

    from harness.registry import get_model
    from harness.train.cv import predict, train_fold

    import_s = configure_worker(where.threads)
    import keras
    spec = get_model(bags.base(job.model))
    tr, va = np.flatnonzero(data.folds != 0)[:job.rows], np.flatnonzero(data.folds == 0)[:2048]
    ends: list[float] = []
    tmp = Path(tempfile.mkdtemp(prefix="harness-probe-"))
    try:
        start = time.perf_counter()
        train_fold(spec, job.params, data.x[tr], data.y[tr], data.x[va[:512]], data.y[va[:512]], data.x[va[:1]],
                   seed=job.seed, out=tmp / "probe", epochs=2, fold=0, classes=data.classes,
                   on_epoch=lambda _e, _logs: ends.append(time.perf_counter()))
        model = keras.saving.load_model(tmp / "probe" / "model.keras", compile=False)
        # once at the timed batches' shape: its first call builds the kernels for it (oneDNN's
        # primitives), as a fold's first batch of 49,000 predictions does
        predict(model, data.x[va[:1024]])
        t0 = time.perf_counter()
        predict(model, data.x[va])
        predict_s = (time.perf_counter() - t0) / len(va)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    flops = {}
    if job.count:
        from harness.train.flops import keras_flops

        for name, params in job.count.items():
            model = get_model(bags.base(name)).build(params, shape=data.x.shape[1:], classes=data.classes)
            flops[name] = keras_flops(model)
    # rounded once, and the fixed cost taken from the rounded figures, so the record agrees with itself
    first, steady = round(ends[0] - start, 3), round(ends[1] - ends[0], 3)
    return {"model": job.model, "copy": job.copy, "rows": int(len(tr)), "epochs_s": [first, steady],
            "train_s_per_image": steady / len(tr), "fit_fixed_s": round(max(first - steady, 0.0), 3),
            "predict_s_per_image": predict_s, "import_s": round(import_s, 3), **({"flops": flops} if flops else {}),
            **where.__dict__}


def _slow_failpoint(job: FoldJob) -> None:
    """For tests of a time limit: with HARNESS_FAILPOINT_SLEEP=<model>:<seconds>, every fold of
    that model but its first sleeps that long first (a worker slowed partway through a run)."""
    spec = os.environ.get("HARNESS_FAILPOINT_SLEEP", "")
    model, _, seconds = spec.rpartition(":")
    if model == job.model and job.fold > 0:
        time.sleep(float(seconds))


def _epoch_failpoint(job: FoldJob, hooks: dict[str, Callable] | None) -> dict[str, Callable] | None:
    """For tests of a time limit: with HARNESS_FAILPOINT_EPOCH_SLEEP=<model>:<seconds>, every epoch
    of that model's folds after the second ends that much later (a machine slowed under a fold)."""
    model, _, seconds = os.environ.get("HARNESS_FAILPOINT_EPOCH_SLEEP", "").rpartition(":")
    if model != job.model:
        return hooks
    inner = (hooks or {}).get("on_epoch")

    def on_epoch(epoch: int, logs: dict) -> None:
        if epoch >= 2:
            time.sleep(float(seconds))
        if inner:
            inner(epoch, logs)

    return {**(hooks or {}), "on_epoch": on_epoch}


def execute(job: FoldJob | TrialJob | ProbeJob, data: JobData, where: Where,
            hooks: dict[str, Callable] | None = None) -> dict[str, Any]:
    """Run any job; the one entry point every executor calls in its worker. `worker_s` is its
    time in the worker (TF start-up, training, predictions, writes), so that the driver can tell
    an executor's own overhead apart."""
    start = time.perf_counter()
    if job.kind == "fold":
        _slow_failpoint(job)  # type: ignore[arg-type]
        result = run_fold(job, data, where, hooks)  # type: ignore[arg-type]
    elif job.kind == "probe":
        result = run_probe(job, data, where)  # type: ignore[arg-type]
    else:
        result = run_trial(job, data, where)  # type: ignore[arg-type]
    return {**result, "worker_s": round(time.perf_counter() - start, 3)}

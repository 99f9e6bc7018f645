"""Stratified k-fold cross-validation: train each fold model, keep its out-of-fold (OOF) and
test probabilities, and assemble the model's CV accuracy and fold-ensemble test prediction.

    folds = make_folds(y, k=5, seed=42)                      # same folds for every model
    train_fold(spec, params, x_tr, y_tr, x_val, y_val, x_test, seed=..., out=..., epochs=10, fold=0)
    result = assemble_cv(run_dir, spec, params, y, folds, epochs=10)   # once every fold is done

Folds are trained as jobs (harness.train.jobs) by an executor (harness.executors.local); each fold folder is
published whole, so a fold is either complete or retrained: an interrupted run resumes from the
folds it finished.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.core import io
from harness.core.errors import RunError
from harness.core.runs import fold_dir, model_dir
from harness.registry import ModelSpec
from harness.train.augment import augment_fn

# ----------------------------------------------------------------------------- folds

def make_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold id (0..k-1) of each row; every class is spread evenly over the folds.

    Rows of each class are shuffled with the seed and dealt round-robin, continuing the deal
    from class to class so fold sizes differ by at most one.
    """
    if k < 2:
        raise RunError(f"--folds must be at least 2, got {k}")
    counts = np.bincount(y)
    if counts[counts > 0].min() < k:
        raise RunError(f"--folds {k} is more than the rarest class has rows ({counts[counts > 0].min()})")
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=np.int8)
    offset = 0
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        folds[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return folds


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted row indices of a class-balanced subset of size n (for --limit smoke runs)."""
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed + 1)
    picked = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        take = int(round(n * len(idx) / len(y)))
        picked.append(rng.choice(idx, size=min(take, len(idx)), replace=False))
    return np.sort(np.concatenate(picked))


# ----------------------------------------------------------------------------- training

@dataclass
class FoldResult:
    fold: int
    accuracy: float
    n_train: int
    n_val: int
    epochs: int
    seconds: float
    images_per_s: float
    n_params: int = 0
    resumed: bool = False
    # where and how it ran (harness.train.jobs.Where); None in folds trained before they were recorded
    precision: str | None = None     # the Keras policy it trained under (harness.train.cv.training_policy)
    batch_norm: str | None = None    # "fused" (harness.train.batchnorm) or "keras"; None in older folds
    executor: str | None = None
    host: str | None = None
    node: str | None = None
    pid: int | None = None
    threads: int | None = None
    device: str | None = None        # "CPU" or "GPU (<name>, cc X.Y, <policy>)" (harness.core.device)
    seed: int | None = None          # the training seed (harness.train.bags.job_seed); None in older folds
    init_from: str | None = None     # a fine-tune's starting fold model, relative to the run folder
    planned_epochs: int | None = None   # a fold shortened while it trained: the epochs it started with
    shortened_at: int | None = None     # and the epochs done when it was told to end sooner


@dataclass
class CVResult:
    model: str
    oof_accuracy: float
    fold_mean: float
    fold_std: float
    folds: list[FoldResult]
    train_seconds: float
    train_ips: float


PREFETCH_BATCHES = 8  # batches made ahead of the training step


def _train_dataset(x: np.ndarray, y: np.ndarray, params: dict[str, Any], seed: int, epochs: int,
                   classes: int = 10):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(params["batch_size"])).repeat(epochs)
    ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b), num_parallel_calls=tf.data.AUTOTUNE)
    strength, elastic = float(params.get("augment", 0.0)), float(params.get("elastic", 0.0))
    if strength > 0 or elastic > 0 or params.get("flip"):
        augment = augment_fn(strength, seed, elastic, size=x.shape[1:3], flip=bool(params.get("flip", False)))
        ds = tf.data.Dataset.zip((tf.data.Dataset.counter(), ds)).map(
            lambda i, xy: augment(i, *xy), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if params.get("label_smoothing", 0) > 0:
        ds = ds.map(lambda a, b: (a, tf.one_hot(b, classes)))
    from harness.core.tfquiet import threads

    options = tf.data.Options()
    # No autotuning: with it, `fit` returned 0-31 s after a fold's last epoch (the iterator's
    # teardown), time the keeper cannot see; without it, none, and epochs within the noise of
    # side-by-side runs (docs/MEASUREMENTS.md). The maps' AUTOTUNE then means the pool's threads.
    options.autotune.enabled = False
    if threads() is not None:  # a job given k CPUs: tf.data's pool too, not one thread per core
        options.threading.private_threadpool_size = threads()
    return ds.with_options(options).prefetch(PREFETCH_BATCHES)


def compile_model(model: Any, params: dict[str, Any], steps: int, steps_per_execution: int = 1,
                  shortenable: bool = False) -> Any:
    """Compile with the recipe's optimizer, schedule and loss; returns the learning-rate schedule
    (None: a constant rate), `shortenable` (harness.train.shorten) for a fold that may be told to
    end with fewer epochs."""
    import keras

    lr = float(params["learning_rate"])
    schedule = None
    if params.get("schedule", "cosine") == "cosine":
        warmup = max(1, steps // 30)
        lr = schedule = keras.optimizers.schedules.CosineDecay(
            lr / 10, decay_steps=max(1, steps - warmup), alpha=0.01,
            warmup_target=lr, warmup_steps=warmup)
        if shortenable:
            from harness.train.shorten import shortenable as wrap

            lr = schedule = wrap(schedule)
    name = params.get("optimizer", "adam")
    # EMA of weights: fit() ends by copying the averaged weights into the model (Keras 3).
    ema = {"use_ema": True, "ema_momentum": float(params["ema"])} if params.get("ema") else {}
    if name == "adam":
        opt = keras.optimizers.Adam(lr, **ema)
    elif name == "adamw":
        opt = keras.optimizers.AdamW(lr, weight_decay=float(params.get("weight_decay", 0.0)), **ema)
    elif name == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, **ema)
    else:
        raise RunError(f"unknown optimizer {name!r} (adam, adamw, sgd)")
    if params.get("label_smoothing", 0) > 0:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=float(params["label_smoothing"]))
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=opt, loss=loss, metrics=metrics, jit_compile=False,
                  steps_per_execution=steps_per_execution)
    return schedule


PRECISIONS = ("float32", "bfloat16")


def training_policy(params: dict[str, Any]) -> str:
    """The Keras dtype policy a recipe trains under. On a GPU every model trains in the mixed
    precision that suits the GPU (harness.core.device.gpu_policy). On the CPU `precision: bfloat16` means
    mixed_bfloat16 where the CPU has native bf16 (measured 1.2x on cnn_deep and ann: docs/SPEED_AUDIT.md),
    else float32."""
    want = params.get("precision", "float32")
    if want not in PRECISIONS:
        raise RunError(f"unknown precision {want!r} ({', '.join(PRECISIONS)})")
    from harness.core.device import bf16_fast, visible_gpu

    gpu = visible_gpu()
    if gpu is not None:
        return gpu["policy"]
    return "mixed_bfloat16" if want == "bfloat16" and bf16_fast() else "float32"


def oof_fold_stats(oof: np.ndarray, y: np.ndarray, folds: np.ndarray) -> tuple[list[float], float, float]:
    """Each fold's accuracy of out-of-fold probabilities, their mean and sample std (0 with one fold)."""
    k = int(folds.max()) + 1
    accs = [float((oof[folds == f].argmax(1) == y[folds == f]).mean()) for f in range(k)]
    return accs, float(np.mean(accs)), float(np.std(accs, ddof=1)) if k > 1 else 0.0


def predict(model: Any, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Softmax probabilities, float32, without Keras's per-call dataset machinery. Many batches go
    through a traced `tf.function` (1.06-1.27x the images/s of eager calls, identical outputs:
    ~15 s of each cnn_deep fold's 49,000 OOF + test predictions on an AVX2 core); a few stay eager,
    where tracing would cost more than it saves."""
    call = lambda t: model(t, training=False)  # noqa: E731
    if len(x) > 4 * batch_size:
        import tensorflow as tf

        call = tf.function(call, reduce_retracing=True)
    out = [np.asarray(call(x[i:i + batch_size].astype(np.float32))) for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32)


def train_fold(spec: ModelSpec, params: dict[str, Any], x_tr: np.ndarray, y_tr: np.ndarray,
               x_val: np.ndarray, y_val: np.ndarray, x_test: np.ndarray, *, seed: int, out: Path,
               epochs: int, fold: int, record: dict[str, Any] | None = None,
               on_epoch: Callable[[int, dict], None] | None = None,
               on_batch: Callable[[], None] | None = None, init_from: Path | None = None,
               val_rows: int | None = None, classes: int = 10,
               control: Callable[[int], int | None] | None = None) -> FoldResult:
    """Train one fold model and write its artefacts to `out` (fold.json last, with `record`:
    where it ran). Callers that share a run folder train into a staging folder (harness.train.jobs).
    `init_from`: a saved model of the same architecture to start from (a fine-tune).
    `val_rows`: the per-epoch validation (learning curves, the progress bar) uses only the first
    that many validation rows; the fold's accuracy always comes from all of them. The model is
    built for `x_tr`'s image shape and `classes` classes. `control`, called after each epoch with
    the epochs done, may return fewer epochs to end with (at least one more): the rest of the
    learning-rate schedule is then run in them (harness.train.shorten), and the fold records
    the epochs it trained, those it started with and the epoch it was shortened at."""
    import keras

    policy = training_policy(params)
    keras.mixed_precision.set_global_policy(policy)  # process-wide: restored below
    try:
        keras.utils.set_random_seed(seed)
        model = spec.build(params, shape=x_tr.shape[1:], classes=classes)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if init_from is not None:
        model.set_weights(keras.saving.load_model(init_from, compile=False).get_weights())
    plain = model
    batch_norm = params.get("batch_norm", "fused")  # older params files lack it
    if batch_norm not in ("fused", "keras"):
        raise RunError(f"unknown batch_norm {batch_norm!r} (fused, keras)")
    if batch_norm == "fused":  # cnn_deep's bf16 step 2.7x in the speed audit (harness.train.batchnorm)
        from harness.train.batchnorm import fused_for_training

        model = fused_for_training(model)
    fused = model is not plain
    steps_per_epoch = math.ceil(len(x_tr) / int(params["batch_size"]))
    schedule = compile_model(model, params, steps_per_epoch * epochs, shortenable=control is not None)
    target, shortened_at = epochs, None
    n_val = len(y_val) if val_rows is None else min(val_rows, len(y_val))
    val_y = y_val[:n_val] if not params.get("label_smoothing", 0) else keras.utils.to_categorical(y_val[:n_val], classes)

    class _Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if on_batch:
                on_batch()

        def on_epoch_end(self, epoch, logs=None):
            nonlocal target, shortened_at
            ends.append(round(time.perf_counter() - start, 3))
            if on_epoch:
                on_epoch(epoch, logs or {})
            asked = control(epoch + 1) if control else None
            if asked is not None and max(asked, epoch + 2) < target:
                target, shortened_at = max(asked, epoch + 2), epoch + 1
                if schedule is not None:
                    from harness.train.shorten import shorten

                    shorten(schedule, (epoch + 1) * steps_per_epoch, target * steps_per_epoch)
            if epoch + 1 >= target:
                self.model.stop_training = True

    start, ends = time.perf_counter(), []  # each epoch's end, seconds into training: the keeper's error, read later
    history = model.fit(
        _train_dataset(x_tr, y_tr, params, seed, epochs, classes), epochs=epochs, steps_per_epoch=steps_per_epoch,
        validation_data=(x_val[:n_val].astype(np.float32), val_y), validation_batch_size=1024,
        shuffle=False, verbose=0, callbacks=[_Progress()])
    seconds = time.perf_counter() - start
    if policy != "float32" or fused:
        # Mixed precision keeps float32 weights, and the fused batch norm is a training-time layer:
        # copy the weights into a float32 model of plain Keras layers, which is what is saved,
        # predicts OOF/test and is exported, so ONNX computes exactly what was scored.
        trained, model = model, spec.build(params, shape=x_tr.shape[1:], classes=classes)
        model.set_weights(trained.get_weights())
    oof = predict(model, x_val)
    test = predict(model, x_test)
    accuracy = float((oof.argmax(1) == y_val).mean())

    out.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(out / "model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    io.write_json(out / "history.json", {**{k: [float(v) for v in vs] for k, vs in history.history.items()},
                                         "epoch_end_s": ends})
    io.write_npy(out / "oof.npy", oof)
    io.write_npy(out / "test.npy", test)
    shortened = {"planned_epochs": epochs, "shortened_at": shortened_at} if shortened_at else {}
    result = FoldResult(fold=fold, accuracy=accuracy, n_train=len(x_tr),
                        n_val=len(x_val), epochs=target, seconds=round(seconds, 2),
                        images_per_s=round(len(x_tr) * target / seconds, 1),
                        n_params=int(model.count_params()), precision=policy,
                        batch_norm="fused" if fused else "keras", seed=seed, **shortened, **(record or {}))
    io.write_json(out / "fold.json", result.__dict__)  # last: marks the fold complete
    return result


def assemble_cv(run_dir: Path, spec: ModelSpec, params: dict[str, Any], y: np.ndarray, folds: np.ndarray,
                *, epochs: int, tta: int = 1) -> CVResult:
    """From every finished fold of `spec`: write the model's oof.npy, test.npy and cv.json.

    With `tta` > 1 the folds' TTA predictions (harness.train.tta.fold_predictions) are used, and the
    plain OOF accuracy is kept beside the TTA one. Only the driver calls this (workers write fold
    folders, never model-level files)."""
    from harness.train.tta import suffix

    k = int(folds.max()) + 1
    results = [FoldResult(**io.read_json(fold_dir(run_dir, spec.name, f) / "fold.json")) for f in range(k)]
    oof = plain = test = None
    for f in range(k):
        d = fold_dir(run_dir, spec.name, f)
        part = np.load(d / f"oof{suffix(tta)}.npy")
        if oof is None:  # as many columns as the competition has classes
            oof = np.zeros((len(y), part.shape[1]), dtype=np.float32)
            plain = np.zeros_like(oof)
        oof[folds == f] = part
        plain[folds == f] = np.load(d / "oof.npy")
        t = np.load(d / f"test{suffix(tta)}.npy").astype(np.float64)
        test = t if test is None else test + t
    test = (test / k).astype(np.float32)  # the fold ensemble: mean of the fold models' softmax
    if tta > 1:
        for r in results:
            r.accuracy = float((oof[folds == r.fold].argmax(1) == y[folds == r.fold]).mean())
    accs = np.array([r.accuracy for r in results])
    train_seconds = float(sum(r.seconds for r in results))
    cv = CVResult(model=spec.name, oof_accuracy=float((oof.argmax(1) == y).mean()),
                  fold_mean=float(accs.mean()), fold_std=float(accs.std(ddof=1)) if k > 1 else 0.0,
                  folds=results, train_seconds=round(train_seconds, 2),
                  train_ips=round(sum(r.n_train * r.epochs for r in results) / max(train_seconds, 1e-9), 1))
    md = model_dir(run_dir, spec.name)
    io.write_npy(md / "oof.npy", oof)
    io.write_npy(md / "test.npy", test)
    io.write_json(md / "cv.json", {
        "model": spec.name, "family": spec.family, "description": spec.description, "source": spec.source,
        "params": params, "epochs": epochs, "tta": tta, "oof_accuracy": cv.oof_accuracy,
        "oof_accuracy_plain": float((plain.argmax(1) == y).mean()), "fold_mean": cv.fold_mean,
        "fold_std": cv.fold_std, "train_seconds": cv.train_seconds, "train_ips": cv.train_ips,
        "n_params": results[0].n_params, "folds": [r.__dict__ for r in results]})
    return cv


def configure_threads() -> None:
    """Import TensorFlow quietly (see harness.core.tfquiet); call before anything touches Keras."""
    from harness.core.tfquiet import import_tensorflow

    import_tensorflow()


def enable_determinism() -> None:
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()

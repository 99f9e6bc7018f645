"""Speed audit of training: images/s and accuracy per model and setting, side by side.

    python scripts/speed_audit.py [--models ann,cnn_small,cnn_deep] [--rows 10000] [--epochs 3]
    python scripts/speed_audit.py --probe        # the reference probe alone (see below)

Each setting trains the model's own recipe in a fresh process (precision policies and thread
pools are process-wide) on the same stratified rows, validating on a fixed 4,000 others:
- `fp32`: the recipe as `harness run` trains it (one process, TensorFlow's default threads);
- `bf16`: Keras's `mixed_bfloat16` policy; `amp`: oneDNN's auto-mixed-precision graph rewrite;
- `batch x2`: twice the recipe's batch (and learning rate x sqrt 2); `spe 8`: steps_per_execution 8;
- `no aug`: the augmentation map switched off (its cost);
- `val/epoch`: Keras's validation pass after every epoch, on a quarter as many rows as it trains
  on (a 5-fold run's proportion): its cost;
- `2 procs x 1 thread`: two folds at once in two one-thread processes (total images/s; accuracy
  of the first); `2 procs x 1 thread bf16`: the same with the bf16 policy;
- `fused bn`: batch norm through TensorFlow's fused kernel while training (harness.train.batchnorm,
  what `harness run` now trains with); `bf16 fused bn`: both; `2 procs x 1 thread bf16 fused bn`: all three.
`fp32` and the probe keep Keras's own batch norm, so that they compare with earlier sessions.
images/s is training images over the median epoch time, first epoch (tracing) excluded.

The reference probe (`--probe`): the cnn_deep recipe, one epoch after a warm-up on fixed 8,192
rows, in this process: the images/s of the machine, to put beside any wall time measured in the
same sitting so that times compare across machines of this kind.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SETTINGS = ["fp32", "bf16", "amp", "batch x2", "spe 8", "no aug", "val/epoch", "2 procs x 1 thread"]
# Recipe probes (accuracy, not speed): `ema`, the optimizer's EMA of weights (momentum 0.999).


def _data(rows: int, seed: int = 0):
    from harness.data.dataset import load
    from harness.train.cv import stratified_subset

    ds = load(Path(os.environ.get("HARNESS_DATA_DIR", "data/digit-recognizer")))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds.y_train))
    val = order[:4000]
    pool = order[4000:]
    train = pool[stratified_subset(ds.y_train[pool], rows, seed)]
    return ds.x_train[train], ds.y_train[train], ds.x_train[val], ds.y_train[val]


def worker(cfg: dict) -> dict:
    """One setting, in this (fresh) process."""
    from harness.core.tfquiet import import_tensorflow

    import_tensorflow(cfg.get("threads"))
    import keras
    import tensorflow as tf

    if "bf16" in cfg["setting"]:  # also "2 procs x 1 thread bf16": both at once
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if cfg["setting"] == "amp":
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    from harness.registry import get_model
    from harness.train.cv import _train_dataset, compile_model

    spec = get_model(cfg["model"])
    params = spec.params()
    if cfg["setting"] == "batch x2":
        params["batch_size"] *= 2
        params["learning_rate"] *= 2 ** 0.5
    if cfg["setting"] == "no aug":
        params["augment"] = 0.0
    if cfg["setting"] == "ema":
        params["ema"] = 0.999
    x, y, xv, yv = _data(cfg["rows"])
    epochs = cfg["epochs"]
    keras.utils.set_random_seed(cfg.get("seed", 0))
    model = spec.build(params)
    if "fused bn" in cfg["setting"]:  # also "bf16 fused bn": both at once
        from harness.train.batchnorm import fused_for_training

        model = fused_for_training(model)
    steps = -(-len(x) // params["batch_size"])
    compile_model(model, params, steps * epochs, steps_per_execution=8 if cfg["setting"] == "spe 8" else 1)
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    val = None
    if cfg["setting"] == "val/epoch":
        n = len(x) // 4
        yq = keras.utils.to_categorical(yv[:n], 10) if params.get("label_smoothing") else yv[:n]
        val = (xv[:n].astype(np.float32), yq)
    model.fit(_train_dataset(x, y, params, 0, epochs), epochs=epochs, steps_per_epoch=steps, verbose=0, shuffle=False,
              callbacks=[Clock()], validation_data=val, validation_batch_size=1024)
    probs = np.concatenate([np.asarray(model(xv[i:i + 1000].astype(np.float32), training=False), np.float32)
                            for i in range(0, len(xv), 1000)])
    steady = times[1:] or times
    return {"model": cfg["model"], "setting": cfg["setting"], "ips": len(x) / statistics.median(steady),
            "val_accuracy": float((probs.argmax(1) == yv).mean()), "epoch_s": [round(t, 2) for t in times]}


def _spawn(cfg: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(cfg)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _collect(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        sys.exit(f"worker failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def probe(rows: int = 8192) -> float:
    """The reference probe: images/s of cnn_deep's recipe, one epoch after a warm-up epoch."""
    r = worker({"model": "cnn_deep", "setting": "fp32", "rows": rows, "epochs": 2})
    return r["ips"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--probe", action="store_true", help="print the reference probe's images/s and exit")
    ap.add_argument("--models", default="ann,cnn_small,cnn_deep")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated (accuracy probes: two)")
    ap.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.probe:
        print(json.dumps({"probe": "cnn_deep recipe, 1 epoch on 8,192 rows", "images_per_s": round(probe(), 1)}))
        return
    rows = []
    grid = [(m, seed, setting) for m in args.models.split(",") for seed in map(int, args.seeds.split(","))
            for setting in args.settings.split(",")]
    for model, seed, setting in grid:
        cfg = {"model": model, "setting": setting, "rows": args.rows, "epochs": args.epochs, "seed": seed}
        print(f"... {model} seed {seed}: {setting}", file=sys.stderr, flush=True)
        if setting.startswith("2 procs x 1 thread"):
            procs = [_spawn({**cfg, "threads": 1}) for _ in range(2)]
            pair = [_collect(p) for p in procs]
            r = {**pair[0], "ips": sum(p["ips"] for p in pair), "setting": setting}
        else:
            r = _collect(_spawn(cfg))
        rows.append({**r, "seed": seed})
    base = {(r["model"], r["seed"]): r for r in rows if r["setting"] == "fp32"}
    print(f"{'model':<10} {'seed':>4} {'setting':<20} {'img/s':>8} {'vs fp32':>8} {'val acc %':>9} {'errors':>6}")
    for r in rows:
        b = base.get((r["model"], r["seed"]))
        ratio = f"{r['ips'] / b['ips']:.2f}x" if b else "-"
        print(f"{r['model']:<10} {r['seed']:>4} {r['setting']:<20} {r['ips']:>8,.0f} {ratio:>8} "
              f"{100 * r['val_accuracy']:>9.2f} {round((1 - r['val_accuracy']) * 4000):>6}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Keras baselines of a benchmark: `Model.predict` and the `tf.function` of a model's fold ensemble,
timed interleaved with its ONNX graph in a child process (harness.bench.latency calls `keras_baselines`).

The child's TensorFlow must use exactly `threads` intra-op threads, which TensorFlow fixes at first
use; `harness run` has used it to train, hence a fresh process (`python -m harness.bench.keras_baselines`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.bench.timing import DEFAULT_BUDGET, INPUT_NAME, TimingBudget, make_session, stats, time_calls
from harness.core import io
from harness.core.runs import model_dir


def keras_baselines(run_dir: Path, model: str, images: np.ndarray, batches: list[int], threads: int = 1,
                    budget: TimingBudget = DEFAULT_BUDGET, timeout: float = 900) -> dict[str, Any]:
    """`Model.predict` and the `tf.function` of the fold ensemble, with model.onnx in ONNX Runtime,
    timed in a child process whose TensorFlow and ONNX Runtime both use `threads` intra-op threads.
    The three are timed in alternating blocks (`ROUNDS` rounds per batch size), so that a busy
    machine slows them alike and the speed-ups stay fair. Never raises: a failure becomes a `note`."""
    out: dict[str, Any] = {"threads": threads, "batches": batches}
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as td:
        x_path, out_path = Path(td) / "x.npy", Path(td) / "out.json"
        np.save(x_path, images[:max(batches)])
        job = {"run_dir": str(run_dir), "model": model, "x": str(x_path), "out": str(out_path),
               "batches": batches, "threads": threads, "seconds": budget.baseline_seconds,
               "min_b1": [budget.predict_min_b1, budget.function_min_b1]}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
               "CUDA_VISIBLE_DEVICES": "-1", "PYTHONWARNINGS": "ignore"}
        try:
            proc = subprocess.run([sys.executable, "-m", "harness.bench.keras_baselines", "--keras-baselines", json.dumps(job)],
                                  env=env, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0 or not out_path.is_file():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                out["note"] = f"baselines failed (exit {proc.returncode}): {tail[0]}"
                return out
            out.update(io.read_json(out_path))
        except subprocess.TimeoutExpired:
            out["note"] = f"baselines timed out after {timeout:.0f} s"
    return out


ROUNDS = {"b1": 10, "large": 5}  # alternating blocks per batch size (a large-batch call can take seconds)


def _keras_baselines_worker(job: dict[str, Any]) -> None:
    """Child process: fix TF's threads before anything runs, then time predict, the tf.function
    and ONNX Runtime in alternating blocks."""
    import tensorflow as tf

    threads = int(job["threads"])
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from harness.export.convert import ensemble_function, load_members, model_tta

    run_dir, model = Path(job["run_dir"]), job["model"]
    models, weights = load_members(run_dir, model)
    tta = model_tta(run_dir, model)
    for i, m in enumerate(models):  # fold models of one architecture share a name; a functional model refuses that
        m.name = f"member_{i}"
    if len(models) == 1:
        ensemble = models[0]
    elif weights is None:
        inp = keras.Input(models[0].input_shape[1:])
        ensemble = keras.Model(inp, keras.layers.Average()([m(inp) for m in models]))
    else:  # the run's weighted ensemble (harness.train.ensemble)
        inp = keras.Input(models[0].input_shape[1:])
        ensemble = keras.Model(inp, keras.layers.Add()([keras.layers.Rescaling(w)(m(inp))
                                                         for m, w in zip(models, weights)]))
    fn = ensemble_function(models, weights, tta)
    sess = make_session(model_dir(run_dir, model) / "model.onnx", threads)
    images = np.load(job["x"])
    predict_min, function_min = job.get("min_b1", (10, 100))
    result: dict[str, Any] = {"keras_predict": {}, "tf_function": {}, "onnxruntime": {},
                              "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                              "tensorflow": tf.__version__, "keras": keras.__version__,
                              "timing": f"alternating blocks: {ROUNDS['b1']} rounds at batch 1, "
                                        f"{ROUNDS['large']} at larger batches"}
    for b in job["batches"]:
        rounds = ROUNDS["b1" if b == 1 else "large"]
        per_round = float(job["seconds"]) / rounds
        xb = np.ascontiguousarray(images[:b])
        xf = xb.astype(np.float32)
        calls = {  # (callable, minimum calls in all, warm-up calls)
            "keras_predict": (lambda: ensemble.predict(xf, batch_size=b, verbose=0),
                              predict_min if b == 1 else 3, 3 if b == 1 else 1),
            "tf_function": (lambda: fn(xb)["probs"].numpy(), function_min if b == 1 else 3, 10 if b == 1 else 1),
            "onnxruntime": (lambda: sess.run(None, {INPUT_NAME: xb}), function_min if b == 1 else 3,
                            10 if b == 1 else 1),
        }
        samples: dict[str, list[np.ndarray]] = {k: [] for k in calls}
        for r in range(rounds):
            for name, (call, min_total, warm) in calls.items():
                # warm-up (first round only): predict() builds its loop, the tf.function traces
                samples[name].append(time_calls(call, iters=10 ** 6, seconds=per_round,
                                                min_iters=-(-min_total // rounds), warmup_iters=warm if r == 0 else 0,
                                                warmup_seconds=0))
        for name in calls:
            result[name][str(b)] = stats(np.concatenate(samples[name]), b)
    io.write_json(job["out"], result)


def speedups(rows: list[dict[str, Any]], base: dict[str, Any],
              interleaved: dict[str, Any] | None) -> dict[str, Any]:
    """The baselines' p50 over ONNX Runtime's p50, both timed interleaved in the baseline process
    (same threads), at batch 1 and the largest batch."""
    t = base.get("threads", 1)
    ort_stats = interleaved or {}
    out: dict[str, Any] = {"threads": t, "onnxruntime": ort_stats,
                           "measured": "ONNX Runtime timed interleaved with the baselines, same process"
                           if ort_stats else "ONNX Runtime from the latency table"}
    for key, name in (("vs_predict", "keras_predict"), ("vs_tf_function", "tf_function")):
        for b in base.get("batches", []):
            ref = (base.get(name) or {}).get(str(b)) or {}
            mine = ort_stats.get(str(b)) or next((r for r in rows if r["threads"] == t and r["batch"] == b), None)
            label = "b1" if b == 1 else "bmax"
            if ref.get("p50_ms") and mine and mine.get("p50_ms"):
                out[f"{key}_{label}"] = round(ref["p50_ms"] / mine["p50_ms"], 2)
                # the report reads these per baseline: p50 at batch 1 and the speed-up ratio
                if b == 1:
                    base[name].update(p50_ms_b1=ref["p50_ms"], p99_ms_b1=ref.get("p99_ms"),
                                      ratio=out[f"{key}_{label}"])
                else:
                    base[name].update(throughput_ips=ref.get("throughput_ips"))
    return out


if __name__ == "__main__":  # the child process of keras_baselines()
    if len(sys.argv) == 3 and sys.argv[1] == "--keras-baselines":
        _keras_baselines_worker(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m harness.bench.keras_baselines --keras-baselines JOB_JSON (internal)")

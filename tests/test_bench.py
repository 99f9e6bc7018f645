"""ONNX Runtime benchmark: timing helpers, the bench.json schema, Keras baselines, `harness bench`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from harness import bench  # noqa: E402
from harness.core.errors import RunError, UsageError  # noqa: E402

SUMMARY_KEYS = {"p50_ms_b1", "p99_ms_b1", "n_b1", "throughput_ips", "max_batch", "size_bytes",
                "flops_per_image", "efficiency_b1", "threads"}  # docs/ARCHITECTURE.md
TINY = bench.TimingBudget(b1_iters=700, seconds=0.02, min_iters=3, warmup_iters=3, warmup_seconds=0.0,
                    baseline_seconds=0.05, cold_repeats=1, predict_min_b1=3, function_min_b1=5)


def linear_model(path: Path) -> Path:
    """A contract-shaped model (pixels uint8 -> probs) with one 784x10 MatMul: 15,680 FLOPs/image."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Cast", ["pixels"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["xf", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"])]
    inits = [numpy_helper.from_array(np.array([-1, 784], np.int64), "shape"),
             numpy_helper.from_array(rng.normal(0, 1e-3, (784, 10)).astype(np.float32), "w")]
    graph = helper.make_graph(nodes, "linear",
                              [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", 28, 28, 1])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    return linear_model(tmp_path_factory.mktemp("bench") / "linear.onnx")


@pytest.fixture(scope="module")
def record(onnx_file) -> dict:
    return bench.bench_onnx(onnx_file, batches=(1, 8), threads=(1, 2), budget=TINY)


# ----------------------------------------------------------------------------- helpers

def test_time_calls_counts_and_limits():
    calls = []
    s = bench.time_calls(lambda: calls.append(1), iters=50, warmup_iters=5, warmup_seconds=60)
    assert len(s) == 50 and (s >= 0).all() and len(calls) == 55
    calls.clear()
    bench.time_calls(lambda: calls.append(1), iters=1, warmup_iters=5, warmup_seconds=0)
    assert len(calls) == 2  # a warm-up past its time still makes one call
    calls.clear()
    bench.time_calls(lambda: calls.append(1), iters=3, warmup_iters=0)
    assert len(calls) == 3
    s = bench.time_calls(lambda: None, iters=10 ** 6, seconds=0.0, min_iters=7, warmup_iters=1)
    assert len(s) == 7  # the time limit never cuts below min_iters


def test_stats_reports_only_supported_percentiles():
    st = bench.stats(np.full(100, 0.002), batch=4)
    assert st["n"] == 100 and st["p50_ms"] == pytest.approx(2.0) and st["p90_ms"] == pytest.approx(2.0)
    assert st["p99_ms"] is None  # p99 needs n >= 662
    assert st["throughput_ips"] == pytest.approx(2000.0)
    assert bench.stats(np.full(700, 0.001), batch=1)["p99_ms"] == pytest.approx(1.0)
    assert bench.stats(np.full(2, 0.001), batch=1)["p50_ms"] is None


def test_trivial_model_has_the_contract_interface():
    sess = bench.make_session(bench.trivial_model(), 1)
    out = sess.run(None, {"pixels": np.zeros((3, 28, 28, 1), np.uint8)})[0]
    assert out.shape == (3, 10) and out.dtype == np.float32


def test_peak_is_measurable():
    assert bench.measure_peak_gflops(1, n=128, repeats=2) > 0.1


def test_roofline_takes_the_larger_term():
    # 1 GFLOP at 100 GFLOP/s = 10 ms; 80 MB at (40 MB per 2 ms - 1 ms of overhead) = 40 GB/s = 2 ms
    r = bench.roofline(0.001, 1e9, 100e9, 80e6, 0.002, 40e6)
    assert r["bound"] == "compute" and r["floor_s"] == pytest.approx(0.011)
    assert r["bandwidth_gbs"] == pytest.approx(40.0) and r["memory_s"] == pytest.approx(0.002)
    r = bench.roofline(0.001, 1e6, 100e9, 800e6, 0.002, 40e6)  # 20 ms of bytes against 0.01 ms of FLOPs
    assert r["bound"] == "memory" and r["floor_s"] == pytest.approx(0.021)
    # a stream no slower than an empty call: no memory term, never a division by zero
    r = bench.roofline(0.001, 1e6, 100e9, 1e3, 0.0009, 1e3)
    assert r["memory_s"] == 0 and r["bandwidth_gbs"] is None and r["bound"] == "compute"


def test_stream_call_reads_the_bytes_asked_up_to_its_cap():
    call, nbytes = bench.stream_call(3 * 2 ** 20)
    assert nbytes == 3 * 2 ** 20 and call()[0].shape == (1, 3 * 2 ** 20 // (4 * bench.STREAM_ROWS))
    assert bench.stream_call(10)[1] == 4 * bench.STREAM_ROWS  # at least one column
    assert bench.STREAM_MAX_BYTES == 256 * 2 ** 20  # what the cap is (a 256 MiB matrix is not built here)


# ----------------------------------------------------------------------------- bench.json schema

def test_bench_record_schema(record, onnx_file):
    assert json.loads(json.dumps(record)) == record  # plain JSON: no numpy types
    assert SUMMARY_KEYS <= set(record["summary"])
    s = record["summary"]
    assert s["n_b1"] >= 662 and s["p50_ms_b1"] > 0 and s["p99_ms_b1"] >= s["p50_ms_b1"]
    assert s["max_batch"] == 8 and s["threads"] == 1 and s["throughput_threads"] in (1, 2)
    assert s["throughput_ips"] == max(r["throughput_ips"] for r in record["latency"] if r["batch"] == 8)
    assert s["size_bytes"] == onnx_file.stat().st_size
    assert s["flops_per_image"] == record["flops_per_image"] == 2 * 784 * 10
    assert 0 < s["efficiency_b1"] and s["floor_ms_b1"] > 0
    assert {(r["threads"], r["batch"]) for r in record["latency"]} == {(1, 1), (1, 8), (2, 1), (2, 8)}
    peak = record["peak"]["gflops_per_core"]
    # bytes per call: the 784x10 float32 weights and the int64 shape (31,376 B), and per image the
    # uint8 input (784), its float32 cast and reshape (2 x 3,136) and the two [1, 10] outputs (80)
    assert record["param_bytes"] == 31376 and record["activation_bytes_per_image"] == 7136
    for r in record["latency"]:
        assert {"n", "p50_ms", "p90_ms", "p99_ms", "throughput_ips", "floor_ms", "efficiency", "overhead_ms",
                "bound", "compute_ms", "memory_ms", "bytes", "bandwidth_gbs", "flop_floor_ms", "efficiency_flops",
                "gflops"} <= set(r)
        assert (r["batch"] == 1) == ("samples_ms" in r)
        assert r["bytes"] == 31376 + r["batch"] * 7136
        assert r["compute_ms"] == pytest.approx(r["batch"] * 15680 / (peak * 1e9 * min(r["threads"], os.cpu_count()))
                                                * 1e3, rel=1e-3, abs=1e-4)
        # the roofline: overhead + the larger of the compute and memory terms, never below the FLOP floor
        assert r["floor_ms"] == pytest.approx(r["overhead_ms"] + max(r["compute_ms"], r["memory_ms"]), abs=2e-4)
        # (both terms are rounded to 0.1 us: a near tie may round equal)
        assert r["memory_ms"] >= r["compute_ms"] if r["bound"] == "memory" else r["compute_ms"] >= r["memory_ms"]
        assert r["floor_ms"] >= r["flop_floor_ms"] - 1e-4
        assert r["flop_floor_ms"] == pytest.approx(r["overhead_ms"] + r["compute_ms"], abs=2e-4)
        assert r["efficiency"] == pytest.approx(r["floor_ms"] / r["p50_ms"], rel=0.02, abs=2e-3)
        assert r["bandwidth_gbs"] is None or r["bandwidth_gbs"] > 0
    assert record["cold_start"]["total_ms"] >= record["cold_start"]["session_ms"] > 0
    # the floor's peak is the MatMul measured in the same call, on the same machine
    assert peak == record["peak"]["matmul_gflops_1_thread"] > 0 and "measured in this run" in record["peak"]["source"]
    assert record["weight_bytes"] == 784 * 10 * 4 and "measured in this run" in record["bandwidth"]["source"]
    w1 = next(r for r in record["latency"] if (r["threads"], r["batch"]) == (1, 1))
    assert (s["floor_ms_b1"], s["bound_b1"], s["efficiency_flops_b1"]) == \
        (w1["floor_ms"], w1["bound"], w1["efficiency_flops"])
    assert record["provider"] == "CPUExecutionProvider" and record["graph_optimization"] == "ORT_ENABLE_ALL"


def test_peak_override_and_measure(onnx_file):
    r = bench.bench_onnx(onnx_file, batches=(1,), threads=(1,), budget=TINY, peak_gflops=10)
    assert r["peak"]["gflops_per_core"] == 10 and "given" in r["peak"]["source"]
    r = bench.bench_onnx(onnx_file, batches=(1,), threads=(1,), budget=TINY, peak_gflops="measure")
    assert r["peak"]["gflops_per_core"] == r["peak"]["matmul_gflops_1_thread"]
    with pytest.raises(UsageError):
        bench.bench_onnx(onnx_file, batches=(1,), threads=(1,), budget=TINY, peak_gflops="fast")
    with pytest.raises(UsageError):
        bench.bench_onnx(onnx_file, batches=(0,), threads=(1,), budget=TINY)


# ----------------------------------------------------------------------------- a run's model

@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """A run with a 2-fold tiny Keras model and its exported ONNX ensemble. Both folds carry the same
    model name, as fold models trained in separate processes do (the Keras baselines once failed on
    that: "The name functional_1 is used 5 times in the model")."""
    import keras
    from keras import layers

    from harness.export.convert import export_model

    run_dir = tmp_path_factory.mktemp("runs") / "20260101-000000"
    (run_dir / "mlp" / "fold_0").mkdir(parents=True)
    (run_dir / "mlp" / "fold_1").mkdir(parents=True)
    (run_dir / "manifest.json").write_text("{}")
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    x = layers.Flatten()(layers.Rescaling(1 / 255)(inp))
    m = keras.Model(inp, layers.Dense(10, activation="softmax")(layers.Dense(16, activation="relu")(x)))
    m.save(run_dir / "mlp" / "fold_0" / "model.keras")
    m.save(run_dir / "mlp" / "fold_1" / "model.keras")
    x = np.random.default_rng(0).integers(0, 256, (1000, 28, 28, 1), dtype=np.uint8)
    export_model(run_dir, "mlp", x, {})
    return run_dir


def test_bench_model_writes_bench_json_with_baselines(bench_run):
    rec = bench.bench_model(bench_run, "mlp", batches=(1, 16), threads=(1,), budget=TINY)
    on_disk = json.loads((bench_run / "mlp" / "bench.json").read_text())
    assert on_disk["summary"] == rec["summary"] and SUMMARY_KEYS <= set(rec["summary"])
    base = rec["baselines"]
    assert "note" not in base, base.get("note")
    assert base["threads"] == 1 and base["tf_intra_op_threads"] == 1 and base["batches"] == [1, 16]
    assert "onnxruntime" not in base  # the report lists every dict in `baselines` as a baseline
    sp = rec["speedup"]  # against ONNX Runtime timed interleaved with the baselines
    for name, st in (("keras_predict", base["keras_predict"]), ("tf_function", base["tf_function"]),
                     ("onnxruntime", sp["onnxruntime"])):
        assert st["1"]["n"] >= 3 and st["1"]["p50_ms"] > 0 and st["16"]["p50_ms"] > 0, name
    for name in ("keras_predict", "tf_function"):
        assert base[name]["ratio"] > 0 and base[name]["p50_ms_b1"] == base[name]["1"]["p50_ms"]
    assert sp["vs_predict_b1"] == pytest.approx(base["keras_predict"]["1"]["p50_ms"]
                                                / sp["onnxruntime"]["1"]["p50_ms"], rel=0.02)
    assert {"vs_tf_function_b1", "vs_predict_bmax", "vs_tf_function_bmax"} <= set(sp)
    assert rec["summary"]["speedup_vs_predict_b1"] == sp["vs_predict_b1"]
    assert sp["vs_predict_b1"] > 1  # Model.predict builds a dataset per call: ONNX Runtime always wins


def test_bench_model_needs_an_export(tmp_path):
    with pytest.raises(RunError, match="export it first"):
        bench.bench_model(tmp_path, "ghost", baselines=False, budget=TINY)


# ----------------------------------------------------------------------------- CLI

def test_cli_bench_files_json(onnx_file, capsys):
    from harness.cli import main

    assert main(["bench", str(onnx_file), "--batch", "1,4", "--threads", "1", "--iters", "700",
                 "--seconds", "0.01", "--json"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["model"] == "linear" and rec["summary"]["max_batch"] == 4 and rec["summary"]["n_b1"] == 700


def test_cli_bench_run_text_and_leaderboard_inputs(bench_run, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setenv("HARNESS_RUNS_DIR", str(bench_run.parent))
    assert main(["bench", "--run", bench_run.name, "--batch", "1", "--threads", "1", "--no-baselines",
                 "--iters", "700", "--peak-gflops", "50"]) == 0
    out = capsys.readouterr().out
    assert "mlp" in out and "p50 ms" in out and "cold start" in out and "peak 50 GFLOP/s" in out
    summary = json.loads((bench_run / "mlp" / "bench.json").read_text())["summary"]
    assert summary["max_batch"] == 1 and summary["n_b1"] == 700


@pytest.mark.parametrize("argv, code, message", [
    (["bench", "--batch", "0"], 2, "positive"),
    (["bench", "--threads", "a"], 2, "comma-separated"),
    (["bench", "--peak-gflops", "fast"], 2, "--peak-gflops"),
    (["bench", "missing.onnx"], 2, "no such file"),
    (["bench", "--run", "nope"], 5, "not found"),
])
def test_cli_bench_errors(argv, code, message, tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setenv("HARNESS_RUNS_DIR", str(tmp_path))
    assert main(argv) == code
    assert message in capsys.readouterr().err


def test_cli_bench_run_without_exports(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "manifest.json").write_text("{}")
    monkeypatch.setenv("HARNESS_RUNS_DIR", str(tmp_path))
    assert main(["bench", "--run", "r1"]) == 5
    assert "no exported model" in capsys.readouterr().err

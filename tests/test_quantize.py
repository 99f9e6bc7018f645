"""Static INT8 variants (harness.export.quantize): the graph edits are exact, the shipped graph is the
per-fold graphs merged, the OOF gate marks a lossy variant, an unquantisable model is marked and
the run goes on, and a latency budget chooses among FP32, INT8 and the ensemble."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from harness.core import io
from harness.core.errors import RunError  # noqa: E402
from harness.export import quantize
from harness.results import leaderboard  # noqa: E402


def _tiny_conv(seed: int):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1))
    x = layers.Rescaling(1 / 255)(inp)
    x = layers.Conv2D(4, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x))


def _fp32(seed: int):
    from harness.export.convert import convert, simplify

    return simplify(convert([_tiny_conv(seed)]))[0]


def _run(proto, x):
    from harness.bench import make_session

    return make_session(proto.SerializeToString()).run(None, {"pixels": x})[0]


def _digits(n: int = 256, seed: int = 0) -> np.ndarray:
    """Digit-like images: blank with a bright stroke, so the max pixel is 255 as in MNIST."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28, 1), np.uint8)
    for i in range(n):
        r, c = rng.integers(4, 20, size=2)
        x[i, r:r + 8, c:c + 3, 0] = rng.integers(128, 256, size=(8, 3))
        x[i, r, c, 0] = 255
    return x


def test_int8_graph_takes_the_pixels_as_they_are_and_tracks_fp32():
    fp32 = _fp32(1)
    x = _digits()
    q = quantize.quantize_graph(fp32, x[:128])
    ops = [n.op_type for n in q.graph.node]
    # Quantize(Cast(pixels), scale 1) is the pixels: neither node is left on the input
    assert not any(n.op_type in ("Cast", "QuantizeLinear") and "pixels" in n.input for n in q.graph.node)
    assert "Softmax" in ops and any(o == "DequantizeLinear" for o in ops)  # the softmax stays FP32
    assert q.graph.input[0].type.tensor_type.elem_type == 2  # uint8
    p32, p8 = _run(fp32, x), _run(q, x)
    assert p8.shape == p32.shape and np.allclose(p8.sum(1), 1, atol=1e-5)
    assert np.abs(p8 - p32).max() < 0.05
    assert (p8.argmax(1) == p32.argmax(1)).mean() >= 0.95


def test_cast_moves_after_shape_ops_exactly():
    fp32 = _fp32(2)
    moved = quantize._cast_after_shape_ops(fp32, "pixels")
    first = next(n for n in moved.graph.node if "pixels" in n.input)
    assert first.op_type in quantize.SHAPE_OPS  # the reshape/transpose now works on the uint8 pixels
    x = _digits(64)
    assert np.array_equal(_run(fp32, x), _run(moved, x))


def test_merged_graph_is_the_weighted_mean_of_its_parts():
    graphs = [_fp32(3), _fp32(4), _fp32(5)]
    weights = [0.2, 0.3, 0.5]
    x = _digits(64)
    merged = quantize.merge(graphs, weights)
    import onnx

    onnx.checker.check_model(merged)
    expected = sum(w * _run(g, x).astype(np.float64) for g, w in zip(graphs, weights))
    np.testing.assert_allclose(_run(merged, x), expected, atol=1e-6)


def test_names_and_paths_of_a_variant(tmp_path):
    assert quantize.variant("cnn_deep") == "cnn_deep@int8" and quantize.base_of("cnn_deep@int8") == "cnn_deep"
    assert quantize.onnx_path(tmp_path, "m@int8") == tmp_path / "m" / "model.int8.onnx"
    assert quantize.onnx_path(tmp_path, "m") == tmp_path / "m" / "model.onnx"
    assert quantize.artefact(tmp_path, "m@int8", "bench") == tmp_path / "m" / "bench.int8.json"
    assert quantize.artefact(tmp_path, "m", "score") == tmp_path / "m" / "score.json"


# ----------------------------------------------------------------------------- a real run

@pytest.fixture(scope="module")
def int8_run(tmp_path_factory, replica_dir):
    """cnn_tiny and cnn_deep_tiny, 2 folds on 1,200 replica rows, with the INT8 stage and the ensemble."""
    from harness.core.config import Settings
    from harness.run.pipeline import RunOptions, run

    root = tmp_path_factory.mktemp("int8")
    settings = Settings(data_dir=replica_dir, runs_dir=root / "runs", submissions_dir=root / "submissions",
                        reports_dir=root / "reports", cache_dir=root / "cache")
    # quick: one-thread benchmarks without the Keras baselines (a TensorFlow child process per model,
    # most of this fixture's time on a slow CPU); INT8 asked for explicitly, as `--quick --int8` does
    opts = RunOptions(models=["cnn_tiny", "cnn_deep_tiny"], folds=2, limit=1200, epochs=1, jobs=1, report=False,
                      int8=True, bench=True, quick=True)
    from harness import bench

    small = bench.TimingBudget(b1_iters=662, seconds=0.05, min_iters=2, warmup_iters=2, warmup_seconds=0.01,
                         baseline_seconds=0.1, cold_repeats=1)
    old = bench.QUICK_BUDGET, bench.DEFAULT_BUDGET
    bench.QUICK_BUDGET = bench.DEFAULT_BUDGET = small
    try:
        results = run(opts, settings)
    finally:
        bench.QUICK_BUDGET, bench.DEFAULT_BUDGET = old
    return Path(results["run_dir"]), settings, opts, results


@pytest.mark.integration  # a long end-to-end run: CI's second step (README, Tests)
def test_run_has_an_int8_row_per_exported_model(int8_run):
    run_dir, _, _, results = int8_run
    rows = {r["model"]: r for r in results["rows"]}
    assert {"cnn_tiny@int8", "cnn_deep_tiny@int8"} <= set(rows)
    for base in ("cnn_tiny", "cnn_deep_tiny"):
        doc = io.read_json(run_dir / base / "int8.json")
        assert doc["model"] == base + "@int8" and doc["graphs"] == 2
        assert (run_dir / base / "model.int8.onnx").is_file() and (run_dir / base / "bench.int8.json").is_file()
        # OOF of the INT8 graphs on rows they were neither trained nor calibrated on
        y = np.load(run_dir / base / "int8" / "oof.npy").argmax(1)
        assert len(y) == len(np.load(run_dir / "train_index.npy")) and 0 <= doc["int8_oof_accuracy"] <= 1
        assert doc["fp32_oof_accuracy"] == pytest.approx(rows[base]["cv_accuracy"])
        assert doc["n_test"] == 28000 and 0 <= doc["test_agreement"] <= 1
        assert doc["ok"] == (doc["drop_points"] <= 100 * quantize.MAX_OOF_DROP + 1e-9)
        row = rows[base + "@int8"]
        assert row["precision"] == "int8" and row["cv_accuracy"] == doc["int8_oof_accuracy"]
        assert row["speedup_vs_fp32"] and row["speedup_vs_fp32"] > 0 and row["p50_ms_b1"] > 0
        bench = io.read_json(run_dir / base / "bench.int8.json")
        assert bench["precision"] == "int8" and "MatMulInteger" in bench["peak"]["source"]
        assert "baselines" not in bench and set(bench["vs_fp32"]["batches"]) == {"1", "1024"}
        assert row["private_score"] is not None  # scored from the INT8 graph's own test predictions
    # the shipped INT8 file is the fold graphs merged: the same predictions as their mean
    from harness.export.convert import predict_onnx

    x = np.load(run_dir / "train_index.npy")[:50]
    from harness.data import dataset as data

    ds = data.load(int8_run[1].data_dir)
    xs = ds.x_train[x]
    folds = [predict_onnx(run_dir / "cnn_tiny" / "int8" / f"fold_{k}.onnx", xs) for k in range(2)]
    np.testing.assert_allclose(predict_onnx(run_dir / "cnn_tiny" / "model.int8.onnx", xs),
                               (folds[0] + folds[1]) / 2, atol=1e-5)


@pytest.mark.integration  # a long end-to-end run: CI's second step (README, Tests)
def test_ensemble_int8_is_built_from_its_members_int8_folds(int8_run):
    run_dir, _, _, results = int8_run
    if not (run_dir / "ensemble" / "ensemble.json").is_file():
        pytest.skip("the selection kept one model alone on these rows")
    doc = io.read_json(run_dir / "ensemble" / "int8.json")
    members = io.read_json(run_dir / "ensemble" / "ensemble.json")["members"]
    assert doc["graphs"] == 2 * len(members)
    mix = sum(w * np.load(run_dir / m / "int8" / "oof.npy") for m, w in members.items())
    np.testing.assert_allclose(np.load(run_dir / "ensemble" / "int8" / "oof.npy"), mix, atol=1e-6)


@pytest.mark.integration  # a long end-to-end run: CI's second step (README, Tests)
def test_a_lossy_or_failed_variant_is_marked_and_never_chosen(int8_run, monkeypatch):
    run_dir, settings, _, _ = int8_run
    from harness.data import dataset as data

    ds = data.load(settings.data_dir)
    idx, folds = np.load(run_dir / "train_index.npy"), np.load(run_dir / "folds.npy")
    x, y = ds.x_train[idx], ds.y_train[idx]
    doc = quantize.quantize_model(run_dir, "cnn_tiny", x, y, folds, ds.x_test, max_drop=-1.0)  # any result "loses"
    assert doc["ok"] is False and doc["status"].startswith("int8 loses")

    def broken(*_a, **_k):
        raise NotImplementedError("operator Foo is not supported by the quantiser")

    monkeypatch.setattr(quantize, "quantize_graph", broken)
    quantize.remove(run_dir, "cnn_deep_tiny")
    doc2 = quantize.quantize_model(run_dir, "cnn_deep_tiny", x, y, folds, ds.x_test)
    assert doc2["ok"] is False and "operator Foo is not supported" in doc2["status"]
    assert not (run_dir / "cnn_deep_tiny" / "model.int8.onnx").exists()
    results = leaderboard.build_results(run_dir, budget=None)
    rows = {r["model"]: r for r in results["rows"]}
    assert rows["cnn_tiny@int8"]["status"].startswith("int8 loses")
    assert rows["cnn_deep_tiny@int8"]["status"].startswith("int8 failed: NotImplementedError")
    assert not rows["cnn_tiny@int8"]["best"] and not rows["cnn_deep_tiny@int8"]["best"]
    # the best is a row that passed its own gate (the ensemble's INT8 row, built before from its
    # members' INT8 folds, has one of its own and may be it: it is when the selection kept two)
    assert results["best"] not in ("cnn_tiny@int8", "cnn_deep_tiny@int8") and rows[results["best"]]["status"] == "ok"


def test_latency_budget_chooses_the_most_accurate_model_that_fits(tmp_path):
    def row(name, acc, p50s, status="ok"):
        r = {k: None for k in leaderboard.ROW_KEYS}
        r.update(model=name, cv_accuracy=acc, p50_ms_b1=p50s.get(1), status=status, _latency=p50s)
        return r

    rows = [row("big", 0.995, {1: 1.0, 64: 20.0}), row("big@int8", 0.9949, {1: 0.4, 64: 8.0}),
            row("small", 0.99, {1: 0.1, 64: 2.0}), row("lossy@int8", 0.999, {1: 0.01}, status="int8 loses 0.2")]
    ranked = leaderboard.rank([dict(r) for r in rows], leaderboard.LatencyBudget(0.5, 1))
    best = [r["model"] for r in ranked if r["best"]]
    assert best == ["big@int8"]
    assert {r["model"]: r["fits"] for r in ranked} == {"big": False, "big@int8": True, "small": True,
                                                        "lossy@int8": True}
    ranked = leaderboard.rank([dict(r) for r in rows], leaderboard.LatencyBudget(5.0, 64))
    assert [r["model"] for r in ranked if r["best"]] == ["small"]
    assert next(r for r in ranked if r["model"] == "lossy@int8")["fits"] is None  # never timed at 64
    ranked = leaderboard.rank([dict(r) for r in rows])  # no budget: by accuracy alone
    assert [r["model"] for r in ranked if r["best"]] == ["big"]
    ranked = leaderboard.rank([dict(r) for r in rows], leaderboard.LatencyBudget(0.05, 1))
    assert not any(r["best"] for r in ranked)
    msg = leaderboard.no_fit_message({"rows": ranked}, leaderboard.LatencyBudget(0.05, 1))
    assert "fastest is small at 0.100 ms" in msg and "0.05" in msg


@pytest.mark.integration  # a long end-to-end run: CI's second step (README, Tests)
def test_budget_in_a_run_chooses_resumes_and_fails_clearly(int8_run):
    from harness.run.pipeline import run

    run_dir, settings, opts, _ = int8_run
    rows = io.read_json(run_dir / "results.json")["rows"]
    timed = [r for r in rows if r["status"] == "ok" and r["p50_ms_b1"]]
    fastest = min(timed, key=lambda r: r["p50_ms_b1"])
    from dataclasses import replace

    with pytest.raises(RunError, match=f"fastest is {fastest['model'].replace('+', '[+]')} at"):
        run(replace(opts, resume=run_dir.name, max_latency_ms=fastest["p50_ms_b1"] / 100), settings)
    generous = fastest["p50_ms_b1"] * 1.5
    results = run(replace(opts, resume=run_dir.name, max_latency_ms=generous), settings)
    best = next(r for r in results["rows"] if r["best"])
    fits = [r for r in results["rows"] if r["fits"] and r["status"] == "ok"]
    assert best["p50_ms_budget"] <= generous and best["cv_accuracy"] == max(r["cv_accuracy"] for r in fits)
    assert results["budget"] == {"max_latency_ms": generous, "batch": 1, "threads": 1}
    assert results["submission"]["model"] == best["model"]
    text = leaderboard.render(results)
    assert "fits" in text and f"p50 <= {generous:g} ms at batch 1" in text


@pytest.mark.integration  # a long end-to-end run: CI's second step (README, Tests)
def test_report_shows_int8_rows_and_their_speedup(int8_run, tmp_path):
    from harness.report import render_report

    run_dir, settings, _, _ = int8_run
    out = render_report(run_dir, tmp_path / "report.html", settings.data_dir)
    html = out.read_text() if hasattr(out, "read_text") else (tmp_path / "report.html").read_text()
    assert "cnn_tiny@int8" in html and "INT8 over FP32 (interleaved, 1 thread)" in html
    assert "Not benchmarked: cnn_tiny@int8" not in html and "GOPS (INT8) per core" in html

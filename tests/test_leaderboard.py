"""Ranking, best-model choice, Pareto front and table rendering."""

from __future__ import annotations

import json

import pytest

from harness.core import io
from harness.core.errors import RunError
from harness.results import leaderboard


def _row(model, acc, p50, status="ok"):
    row = {k: None for k in leaderboard.ROW_KEYS}
    row.update(model=model, cv_accuracy=acc, p50_ms_b1=p50, status=status)
    return row


def test_rank_by_accuracy_ties_by_latency_and_best_skips_failed_exports():
    rows = leaderboard.rank([
        _row("slow", 0.99, 2.0), _row("fast", 0.99, 0.5), _row("broken", 0.995, 0.1, "export failed: parity"),
        _row("weak", 0.95, 0.05)])
    assert [r["model"] for r in rows] == ["broken", "fast", "slow", "weak"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert [r["model"] for r in rows if r["best"]] == ["fast"]  # never a model whose export failed


def test_pareto_front():
    rows = leaderboard.rank([_row("a", 0.99, 1.0), _row("b", 0.98, 0.1), _row("c", 0.97, 0.5),
                             _row("d", 0.99, 2.0), _row("e", 0.96, None)])
    front = {r["model"] for r in rows if r["pareto"]}
    assert front == {"a", "b"}  # c is beaten by b on both; d by a; e has no latency


def _fake_run(tmp_path):
    run = tmp_path / "20260101-000000"
    io.write_json(run / "manifest.json", {"run_id": run.name})
    io.write_json(run / "m1" / "cv.json", {"family": "cnn", "oof_accuracy": 0.991, "fold_mean": 0.9911,
                                            "fold_std": 0.0012, "n_params": 12345, "train_seconds": 61.0,
                                            "train_ips": 5000.0})
    io.write_json(run / "m1" / "export.json", {"ok": True})
    io.write_json(run / "m1" / "bench.json", {"summary": {"p50_ms_b1": 0.072, "p99_ms_b1": 0.2,
                                                           "throughput_ips": 30000.0, "size_bytes": 50000,
                                                           "efficiency_b1": 0.7}})
    io.write_json(run / "m2" / "cv.json", {"family": "ann", "oof_accuracy": 0.98})
    io.write_json(run / "m2" / "export.json", {"ok": False, "error": "parity gate"})
    return run


def test_build_results_and_render_formats(tmp_path):
    import numpy as np

    run = _fake_run(tmp_path)
    results = leaderboard.build_results(run, np.array([1, 1, 1, 2]))
    assert results["best"] == "m1" and results["baseline"]["cv_accuracy"] == 0.75
    assert json.loads((run / "results.json").read_text())["rows"][1]["status"] == "export failed: parity gate"

    text = leaderboard.render(results, "text")
    lines = text.splitlines()
    assert lines[2].split()[:3] == ["1", "*", "m1"] and "^" in lines[2]
    assert " - " in lines[3]  # missing values are '-'
    assert "baseline (majority class, 1): 75.00 %" in text  # Digit Recognizer: class names are the digits
    assert leaderboard.render(results, "md").startswith("| # | model |")
    csv_text = leaderboard.render(results, "csv")
    assert csv_text.splitlines()[0].startswith("rank,model,") and ",m2," in csv_text
    assert json.loads(leaderboard.render(results, "json"))["best"] == "m1"


def test_empty_run_is_an_error(tmp_path):
    run = tmp_path / "r"
    io.write_json(run / "manifest.json", {})
    with pytest.raises(RunError, match="no trained model"):
        leaderboard.build_results(run)

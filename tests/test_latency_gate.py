"""The latency gate's rules (tests/benchmarks/conftest.py: Gate), on made-up figures: which saved
value a figure is judged against, and what happens where the baseline has not seen a machine."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location("bench_conftest", Path(__file__).parent / "benchmarks" / "conftest.py")
bench_conftest = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("bench_conftest", bench_conftest)  # its dataclasses look their module up
_SPEC.loader.exec_module(bench_conftest)


def _gate(tmp_path, monkeypatch, *, machine: str = "AuthenticAMD/25/1", cls: str = "avx2",
          update: str = "") -> object:
    import harness.core.device

    doc = {"tolerance": {"roofline_efficiency": 0.35, "default": 0.25},
           "machine_scoped": ["int8_speedup"],
           "classes": {"avx2": {"versions": bench_conftest.versions(),
                                "figures": {"shipped/ann/b256/roofline_efficiency": 1.0},
                                "machines": {"AuthenticAMD/23/?": {"figures": {"shipped/ann/b1/int8_speedup": 2.8}}}}}}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setattr(harness.core.device, "cpu_class", lambda flags=None: cls)
    monkeypatch.setattr(harness.core.device, "machine_key", lambda info=None: machine)
    monkeypatch.setenv("HARNESS_BENCH_UPDATE", update)
    monkeypatch.delenv("HARNESS_BENCH_TOLERANCE", raising=False)
    return bench_conftest.Gate(path)


def test_class_figures_hold_for_every_machine_of_the_class(tmp_path, monkeypatch):
    gate = _gate(tmp_path, monkeypatch)
    gate.check("shipped/ann/b256/roofline_efficiency", 0.7, higher_is_worse=False, hard_limit=0.04)
    with pytest.raises(pytest.fail.Exception, match="latency regression.*baseline 1.000.*>= 0.650"):
        gate.check("shipped/ann/b256/roofline_efficiency", 0.6, higher_is_worse=False, hard_limit=0.04)


def test_machine_scoped_figures_are_judged_on_their_own_cpu_model(tmp_path, monkeypatch):
    # a Zen 2 (family 23): the saved '?' model matches any model of that vendor and family
    gate = _gate(tmp_path, monkeypatch, machine="AuthenticAMD/23/49")
    assert gate.saved_value("shipped/ann/b1/int8_speedup") == 2.8
    with pytest.raises(pytest.fail.Exception, match="latency regression"):
        gate.check("shipped/ann/b1/int8_speedup", 1.5, higher_is_worse=False, hard_limit=0.5)


def test_what_the_baseline_has_not_seen_gets_its_hard_limit_and_a_line(tmp_path, monkeypatch):
    # a Zen 3 (family 25) in the same class: its INT8 ratios are its own, and none are saved
    gate = _gate(tmp_path, monkeypatch)
    gate.check("shipped/ann/b1/int8_speedup", 1.5, higher_is_worse=False, hard_limit=0.5)
    gate.check("shipped/ann/b1/roofline_efficiency", 0.9, higher_is_worse=False, hard_limit=0.04)
    assert gate.unchecked == {"shipped/ann/b1/int8_speedup": "not measured on this CPU model (AuthenticAMD/25/1)",
                              "shipped/ann/b1/roofline_efficiency": "not in the avx2 entry"}
    with pytest.raises(pytest.fail.Exception, match="hard limit"):
        gate.check("shipped/ann/b1/int8_speedup", 0.4, higher_is_worse=False, hard_limit=0.5)
    # the regression check that the gate's own test relies on: a verdict without a failure
    assert gate.verdict("shipped/ann/b256/roofline_efficiency", 0.5, higher_is_worse=False)
    assert gate.verdict("shipped/ann/b256/roofline_efficiency", 0.9, higher_is_worse=False) is None


def test_merge_keeps_class_and_machine_figures_apart(tmp_path, monkeypatch):
    gate = _gate(tmp_path, monkeypatch, machine="AuthenticAMD/23/49", update="merge")
    gate.check("shipped/ann/b256/roofline_efficiency", 0.9, higher_is_worse=False, hard_limit=0.04)
    gate.check("shipped/ann/b1/int8_speedup", 3.5, higher_is_worse=False, hard_limit=0.5)
    gate.write()
    entry = json.loads(gate.path.read_text())["classes"]["avx2"]
    # merge keeps the less demanding value of each: the lower efficiency, the lower speed-up
    assert entry["figures"] == {"shipped/ann/b256/roofline_efficiency": 0.9}
    assert list(entry["machines"]) == ["AuthenticAMD/23/49"]  # the '?' entry is now this model's
    assert entry["machines"]["AuthenticAMD/23/49"]["figures"] == {"shipped/ann/b1/int8_speedup": 2.8}


def test_versions_move_the_baseline_only_by_major_minor_of_the_engines():
    saved = {"python": "3.11", "onnxruntime": "1.32.0", "onnx": "1.23.2", "keras": "3.15.1", "numpy": "2.4.6",
             "tensorflow-cpu": "2.21.0"}
    same = {**saved, "onnxruntime": "1.32.1", "onnx": "1.23.0", "keras": "3.16.0", "numpy": "2.5.0"}
    assert bench_conftest.moved_versions(saved, same) == []  # patch releases, Keras and numpy: not compared
    moved = {**saved, "onnxruntime": "1.33.0"}
    assert bench_conftest.moved_versions(saved, moved) == ["onnxruntime 1.32.0 -> 1.33.0"]
    gpu = {k: v for k, v in saved.items() if k != "tensorflow-cpu"} | {"tensorflow": "2.21.0"}
    assert bench_conftest.moved_versions(saved, gpu) == []  # another build of the engine: not compared


def test_the_test_extra_pins_the_baselines_engines():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    baseline = json.loads((root / "tests" / "benchmarks" / "baseline.json").read_text())
    for entry in baseline["classes"].values():
        for pkg in ("onnxruntime", "onnx"):
            minor = ".".join(entry["versions"][pkg].split(".")[:2])
            assert f"{pkg}~={minor}.0" in extra, f"[test] does not pin {pkg} to the baseline's {minor}"

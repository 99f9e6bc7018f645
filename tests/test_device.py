"""Engines and devices (harness.core.device): the engine check, the GPU's mixed precision, which device
trained what; and, where an NVIDIA GPU is visible, training and benchmarking on it (skipped here
with the reason when there is none)."""

from __future__ import annotations

import importlib.metadata as md
import json

import pytest

from harness.core import device
from harness.core.errors import UsageError
from tests.conftest import harness_cli


def _fake(*installed_dists: str):
    def version(name: str) -> str:
        if name in installed_dists:
            return "1.0"
        raise md.PackageNotFoundError(name)
    return version


def test_engine_check_accepts_one_build_of_each():
    assert device.check_engines(_fake("tensorflow-cpu", "onnxruntime")) == {
        "tensorflow": "tensorflow-cpu", "onnxruntime": "onnxruntime"}
    assert device.check_engines(_fake("tensorflow", "onnxruntime-gpu")) == {
        "tensorflow": "tensorflow", "onnxruntime": "onnxruntime-gpu"}
    assert device.check_engines()["tensorflow"] in device.TENSORFLOW  # this environment is sound


@pytest.mark.parametrize("dists, needle", [
    (("onnxruntime",), "tensorflow is not installed; install an engine: pip install 'harness[cpu]'"),
    (("tensorflow-cpu",), "onnxruntime is not installed"),
    (("tensorflow-cpu", "tensorflow", "onnxruntime"),
     "tensorflow-cpu and tensorflow are both installed and overwrite each other's files; remove them and "
     "install one engine: pip uninstall -y tensorflow-cpu tensorflow"),
    (("tensorflow", "onnxruntime", "onnxruntime-gpu"),
     "onnxruntime and onnxruntime-gpu are both installed"),
])
def test_engine_check_names_the_fix(dists, needle):
    with pytest.raises(UsageError, match="") as e:
        device.check_engines(_fake(*dists))
    assert needle in str(e.value) and e.value.exit_code == 2 and "\n" not in str(e.value)


def test_gpu_policy_suits_the_generation():
    assert device.gpu_policy((9, 0)) == "mixed_bfloat16"   # Hopper (H100/H200)
    assert device.gpu_policy((8, 6)) == "mixed_bfloat16"   # Ampere
    assert device.gpu_policy((7, 5)) == "mixed_float16"    # Turing (Kaggle's T4)
    assert device.gpu_policy((6, 0)) == "float32"          # Pascal (Kaggle's P100): no tensor cores
    assert device.gpu_policy(None) == "float32"


def test_hidden_gpus_are_not_counted(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert device.nvidia_gpus() == []


def test_auto_jobs_is_one_job_per_gpu_machine(monkeypatch):
    from harness.executors import local as executor

    monkeypatch.setattr(device, "nvidia_gpus", lambda: ["GPU 0: NVIDIA H200 (UUID: x)"])
    assert executor.auto_jobs() == 1


def test_cpu_training_policy_is_unchanged_without_a_gpu(monkeypatch):
    from harness.train import cv

    monkeypatch.setattr(device, "visible_gpu", lambda: None)
    assert cv.training_policy({"precision": "float32"}) == "float32"
    assert cv.training_policy({"precision": "bfloat16"}) == ("mixed_bfloat16" if device.bf16_fast() else "float32")
    monkeypatch.setattr(device, "visible_gpu", lambda: {"policy": "mixed_float16"})
    assert cv.training_policy({"precision": "float32"}) == "mixed_float16"  # a GPU: every model


# ----------------------------------------------------------------------------- on a GPU

def _gpu_or_skip() -> None:
    if not device.nvidia_gpus():
        pytest.skip("no NVIDIA GPU visible (nvidia-smi -L lists none): the GPU path is checked by "
                    "scripts/gpu_check.sh on a GPU machine")
    if device.visible_gpu() is None:
        pytest.skip("a GPU is present but this TensorFlow does not see it: install harness[gpu]")


@pytest.mark.e2e
def test_training_and_benchmark_use_the_gpu(project):
    _gpu_or_skip()
    proc = harness_cli("run", "--model", "cnn_tiny", "--limit", "1200", "--folds", "2", "--epochs", "1",
                       "--no-report", "--json", cwd=project, timeout=900)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    from pathlib import Path

    run_dir = Path(results["run_dir"])
    cv = json.loads((run_dir / "cnn_tiny" / "cv.json").read_text())
    assert all(f["device"].startswith("GPU (") for f in cv["folds"]), cv["folds"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["devices"]["training"]["cnn_tiny"][0].startswith("GPU (") and manifest["devices"]["gpus"]
    bench = json.loads((run_dir / "cnn_tiny" / "bench.json").read_text())
    if device.cuda_provider():
        assert bench["cuda"].get("latency"), bench["cuda"]
        assert bench["summary"]["cuda_p50_ms_b1"] > 0


def test_cpu_class_names_the_instruction_sets_that_set_speed_ratios():
    assert device.cpu_class({"avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"}) == "amx"
    assert device.cpu_class({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}) == "avx512-vnni"  # Zen 4/5
    assert device.cpu_class({"avx2", "avx512f"}) == "avx512"
    assert device.cpu_class({"avx2", "avx_vnni"}) == "avx2-vnni"
    assert device.cpu_class({"avx", "avx2", "fma"}) == "avx2"  # an AVX2-only EPYC (family 23)
    assert device.cpu_class(set()) == "other"
    assert device.int8_fast({"avx2", "avx512f", "avx512_vnni"}) and device.int8_fast({"amx_int8"})
    assert not device.int8_fast({"avx", "avx2"}) and not device.int8_fast({"avx2", "avx512f"})
    assert device.bf16_fast({"avx512_bf16"}) and device.bf16_fast({"amx_bf16"}) and not device.bf16_fast({"avx2"})
    assert device.cpu_class() in ("amx", "avx512-vnni", "avx512", "avx2-vnni", "avx2", "other")


def test_int8_variants_are_on_by_default_only_where_they_pay(monkeypatch, capsys):
    from harness.cli import run as run_cli

    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    assert run_cli._int8_default(quick=False) is True and run_cli._int8_default(quick=True) is False
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx", "avx2"})
    assert run_cli._int8_default(quick=False) is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no INT8 variants by default on this CPU (avx2" in err and "--int8" in err

"""Which engines and devices this process has: the CPU and GPU builds, visible GPUs, the mixed
precision that suits each, and ONNX Runtime's providers.

    check_engines()            # a clear error when TensorFlow / ONNX Runtime are missing or doubled
    gpu = visible_gpu()        # {"name", "compute_capability", "policy"} or None (imports TensorFlow)
    policy = gpu_policy((8, 0))           # "mixed_bfloat16"
    cuda = cuda_provider()     # "CUDAExecutionProvider" or None
    cpu_class()                # "amx" | "avx512-vnni" | "avx512" | "avx2-vnni" | "avx2" | "other"

The engines are install extras (`harness[cpu]`: tensorflow-cpu + onnxruntime; `harness[gpu]`:
tensorflow[and-cuda] + onnxruntime-gpu) because each pair ships the same import package: two of a
pair side by side overwrite each other's files, and uninstalling one breaks the other. The check
names what to uninstall rather than letting an import fail deep inside a run.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
from typing import Any

from harness.core.errors import UsageError

# distribution -> which engine and build it is
TENSORFLOW = {"tensorflow-cpu": "cpu", "tensorflow": "gpu-capable", "tf-nightly": "gpu-capable"}
ONNXRUNTIME = {"onnxruntime": "cpu", "onnxruntime-gpu": "gpu", "onnxruntime-openvino": "openvino",
               "onnxruntime-directml": "directml"}
INSTALL_HINT = "pip install 'harness[cpu]' (or 'harness[gpu]' on a machine with an NVIDIA GPU)"


def installed(names: dict[str, str], version=md.version) -> list[str]:
    """The distributions of `names` that are installed."""
    out = []
    for name in names:
        try:
            version(name)
        except md.PackageNotFoundError:
            continue
        out.append(name)
    return out


def check_engines(version=md.version) -> dict[str, str]:
    """{"tensorflow": dist, "onnxruntime": dist}, or a UsageError (exit 2) saying how to fix the
    environment: an engine missing, or two builds of one engine side by side."""
    found = {}
    for engine, names in (("tensorflow", TENSORFLOW), ("onnxruntime", ONNXRUNTIME)):
        dists = installed(names, version)
        if not dists:
            raise UsageError(f"{engine} is not installed; install an engine: {INSTALL_HINT}")
        builds = {names[d] for d in dists}
        if len(dists) > 1 and len(builds) > 1:
            raise UsageError(f"{' and '.join(dists)} are both installed and overwrite each other's files; "
                             f"remove them and install one engine: pip uninstall -y {' '.join(dists)} && "
                             f"{INSTALL_HINT}")
        found[engine] = dists[0]
    return found


def gpu_policy(compute_capability: tuple[int, int] | None) -> str:
    """The Keras mixed precision that suits an NVIDIA GPU: bfloat16 from Ampere (8.0: native bf16
    tensor cores, no loss scaling), float16 on Volta/Turing (7.x: tensor cores, Keras adds loss
    scaling), float32 before (no tensor cores: mixed precision is slower)."""
    if compute_capability is None:
        return "float32"
    if tuple(compute_capability) >= (8, 0):
        return "mixed_bfloat16"
    if tuple(compute_capability) >= (7, 0):
        return "mixed_float16"
    return "float32"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read: not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_class(flags: set[str] | None = None) -> str:
    """The instruction sets that set this CPU's speed ratios (INT8 over FP32, ONNX Runtime over
    TensorFlow): machines of one class measure alike, machines of two classes do not (an AVX2-only EPYC ran
    INT8 CNNs at 0.86-1.2x FP32, an AMX Xeon at 1.2-2.5x)."""
    f = cpu_flags() if flags is None else flags
    if "amx_int8" in f or "amx_tile" in f:
        return "amx"
    if "avx512f" in f:
        return "avx512-vnni" if "avx512_vnni" in f else "avx512"
    if "avx2" in f:
        return "avx2-vnni" if "avx_vnni" in f else "avx2"
    return "other"


def _cpuinfo(field: str) -> str | None:
    """The first value of `field` in /proc/cpuinfo (None where it cannot be read: not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """What a benchmark ran on (every bench JSON's `machine`): CPU name, vendor, family, model and
    class, cores, Python and platform. Figures of two CPU classes are not comparable."""
    return {"cpu": _cpuinfo("model name") or platform.processor() or "", "cpu_vendor": _cpuinfo("vendor_id"),
            "cpu_family": _cpuinfo("cpu family"), "cpu_model": _cpuinfo("model"), "cpu_class": cpu_class(),
            "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def hardware() -> dict[str, Any]:
    """What a run's manifest records of the machine: CPU name, cores, architecture, OS, the GPUs
    `nvidia-smi -L` lists, and the CPU's vendor, family, model and class."""
    m = machine()
    return {"cpu": m["cpu"] or platform.machine(), "cores": m["cores"], "machine": platform.machine(),
            "os": m["platform"], "gpus": nvidia_gpus(), **{k: m[k] for k in ("cpu_vendor", "cpu_family",
                                                                           "cpu_model", "cpu_class")}}


def machine_key(info: dict[str, Any] | None = None) -> str:
    """"vendor/family/model" of a CPU (this one by default), e.g. "AuthenticAMD/25/1": finer than
    its class. Two EPYCs of the AVX2 class (Zen 2, family 23; Zen 3, family 25) have other cache
    sizes, and a memory-bound ratio such as INT8 over FP32 moves with them."""
    m = info or machine()
    return "/".join(str(m.get(k) or "?") for k in ("cpu_vendor", "cpu_family", "cpu_model"))


def int8_fast(flags: set[str] | None = None) -> bool:
    """Whether ONNX Runtime's INT8 kernels have dot-product instructions here (VNNI or AMX). Without
    them (AVX2's multiply-add chains) a static INT8 CNN is no faster than its FP32 graph."""
    return cpu_class(flags) in ("amx", "avx512-vnni", "avx2-vnni")


def bf16_fast(flags: set[str] | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere Keras's
    mixed_bfloat16 is emulated and slower than float32."""
    f = cpu_flags() if flags is None else flags
    return "avx512_bf16" in f or "amx_bf16" in f


_GPU: Any = ...  # cached: TensorFlow's device list does not change within a process


def visible_gpu() -> dict[str, Any] | None:
    """The first GPU TensorFlow sees, with its compute capability and the policy that suits it; None
    without one (or with CUDA_VISIBLE_DEVICES=-1). Imports TensorFlow."""
    global _GPU
    if _GPU is not ...:
        return _GPU
    from harness.core.tfquiet import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        _GPU = None
        return None
    for g in gpus:  # several processes may share a GPU: take memory as needed, not all of it at once
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except (RuntimeError, ValueError):  # already initialised: keep what it has
            pass
    details = tf.config.experimental.get_device_details(gpus[0]) or {}
    cc = details.get("compute_capability")
    _GPU = {"name": details.get("device_name") or gpus[0].name, "count": len(gpus),
            "compute_capability": list(cc) if cc else None, "policy": gpu_policy(tuple(cc) if cc else None)}
    return _GPU


def device_label() -> str:
    """What trains in this process: "GPU (<name>, cc 9.0, mixed_bfloat16)" or "CPU"."""
    gpu = visible_gpu()
    if gpu is None:
        return "CPU"
    cc = ".".join(str(v) for v in gpu["compute_capability"] or []) or "?"
    return f"GPU ({gpu['name']}, cc {cc}, {gpu['policy']})"


def nvidia_gpus() -> list[str]:
    """`nvidia-smi -L` lines (no TensorFlow import; [] without a driver or with
    CUDA_VISIBLE_DEVICES=-1/empty, which hides every GPU from the run)."""
    import os
    import subprocess

    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [g for g in out.stdout.splitlines() if g.strip().startswith("GPU")] if out.returncode == 0 else []


def cuda_provider() -> str | None:
    """"CUDAExecutionProvider" when this ONNX Runtime build has it and a GPU answers, else None."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    return "CUDAExecutionProvider"


def run_devices(run_dir, names: list[str]) -> dict[str, Any]:
    """Which device did what in a run, for its manifest: each model's training device(s) (from its
    folds' records) and the ONNX Runtime providers of the benchmark and the submission."""
    from harness.core import io

    training = {}
    for name in names:
        path = run_dir / name / "cv.json"
        if path.is_file():
            folds = io.read_json(path).get("folds") or []
            training[name] = sorted({f.get("device") or "not recorded" for f in folds})
    bench = ["CPUExecutionProvider"] + (["CUDAExecutionProvider"] if cuda_provider() else [])
    return {"training": training, "benchmark": bench, "submission": "CPUExecutionProvider",
            "gpus": nvidia_gpus()}

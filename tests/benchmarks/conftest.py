"""Fixtures of the latency suite: two fixed models exported by harness.export.convert, and for each a
hand-written ONNX reference graph computing the same function.

Why a reference graph: absolute times change with the machine, so the regression gate compares
ratios measured in the same session, interleaved: (exported model) / (reference graph of the same
architecture and weights, run with fixed session options). Both do the same arithmetic on the same
CPU, so the ratio measures what harness.export.convert and harness.bench.latency add (graph quality, session
settings) and survives a change of machine. The models are defined here, not taken from the
registry, so that a change to a registry model does not move the baseline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BASELINE_PATH = Path(__file__).with_name("baseline.json")
# Allowed worsening against baseline.json, by figure. The ratio to the reference graph moved
# +-3 % between runs on a busy 2-core machine; losing the export's graph clean-ups costs ~20 %.
# The speed-up over TensorFlow is noisier (TensorFlow's own timing).
# Efficiency: 0.35, not 0.25: on a shared AVX2 VM the interleaved FLOP-floor figure moved 22-27 %
# between runs (ann at batch 1, memory-bound, which a compute peak does not track).
DEFAULT_TOLERANCE = {"exported_over_reference": 0.12, "speedup_over_tf_function": 0.30,
                     "roofline_efficiency": 0.35, "default": 0.25}
# Figures saved per CPU model rather than per class (Gate): INT8 over FP32 of a memory-bound graph
# moves with the cache sizes (ann at batch 1: 2.8x on a Zen 2 EPYC, 6.6x on a Zen 3, both AVX2).
MACHINE_SCOPED = ("int8_speedup",)
LARGE_BATCH = 256
# HARNESS_BENCH_REGRESS=no-cleanups exports every graph of the suite with harness.export.convert's graph
# clean-ups off: the deliberate regression the gate must fail (README.md beside this file).
REGRESS = os.environ.get("HARNESS_BENCH_REGRESS", "")
if REGRESS not in ("", "no-cleanups"):
    raise pytest.UsageError(f"HARNESS_BENCH_REGRESS={REGRESS!r}: the one regression known is 'no-cleanups'")
CLEAN_UPS = REGRESS != "no-cleanups"


@dataclass
class Subject:
    name: str
    run_dir: Path
    onnx_path: Path
    reference: bytes          # the hand-written ONNX graph
    flops: Any                # harness.export.flops.FlopCount: FLOPs per image and bytes per call

    @property
    def flops_per_image(self) -> int:
        return self.flops.total


def cnn5m():
    """BENCHMARKING.md's small CNN: two 3x3 convs, ~5.3 MFLOP/image."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((28, 28, 1)), layers.Rescaling(1 / 255),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(10, activation="softmax")])


def mlp():
    """A dense net 784-256-10: the per-call overhead dominates at batch 1."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input((28, 28, 1)), layers.Rescaling(1 / 255), layers.Flatten(),
        layers.Dense(256, activation="relu"), layers.Dense(10, activation="softmax")])


MODELS = {"cnn5m": cnn5m, "mlp": mlp}


def _randomize_biases(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))


def reference_graph(model: Any) -> bytes:
    """The same network written directly in ONNX (NCHW convs, Gemm dense layers, 1/255 folded)."""
    import keras
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    nodes.append(helper.make_node("Cast", ["pixels"], ["x0"], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Reshape", ["x0", const("nchw", np.array([-1, 1, 28, 28], np.int64))], ["x"]))
    cur, scale, spatial, channels, flat = "x", 1.0, (28, 28), 1, False
    for i, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.Rescaling):
            scale = float(layer.scale)
        elif isinstance(layer, keras.layers.Conv2D):
            w, b = (np.asarray(v) for v in layer.get_weights())
            w = w.transpose(3, 2, 0, 1) * scale  # HWIO -> OIHW
            scale = 1.0
            nodes.append(helper.make_node("Conv", [cur, const(f"w{i}", w), const(f"b{i}", b)], [f"c{i}"],
                                          kernel_shape=list(w.shape[2:])))
            nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
            cur, channels = f"r{i}", w.shape[0]
            spatial = (spatial[0] - w.shape[2] + 1, spatial[1] - w.shape[3] + 1)
        elif isinstance(layer, keras.layers.MaxPooling2D):
            nodes.append(helper.make_node("MaxPool", [cur], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            cur, spatial = f"p{i}", (spatial[0] // 2, spatial[1] // 2)
        elif isinstance(layer, keras.layers.Flatten):
            size = channels * spatial[0] * spatial[1]
            nodes.append(helper.make_node("Reshape", [cur, const(f"s{i}", np.array([-1, size], np.int64))], [f"f{i}"]))
            cur, flat = f"f{i}", True
        elif isinstance(layer, keras.layers.Dense):
            w, b = (np.asarray(v) for v in layer.get_weights())
            if channels > 1 and spatial != (1, 1):  # Keras flattens NHWC; this graph flattens NCHW
                h, wd = spatial
                w = w.reshape(h, wd, channels, -1).transpose(2, 0, 1, 3).reshape(w.shape)
                channels, spatial = 1, (1, 1)
            w = w * scale
            scale = 1.0
            act = "Softmax" if layer.activation is keras.activations.softmax else "Relu"
            nodes.append(helper.make_node("Gemm", [cur, const(f"w{i}", w), const(f"b{i}", b)], [f"g{i}"]))
            out = "probs" if act == "Softmax" else f"a{i}"
            nodes.append(helper.make_node(act, [f"g{i}"], [out]))
            cur = out
    assert flat and cur == "probs", "reference_graph() knows only the suite's own layer types"
    graph = helper.make_graph(nodes, "reference",
                              [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", 28, 28, 1])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def reference_session(model: bytes, threads: int = 1):
    """Fixed session options, deliberately not harness.bench.make_session: a regression there shows."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(1000, 28, 28, 1)).astype(np.uint8)
    x[rng.random(x.shape) < 0.75] = 0
    return x


@pytest.fixture(scope="session")
def subjects(tmp_path_factory, images) -> dict[str, Subject]:
    """Each suite model trained-free (random weights), saved as a 1-fold run and exported."""
    import keras

    from harness.export.convert import export_model
    from harness.export.flops import count_flops

    run_dir = tmp_path_factory.mktemp("bench-suite") / "run"
    (run_dir).mkdir()
    (run_dir / "manifest.json").write_text("{}")
    out = {}
    for i, (name, build) in enumerate(MODELS.items()):
        keras.utils.set_random_seed(i)
        model = build()
        _randomize_biases(model, i)
        (run_dir / name / "fold_0").mkdir(parents=True)
        model.save(run_dir / name / "fold_0" / "model.keras")
        result = export_model(run_dir, name, images, {"cv_accuracy": None}, simplify_graph=CLEAN_UPS)
        path = Path(result.path)
        out[name] = Subject(name, run_dir, path, reference_graph(model), count_flops(path))
    return out


SHIPPED = ("ann", "cnn_small", "cnn_deep")  # the built-in models, as `harness run` ships them
SHIPPED_FOLDS = 5                          # the default k: the shipped graph holds 5 fold models


@pytest.fixture(scope="session")
def shipped(tmp_path_factory, images) -> dict[str, Subject]:
    """Each built-in model's exported fold-ensemble graph, as a default run ships it: the registry's
    architecture and default parameters, 5 folds, random weights (latency does not depend on
    their values). Here a change to a registry model is meant to move the figures."""
    import keras

    from harness.export.convert import export_model
    from harness.export.flops import count_flops
    from harness.registry import get_model

    run_dir = tmp_path_factory.mktemp("bench-shipped") / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text("{}")
    out = {}
    for name in SHIPPED:
        spec = get_model(name)
        for f in range(SHIPPED_FOLDS):
            keras.utils.set_random_seed(f)
            model = spec.build(spec.params())
            (run_dir / name / f"fold_{f}").mkdir(parents=True)
            model.save(run_dir / name / f"fold_{f}" / "model.keras")
        path = Path(export_model(run_dir, name, images, {"cv_accuracy": None}, simplify_graph=CLEAN_UPS).path)
        out[name] = Subject(name, run_dir, path, b"", count_flops(path))
    return out


# ----------------------------------------------------------------------------- parametrisation and tools

def pytest_generate_tests(metafunc):
    """`suite_model` runs over MODELS, `shipped_model` over SHIPPED, `suite_batch` over batch 1
    and LARGE_BATCH."""
    if "suite_model" in metafunc.fixturenames:
        metafunc.parametrize("suite_model", list(MODELS))
    if "shipped_model" in metafunc.fixturenames:
        metafunc.parametrize("shipped_model", list(SHIPPED))
    if "suite_batch" in metafunc.fixturenames:
        metafunc.parametrize("suite_batch", [1, LARGE_BATCH])


class Tools:
    """Helpers the suite's tests share (given as a fixture: test modules never import conftest)."""

    baseline_path = BASELINE_PATH
    large_batch = LARGE_BATCH

    def __init__(self) -> None:
        self._overhead: dict[tuple[int, int], float] = {}

    reference_session = staticmethod(lambda model, threads=1: reference_session(model, threads))

    def feed(self, images: np.ndarray, batch: int) -> dict[str, np.ndarray]:
        return {"pixels": np.ascontiguousarray(np.resize(images, (batch, 28, 28, 1)))}

    def overhead_ms(self, batch: int, threads: int = 1) -> float:
        """Median per-call cost of harness.bench.latency's trivial graph (same input and output)."""
        from harness.bench import make_session, time_calls, trivial_model

        key = (batch, threads)
        if key not in self._overhead:
            sess = make_session(trivial_model(), threads)
            feed = self.feed(np.zeros((1, 28, 28, 1), np.uint8), batch)
            s = time_calls(lambda: sess.run(None, feed), iters=500, warmup_iters=50)
            self._overhead[key] = float(np.median(s) * 1e3)
        return self._overhead[key]

    def peak_call(self, n: int = 1024) -> tuple[Any, float]:
        """(a call of ONNX Runtime's one-thread n^3 FP32 MatMul, its FLOPs): the peak kernel of
        `harness.bench.latency.measure_peak_gflops`, to be timed interleaved with a graph."""
        from harness.bench import matmul_call

        rng = np.random.default_rng(0)
        a, w = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        return matmul_call("MatMul", a, w, 1), 2.0 * n ** 3

    def floor_ms(self, flops_per_image: int, batch: int, threads: int = 1) -> dict[str, float]:
        """The fixed-peak floor that test_latency.py reports (the gate's efficiency measures its own)."""
        from harness.bench import DEFAULT_PEAK_GFLOPS_PER_CORE

        peak = DEFAULT_PEAK_GFLOPS_PER_CORE
        over = self.overhead_ms(batch, threads)
        compute = batch * flops_per_image / (peak * 1e9 * threads) * 1e3
        return {"floor_ms": over + compute, "overhead_ms": over, "peak": peak}

    @staticmethod
    def percentiles(samples_s) -> dict[str, Any]:
        from harness.bench import stats

        st = stats(np.asarray(samples_s), batch=1)
        return {k: st[k] for k in ("n", "p50_ms", "p90_ms", "p99_ms")}

    @staticmethod
    def interleaved(fns: dict[str, Any], rounds: int, calls: int | dict[str, int], q: float = 25) -> dict[str, float]:
        """harness.bench.interleaved: seconds per call of each fn, timed in alternating blocks."""
        from harness.bench import interleaved

        return interleaved(fns, rounds=rounds, calls=calls, q=q)


@pytest.fixture(scope="session")
def tools() -> Tools:
    return Tools()


# ----------------------------------------------------------------------------- the gate

class Gate:
    """Compares figures measured in this session with tests/benchmarks/baseline.json.

    A figure fails when it is worse than its baseline by more than its tolerance (a fraction), or
    beyond its hard limit (which holds on any machine). With HARNESS_BENCH_UPDATE=1 nothing is
    compared and the session's figures are written to baseline.json at the end.

    Scope. Most figures hold for a CPU class (harness.core.device.cpu_class) and are saved once per
    class. Those named in MACHINE_SCOPED (by their last part) move with the cache sizes of one CPU
    model, so each machine (harness.core.device.machine_key: vendor/family/model) keeps its own under
    the class's `machines`; a saved key may hold '?' for a part its machine did not record.

    The rule for what the baseline has not seen: a figure with no saved value for this class, or
    for this machine where it is machine-scoped, is checked against its hard limit only, and the
    summary lists it with the command that records it. A CPU class with no entry at all likewise.
    """

    def __init__(self, path: Path) -> None:
        import json

        from harness.core.device import cpu_class, machine_key

        self.path = path
        mode = os.environ.get("HARNESS_BENCH_UPDATE", "")
        self.update = mode not in ("", "0")
        # "merge": keep, per figure, the less demanding of the saved and the measured value, so that
        # the class's baseline holds on every machine of the class measured so far (two AMX Xeons
        # differed by up to 1.7x in INT8/FP32); any other value replaces the class entry.
        self.merge = mode == "merge"
        self.higher_is_worse: dict[str, bool] = {}
        self.saved = json.loads(path.read_text()) if path.is_file() else {}
        # One baseline per CPU class: these ratios hold across machines of a class, not across
        # classes (INT8 over FP32 is 2.5x with AMX and 0.9x on AVX2 alone).
        self.cpu_class = cpu_class()
        self.machine_key = machine_key()
        self.baseline = self.saved.get("classes", {}).get(self.cpu_class, {})
        self.machine_scoped = tuple(self.saved.get("machine_scoped", MACHINE_SCOPED))
        self.override = os.environ.get("HARNESS_BENCH_TOLERANCE")
        self.figures: dict[str, float] = {}
        self.unchecked: dict[str, str] = {}   # figure -> why only its hard limit was checked
        self.notes: dict[str, str] = {}       # what a figure is made of (the roofline's terms)

    def tolerance(self, key: str) -> float:
        """The allowed fraction for `key`: by its last part (e.g. exported_over_reference)."""
        if self.override:
            return float(self.override)
        tol = self.saved.get("tolerance", DEFAULT_TOLERANCE)
        if isinstance(tol, dict):
            return float(tol.get(key.rsplit("/", 1)[-1], tol.get("default", 0.25)))
        return float(tol)

    def scoped_to_machine(self, key: str) -> bool:
        return key.rsplit("/", 1)[-1] in self.machine_scoped

    def machine_entry(self) -> tuple[str, dict[str, Any]] | None:
        """(saved key, entry) of this machine in the class's `machines`; '?' matches any part."""
        mine = self.machine_key.split("/")
        for key, entry in self.baseline.get("machines", {}).items():
            parts = key.split("/")
            if len(parts) == len(mine) and all(p in ("?", m) for p, m in zip(parts, mine)):
                return key, entry
        return None

    def saved_value(self, key: str) -> float | None:
        if self.scoped_to_machine(key):
            found = self.machine_entry()
            return (found[1].get("figures") or {}).get(key) if found else None
        return self.baseline.get("figures", {}).get(key)

    def note(self, key: str, text: str) -> None:
        self.notes[key] = text

    def verdict(self, key: str, value: float, *, higher_is_worse: bool) -> str | None:
        """Why `value` of `key` fails against its saved value, or None when it passes or has none."""
        base = self.saved_value(key)
        if base is None:
            return None
        tol = self.tolerance(key)
        limit = base * (1 + tol) if higher_is_worse else base * (1 - tol)
        if (value > limit) if higher_is_worse else (value < limit):
            return (f"latency regression: {key} = {value:.3f}, baseline {base:.3f}, allowed "
                    f"{'<=' if higher_is_worse else '>='} {limit:.3f} (tolerance {tol:.0%})")
        return None

    def check(self, key: str, value: float, *, higher_is_worse: bool, hard_limit: float) -> None:
        self.figures[key] = round(float(value), 4)
        self.higher_is_worse[key] = higher_is_worse
        worse = value > hard_limit if higher_is_worse else value < hard_limit
        if worse:
            pytest.fail(f"{key} = {value:.3f}, beyond the hard limit {hard_limit} "
                        f"({'at most' if higher_is_worse else 'at least'}) that holds on any machine")
        if self.update or not self.baseline:  # a CPU class with no baseline: hard limits only (summary says so)
            return
        changed = moved_versions(self.baseline.get("versions", {}), versions())
        if changed:
            pytest.fail(f"the baseline was taken with other versions ({', '.join(changed)}): no regression "
                        f"check until it is refreshed: {REFRESH}, then commit {self.path.name}")
        if self.saved_value(key) is None:
            self.unchecked[key] = (f"not measured on this CPU model ({self.machine_key})"
                                   if self.scoped_to_machine(key) else f"not in the {self.cpu_class} entry")
            return
        why = self.verdict(key, value, higher_is_worse=higher_is_worse)
        if why:
            pytest.fail(f"{why}. If the change is intended, refresh the baseline: {REFRESH}, then commit "
                        f"{self.path.name}")

    def _merged(self, measured: dict[str, float], saved: dict[str, float]) -> dict[str, float]:
        """Measured figures over saved ones; with merge, per figure the less demanding of the two."""
        out = {**saved, **measured}
        if self.merge:
            out.update({k: (max if self.higher_is_worse[k] else min)(v, saved[k])
                        for k, v in measured.items() if k in saved})
        return dict(sorted(out.items()))

    def write(self) -> None:
        import datetime
        import json

        from harness.core.device import machine

        now = datetime.datetime.now().isoformat(timespec="seconds")
        ours = {k: v for k, v in self.figures.items() if not self.scoped_to_machine(k)}
        per_machine = {k: v for k, v in self.figures.items() if self.scoped_to_machine(k)}
        entry = {"measured": now, "machine": machine(), "versions": versions()}
        if self.merge and self.baseline:
            entry["merged_with"] = [*self.baseline.get("merged_with", []),
                                    {"measured": self.baseline.get("measured"), "machine": self.baseline.get("machine")}]
            if self.baseline.get("note"):
                entry["note"] = self.baseline["note"]
        # figures this session did not measure (a subset of the suite was run) keep their saved value
        entry["figures"] = self._merged(ours, self.baseline.get("figures", {}))
        machines = dict(self.baseline.get("machines", {}))  # other CPU models' entries stay
        found = self.machine_entry()
        key, old = found if found else (self.machine_key, {})
        machines.pop(key, None)
        machines[self.machine_key] = {"measured": now, "machine": machine(),
                                      "figures": self._merged(per_machine, old.get("figures", {}))}
        entry["machines"] = dict(sorted(machines.items()))
        doc = {
            "about": "Ratios measured in one session by tests/benchmarks/test_gate.py, one entry per CPU "
                     "class (harness.core.device.cpu_class), the machine-scoped ones per CPU model under the class's "
                     "`machines` (harness.core.device.machine_key); refresh this machine's with "
                     "HARNESS_BENCH_UPDATE=merge python -m pytest tests/benchmarks -m benchmark --benchmark-enable",
            "tolerance": self.saved.get("tolerance", DEFAULT_TOLERANCE),
            "machine_scoped": list(self.machine_scoped),
            "classes": dict(sorted({**self.saved.get("classes", {}), self.cpu_class: entry}.items())),
        }
        self.path.write_text(json.dumps(doc, indent=2) + "\n")


REFRESH = "HARNESS_BENCH_UPDATE=1 python -m pytest tests/benchmarks -m benchmark --benchmark-enable"
VERSIONED = ("onnxruntime", "onnx", "tf2onnx", "keras", "tensorflow-cpu", "tensorflow", "numpy")
# The versions that decide the figures, compared by major.minor: the engines that build the graphs
# and run them (and TensorFlow, the baseline of the speed-up). Keras and numpy are recorded, not
# compared: neither runs inside an ONNX Runtime call. pyproject.toml's [test] extra pins these to
# the baseline's major.minor, so a move is a change of ours (refresh the baseline with it).
SPEED_VERSIONED = ("python", "onnxruntime", "onnx", "tf2onnx", "tensorflow-cpu", "tensorflow")


def moved_versions(saved: dict[str, str], now: dict[str, str]) -> list[str]:
    """'<package> <saved> -> <now>' for each speed-deciding package whose major.minor moved (a
    package missing on either side is not compared: another build of the same engine)."""
    def minor(v: str) -> tuple[str, ...]:
        return tuple(v.split(".")[:2])

    return [f"{k} {saved[k]} -> {now[k]}" for k in SPEED_VERSIONED
            if k in saved and k in now and minor(saved[k]) != minor(now[k])]


def versions() -> dict[str, str]:
    """What the figures depend on: Python and the packages that build and run the graphs."""
    import importlib.metadata as md
    import platform

    out = {"python": ".".join(platform.python_version_tuple()[:2])}
    for pkg in VERSIONED:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


_GATES: list[Gate] = []


@pytest.fixture(scope="session")
def gate():
    g = Gate(BASELINE_PATH)
    _GATES.append(g)
    yield g
    if g.update and g.figures:
        g.write()


def pytest_terminal_summary(terminalreporter):
    """The gate's figures beside their baselines, after pytest-benchmark's tables, and what the
    baseline has not seen (checked against hard limits only)."""
    for g in _GATES:
        if not g.figures:
            continue
        terminalreporter.section(f"latency gate (ratios measured in this session, CPU class {g.cpu_class}, "
                                 f"CPU model {g.machine_key})")
        if not g.baseline and not g.update:
            terminalreporter.write_line(f"no baseline for CPU class {g.cpu_class} in {g.path.name} (it has "
                                        f"{', '.join(g.saved.get('classes', {})) or 'none'}): only the hard limits "
                                        f"were checked; record one with {REFRESH}")
        for key, value in sorted(g.figures.items()):
            base = None if g.update else g.saved_value(key)
            terminalreporter.write_line(f"{key:<48} {value:8.3f}   baseline {base if base is not None else '-'}")
        for key, text in sorted(g.notes.items()):
            terminalreporter.write_line(f"  {key}: {text}")
        if g.unchecked:
            terminalreporter.write_line(
                f"{len(g.unchecked)} figure(s) the baseline has not seen on this machine were checked against "
                f"their hard limits only: " + "; ".join(f"{k} ({why})" for k, why in sorted(g.unchecked.items()))
                + f". Record them on this machine with HARNESS_BENCH_UPDATE=merge {REFRESH.split(' ', 1)[1]} "
                f"and commit {g.path.name}")
        if g.update:
            terminalreporter.write_line(f"baseline written to {g.path}")

"""Export of fold ensembles to ONNX: parity with Keras on tiny models of every family, the gate
catching a broken export, the file's interface and metadata, predict_onnx, and `harness export`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

N_PARITY = 1000


# ----------------------------------------------------------------------------- tiny models

def tiny_dense():
    import keras
    from keras import layers

    inp = keras.Input((28, 28, 1))
    x = layers.Rescaling(1 / 255)(inp)
    x = layers.Flatten()(x)
    x = layers.Dense(24, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x))


def tiny_conv():
    import keras
    from keras import layers

    inp = keras.Input((28, 28, 1))
    x = layers.Rescaling(1 / 255)(inp)
    x = layers.Conv2D(4, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    return keras.Model(inp, layers.Dense(10, activation="softmax")(x))


def _registry_builder(name):
    def build():
        from harness.registry import get_model

        return get_model(name).build()
    return build


BUILDERS = {"tiny_dense": tiny_dense, "tiny_conv": tiny_conv,
            # the project's own tiny CNN variants (two-block and Deotte-style; ann_tiny is tiny_dense)
            "cnn_tiny": _registry_builder("cnn_tiny"), "cnn_deep_tiny": _registry_builder("cnn_deep_tiny")}
FOLDS = {"tiny_dense": 2, "tiny_conv": 2, "cnn_tiny": 2, "cnn_deep_tiny": 1}


def randomize(model, seed: int) -> None:
    """Untrained models have zero biases and identity batch norm, which hides export mistakes."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.2, layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, layer.beta.shape).astype("float32"))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape).astype("float32"))


def make_run(root: Path, name: str, folds: int = 2, seed: int = 0, builder=None) -> Path:
    """A run folder holding `folds` fold models of `name` (random weights), as cv.py lays it out."""
    import keras

    run_dir = root
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "manifest.json").write_text("{}")
    for k in range(folds):
        keras.utils.set_random_seed(seed + k)
        m = (builder or BUILDERS[name])()
        randomize(m, seed + k)
        d = run_dir / name / f"fold_{k}"
        d.mkdir(parents=True, exist_ok=True)
        m.save(d / "model.keras")
    (run_dir / name / "cv.json").write_text(json.dumps({"model": name, "oof_accuracy": 0.5}))
    return run_dir


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Digit-like uint8 images: mostly black with bright strokes, like MNIST."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, size=(N_PARITY, 28, 28, 1)).astype(np.uint8)
    x[rng.random(x.shape) < 0.75] = 0
    return x


@pytest.fixture(scope="module")
def exported(tmp_path_factory, images):
    """Every tiny model exported once: {name: (run_dir, ExportResult)}."""
    from harness.export.convert import export_model

    run_dir = tmp_path_factory.mktemp("export") / "run-1"
    out = {}
    for i, name in enumerate(BUILDERS):
        make_run(run_dir, name, folds=FOLDS[name], seed=10 * i)
        out[name] = (run_dir, export_model(run_dir, name, images, {"cv_accuracy": 0.987}))
    return out


# ----------------------------------------------------------------------------- parity

@pytest.mark.parametrize("name", list(BUILDERS))
def test_export_passes_parity_gate(exported, images, name):
    from harness.export.convert import keras_ensemble_probs, load_fold_models, predict_onnx

    run_dir, result = exported[name]
    assert result.ok and result.error is None
    assert result.folds == FOLDS[name] and result.n_parity == N_PARITY
    assert result.max_abs_diff <= 1e-4 and result.argmax_mismatches == 0
    path = run_dir / name / "model.onnx"
    assert Path(result.path) == path and path.stat().st_size == result.size_bytes
    # independent re-check: ONNX Runtime vs the mean of the Keras fold softmaxes
    ref = keras_ensemble_probs(load_fold_models(run_dir, name), images)
    probs = predict_onnx(path, images, batch_size=333)
    assert probs.shape == (N_PARITY, 10) and probs.dtype == np.float32
    assert np.abs(probs - ref).max() <= 1e-4
    assert (probs.argmax(1) == ref.argmax(1)).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    export_json = json.loads((run_dir / name / "export.json").read_text())
    assert export_json["ok"] is True and export_json["parity"]["n"] == N_PARITY


def test_simplified_graph_is_smaller_and_equivalent(exported, images):
    import onnx

    from harness.export.convert import convert, load_fold_models, simplify

    run_dir, result = exported["tiny_conv"]
    assert result.simplified["kept"] is True
    assert {"static_flatten", "transpose_into_dense", "input_scale_into_weights"} <= set(result.simplified["applied"])
    plain = convert(load_fold_models(run_dir, "tiny_conv"))
    simple, _ = simplify(plain)
    ops = [n.op_type for n in onnx.load(run_dir / "tiny_conv" / "model.onnx").graph.node]
    assert len(ops) < len(plain.graph.node)
    assert "Shape" not in ops and "Transpose" not in ops
    import onnxruntime as ort

    a = ort.InferenceSession(plain.SerializeToString()).run(None, {"pixels": images[:64]})[0]
    b = ort.InferenceSession(simple.SerializeToString()).run(None, {"pixels": images[:64]})[0]
    assert np.abs(a - b).max() < 1e-6


def test_onnx_file_interface_and_metadata(exported):
    import onnx

    from harness import __version__
    from harness.export.convert import onnx_metadata

    run_dir, result = exported["cnn_tiny"]
    proto = onnx.load(result.path)
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "pixels" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = inp.type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == [28, 28, 1]
    assert out.name == "probs" and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert out.type.tensor_type.shape.dim[1].dim_value == 10
    meta = onnx_metadata(result.path)
    assert meta["model"] == "cnn_tiny" and meta["folds"] == "2" and meta["cv_accuracy"] == "0.987"
    assert meta["run_id"] == run_dir.name and meta["harness_version"] == __version__
    assert "uint8" in meta["input"]


def test_flops_of_exported_conv_match_hand_count(exported):
    from harness.export.flops import count_flops

    run_dir, _ = exported["tiny_conv"]
    # per fold: conv 3x3 1->4 valid (26x26), conv 3x3 4->8 same (13x13), dense 288->16, dense 16->10
    per_fold = 2 * 9 * 1 * 4 * 26 * 26 + 2 * 9 * 4 * 8 * 13 * 13 + 2 * 288 * 16 + 2 * 16 * 10
    assert count_flops(run_dir / "tiny_conv" / "model.onnx").total == 2 * per_fold


def test_predict_onnx_accepts_flat_and_integral_float(exported, images):
    from harness.core.errors import UsageError
    from harness.export.convert import predict_onnx

    run_dir, result = exported["tiny_dense"]
    ref = predict_onnx(result.path, images[:50])
    np.testing.assert_array_equal(predict_onnx(result.path, images[:50].reshape(50, 784), batch_size=7), ref)
    np.testing.assert_array_equal(predict_onnx(result.path, images[:50].astype(np.float32)), ref)
    with pytest.raises(UsageError):
        predict_onnx(result.path, images[:5].astype(np.float32) / 255)
    with pytest.raises(UsageError):
        predict_onnx(result.path, np.zeros((3, 27, 27, 1), np.uint8))


# ----------------------------------------------------------------------------- the gate

def _perturbed(convert):
    """A converter that corrupts one weight tensor of the graph, as a broken export would."""
    from onnx import numpy_helper

    def broken(models, opset=17, **kwargs):
        proto = convert(models, opset=opset, **kwargs)
        biggest = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        w = numpy_helper.to_array(biggest)
        biggest.CopyFrom(numpy_helper.from_array((w * 1.05 + 0.01).astype(w.dtype), biggest.name))
        return proto
    return broken


def test_broken_export_is_caught(tmp_path, images, monkeypatch):
    from harness.core.errors import RunError
    from harness.export import convert as export

    run_dir = make_run(tmp_path / "run-broken", "tiny_conv", seed=3)
    (run_dir / "tiny_conv" / "model.onnx").write_bytes(b"stale")  # an earlier export must not survive
    monkeypatch.setattr(export, "convert", _perturbed(export.convert))
    with pytest.raises(export.ParityError) as err:
        export.export_model(run_dir, "tiny_conv", images, {})
    assert isinstance(err.value, RunError) and err.value.exit_code == 5
    assert "tiny_conv" in str(err.value) and "parity gate" in str(err.value)
    info = json.loads((run_dir / "tiny_conv" / "export.json").read_text())
    assert info["ok"] is False and "parity gate" in info["error"] and info["max_abs_diff"] > 1e-4
    assert not (run_dir / "tiny_conv" / "model.onnx").exists()
    assert (run_dir / "tiny_conv" / "model.rejected.onnx").is_file()
    # the leaderboard row says so
    from harness.results.leaderboard import model_row

    assert model_row(run_dir, "tiny_conv")["status"].startswith("export failed")


def test_broken_simplification_falls_back_to_plain_graph(tmp_path, images, monkeypatch):
    from harness.export import convert as export

    run_dir = make_run(tmp_path / "run-fallback", "tiny_dense", seed=4)
    real_simplify = export.simplify

    def bad_simplify(proto):
        simple, applied = real_simplify(proto)
        return _perturbed(lambda models, opset: simple)(None), applied
    monkeypatch.setattr(export, "simplify", bad_simplify)
    result = export.export_model(run_dir, "tiny_dense", images, {})
    assert result.ok and result.simplified["kept"] is False and "failed the parity gate" in result.simplified["note"]
    assert result.max_abs_diff <= 1e-4


def test_gate_needs_enough_images_and_fold_models(tmp_path, images):
    from harness.core.errors import RunError, UsageError
    from harness.export import convert as export

    run_dir = make_run(tmp_path / "run-small", "tiny_dense", folds=1)
    with pytest.raises(UsageError, match="at least 1000"):
        export.export_model(run_dir, "tiny_dense", images[:999], {})
    with pytest.raises(RunError, match="no fold models"):
        export.export_model(run_dir, "nothing_here", images, {})


# ----------------------------------------------------------------------------- CLI

def test_cli_export_run(tmp_path, replica_dir, monkeypatch, capsys):
    from harness.cli import main

    runs = tmp_path / "runs"
    make_run(runs / "20260101-000000", "tiny_dense", folds=2, seed=5)
    monkeypatch.setenv("HARNESS_RUNS_DIR", str(runs))
    monkeypatch.setenv("HARNESS_DATA_DIR", str(replica_dir))
    assert main(["export", "--run", "20260101-000000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = out["exports"]
    assert row["model"] == "tiny_dense" and row["ok"] and row["n_parity"] == 1000
    assert (runs / "20260101-000000" / "tiny_dense" / "model.onnx").is_file()
    assert main(["export", "--model", "nope"]) == 5  # the latest run
    assert "no fold models for nope" in capsys.readouterr().err


def test_cli_export_failure_exits_5_and_names_model(tmp_path, replica_dir, monkeypatch, capsys):
    from harness.cli import main
    from harness.export import convert as export

    runs = tmp_path / "runs"
    make_run(runs / "20260101-000001", "tiny_dense", folds=1, seed=6)
    monkeypatch.setenv("HARNESS_RUNS_DIR", str(runs))
    monkeypatch.setenv("HARNESS_DATA_DIR", str(replica_dir))
    monkeypatch.setattr(export, "convert", _perturbed(export.convert))
    assert main(["export"]) == 5
    captured = capsys.readouterr()
    assert "tiny_dense: ONNX export rejected, parity gate" in captured.err
    assert "FAILED" in captured.out

"""The shared suite every registered model must pass (as timm and scikit-learn test every
registered estimator): it builds to the contract, trains a step, exports to ONNX, and the ONNX
graph predicts the right shape and the same probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from harness.registry import list_models
from harness.train.cv import compile_model, configure_threads

configure_threads()
SPECS = list_models()


@pytest.fixture(scope="module")
def digits(replica_dir):
    from harness.data.dataset import load

    ds = load(replica_dir)
    return ds.x_train[:64], ds.y_train[:64]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_registered_model_contract(spec, digits):
    import keras

    from harness.export.convert import convert, keras_ensemble_probs, parity

    x, y = digits
    keras.utils.set_random_seed(0)
    params = spec.params()
    model = spec.build(params)
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    assert spec.description and spec.family and spec.source.startswith("models/")
    for name in spec.search_space:  # a declared search space only names real parameters
        assert name in params, f"{spec.name}: search space names unknown parameter {name!r}"

    compile_model(model, {**params, "label_smoothing": 0.0}, steps=10)
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x.astype(np.float32), y)
    assert np.isfinite(np.asarray(loss, dtype=float)).all()
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "a step changed nothing"

    probs = keras_ensemble_probs([model], x)
    assert probs.shape == (64, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)

    proto = convert([model])
    figures = parity(proto.SerializeToString(), x, probs)
    assert figures["max_abs_diff"] <= 1e-4 and figures["argmax_mismatches"] == 0

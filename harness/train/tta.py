"""Test-time augmentation (TTA): average a model's softmax over a few shifted views of each image.

Views are whole-pixel shifts (zero fill), the identity first: (0,0), (0,+1), (0,-1), (+1,0),
(-1,0), then the diagonals; `--tta N` uses the first N (1 = off). A shift is a pad and a crop, so
the same TensorFlow code computes the views in Keras predictions and in the exported ONNX graph
(`Pad` + `Slice`): the submitted file is still computed by the benchmarked graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

VIEWS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1))
MAX_VIEWS = len(VIEWS)


def check(n: int) -> int:
    from harness.core.errors import UsageError

    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_VIEWS:
        raise UsageError(f"--tta must be a whole number from 1 (off) to {MAX_VIEWS}, got {n!r}")
    return n


def shift(x: Any, dy: int, dx: int) -> Any:
    """`x` [N,H,W,C] moved dy rows down and dx columns right, zeros shifted in (a TF op)."""
    import tensorflow as tf

    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[1], x.shape[2]
    pad = [[0, 0], [max(dy, 0), max(-dy, 0)], [max(dx, 0), max(-dx, 0)], [0, 0]]
    padded = tf.pad(x, pad)
    return padded[:, max(-dy, 0):max(-dy, 0) + h, max(-dx, 0):max(-dx, 0) + w, :]


def probs(model: Any, x: Any, n: int) -> Any:
    """Mean softmax of `model` over the first `n` views of float32 pixels `x` (a TF tensor)."""
    import tensorflow as tf

    outs = [model(shift(x, dy, dx), training=False) for dy, dx in VIEWS[:n]]
    return outs[0] if n == 1 else tf.add_n(outs) / float(n)


def predict(model: Any, x: np.ndarray, n: int, batch_size: int = 1024) -> np.ndarray:
    """Numpy in, numpy out: the TTA softmax of `model` on uint8 or float pixels."""
    import tensorflow as tf

    out = [np.asarray(probs(model, tf.constant(x[i:i + batch_size].astype(np.float32)), n))
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32)


def suffix(n: int) -> str:
    """File-name suffix of a fold's TTA predictions: oof.tta5.npy; none without TTA."""
    return "" if n == 1 else f".tta{n}"


def fold_predictions(run_dir: Any, model: str, n: int, x: np.ndarray, folds: np.ndarray,
                     x_test: np.ndarray) -> float:
    """Write each fold's `oof.ttaN.npy` / `test.ttaN.npy` from its saved model (skipping those
    already there); returns the seconds spent. The driver calls this after a model's folds."""
    import time
    from pathlib import Path

    import keras

    from harness.core import io
    from harness.core.runs import fold_dir

    start = time.perf_counter()
    for f in range(int(folds.max()) + 1):
        d = fold_dir(Path(run_dir), model, f)
        oof_path, test_path = d / f"oof{suffix(n)}.npy", d / f"test{suffix(n)}.npy"
        if n == 1 or (oof_path.is_file() and test_path.is_file()):
            continue
        fold_model = keras.saving.load_model(d / "model.keras", compile=False)
        io.write_npy(oof_path, predict(fold_model, x[folds == f], n))
        io.write_npy(test_path, predict(fold_model, x_test, n))
    return time.perf_counter() - start

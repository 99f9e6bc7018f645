"""Eager Keras calls against a traced `tf.function` for the fold jobs' OOF and test predictions
(`harness.train.cv.predict`): each registered model (random weights, its default parameters) predicts the
same 8,192 images both ways on one TensorFlow thread, twice, and the outputs are compared.

    python scripts/measure_predict.py [--models cnn_deep,cnn_small,ann] [--images 8192]

Measured on an AVX2 EPYC (family 23): cnn_deep 642-661 -> 796-809 images/s (1.20-1.26x), cnn_small 1.06-1.27x,
ann 1.14x, outputs identical (max difference 0.0).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cnn_deep,cnn_small,ann")
    ap.add_argument("--images", type=int, default=8192)
    args = ap.parse_args()

    from harness.core.tfquiet import import_tensorflow

    import_tensorflow(1)
    import tensorflow as tf

    from harness.registry import get_model

    x = np.random.default_rng(0).integers(0, 256, (args.images, 28, 28, 1)).astype(np.uint8)
    for name in args.models.split(","):
        spec = get_model(name)
        model = spec.build(spec.params())
        traced_call = tf.function(lambda t: model(t, training=False), reduce_retracing=True)

        def eager(x: np.ndarray, bs: int = 1024) -> np.ndarray:
            return np.concatenate([np.asarray(model(x[i:i + bs].astype(np.float32), training=False))
                                   for i in range(0, len(x), bs)])

        def traced(x: np.ndarray, bs: int = 1024) -> np.ndarray:
            return np.concatenate([np.asarray(traced_call(x[i:i + bs].astype(np.float32)))
                                   for i in range(0, len(x), bs)])

        eager(x[:1024]), traced(x[:1024])  # warm-up and tracing
        for _ in range(2):
            t = time.perf_counter()
            a = eager(x)
            t1 = time.perf_counter() - t
            t = time.perf_counter()
            b = traced(x)
            t2 = time.perf_counter() - t
            print(f"{name}: eager {len(x) / t1:,.0f} images/s, tf.function {len(x) / t2:,.0f} images/s "
                  f"({t1 / t2:.2f}x), max difference {float(np.abs(a - b).max()):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

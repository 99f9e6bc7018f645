"""bench: latency of exported graphs in ONNX Runtime, against a roofline floor and Keras baselines.

- latency: sessions, timing, the roofline floor, bench_onnx and bench_model (bench.json)
- keras_baselines: keras.Model.predict and tf.function of the same ensemble, in a child process
- gpu: the same timings on ONNX Runtime"s CUDA provider
"""

__all__ = ["gpu", "keras_baselines", "latency"]

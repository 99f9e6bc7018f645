"""bench: latency of exported graphs in ONNX Runtime, against a roofline floor and Keras baselines.

    record = bench_model(run_dir, "cnn_small")             # writes runs/<run>/cnn_small/bench.json
    record = bench_onnx("model.onnx", batches=(1, 64))      # the ONNX Runtime part alone, no write

- timing: sessions, timed calls, interleaved blocks, percentiles, the roofline's two terms
- latency: bench_onnx and bench_model (bench.json), an INT8 graph against its FP32 graph
- keras_baselines: keras.Model.predict and tf.function of the same ensemble, in a child process
- gpu: the same timings on ONNX Runtime's CUDA provider
"""

from harness.bench.latency import (
           DEFAULT_BATCHES,
           DEFAULT_PEAK_GFLOPS_PER_CORE,
           DEFAULT_THREADS,
           bench_model,
           bench_onnx,
           positive_float,
           summary,
           versus,
)
from harness.bench.timing import (
           DEFAULT_BUDGET,
           QUICK_BUDGET,
           STREAM_MAX_BYTES,
           STREAM_ROWS,
           TimingBudget,
           interleaved,
           make_session,
           matmul_call,
           measure_peak_gflops,
           measure_peak_gops_int8,
           replace_budget,
           roofline,
           stats,
           stream_call,
           time_calls,
           trivial_model,
)

__all__ = ["DEFAULT_BATCHES", "DEFAULT_BUDGET", "DEFAULT_PEAK_GFLOPS_PER_CORE", "DEFAULT_THREADS", "QUICK_BUDGET",
           "STREAM_MAX_BYTES", "STREAM_ROWS", "TimingBudget", "bench_model", "bench_onnx", "interleaved", "make_session",
           "matmul_call", "measure_peak_gflops", "measure_peak_gops_int8", "positive_float", "replace_budget", "roofline", "stats",
           "stream_call", "summary", "time_calls", "trivial_model", "versus"]

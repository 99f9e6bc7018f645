"""export: a model's fold ensemble as one ONNX graph, checked and counted.

- convert: Keras folds -> one ONNX graph (tf2onnx), the parity gate, metadata, predictions
- onnx_graph: graph clean-ups (static reshapes, folded scales, pruning)
- flops: FLOPs and bytes per call counted from a graph
- quantize: INT8 variants (<model>@int8), calibrated per fold and merged
"""

from harness.export.convert import export_model, predict_onnx
from harness.export.flops import FlopCount, count_flops

__all__ = ["FlopCount", "convert", "count_flops", "export_model", "flops", "onnx_graph", "predict_onnx", "quantize"]

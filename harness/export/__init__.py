"""export: a model"s fold ensemble as one ONNX graph, checked and counted.

- convert: Keras folds -> one ONNX graph (tf2onnx), the parity gate, metadata, predictions
- onnx_graph: graph clean-ups (static reshapes, folded scales, pruning)
- flops: FLOPs and bytes per call counted from a graph
- quantize: INT8 variants (<model>@int8), calibrated per fold and merged
"""

__all__ = ["convert", "flops", "onnx_graph", "quantize"]

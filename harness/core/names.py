"""The one grammar of row names, and the artefact each name points at.

A run's rows are models and what is built from them, each named by its model plus marks:

    cnn_deep          the registered model (bag 1)
    cnn_deep~2        bag 2: the same folds trained with other seeds (harness.train.bags)
    cnn_deep+pl       fine-tuned on pseudo-labels (harness.train.pseudo); cnn_deep~2+pl from bag 2
    cnn_deep@int8     the static INT8 variant of an exported graph (harness.export.quantize)

Registered names hold only letters, digits, '_', '-' and '.' (harness.registry), so the marks
never clash with a model's own name. Every stage finds a row's files through here.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.runs import model_dir

BAG_SEP = "~"
PSEUDO_SUFFIX = "+pl"
INT8_SUFFIX = "@int8"


def bag_name(model: str, bag: int) -> str:
    """`cnn_deep`, `cnn_deep~2`, ...: bag 1 keeps the model's own name."""
    return model if bag == 1 else f"{model}{BAG_SEP}{bag}"


def bag_base(name: str) -> str:
    """The registered model behind a bag's name (`cnn_deep~2` -> `cnn_deep`; others unchanged)."""
    head, sep, tail = name.rpartition(BAG_SEP)
    return head if sep and tail.isdigit() else name


def bag_number(name: str) -> int:
    """1 for a model, b for its bag `<model>~b`."""
    return 1 if bag_base(name) == name else int(name.rpartition(BAG_SEP)[2])


def pseudo_name(model: str) -> str:
    return model + PSEUDO_SUFFIX


def pseudo_base(name: str) -> str:
    """The round-one model a `+pl` row fine-tunes (the name itself for any other row)."""
    return name[:-len(PSEUDO_SUFFIX)] if name.endswith(PSEUDO_SUFFIX) else name


def int8_name(model: str) -> str:
    """The leaderboard name of a model's INT8 variant: `cnn_deep@int8`."""
    return model + INT8_SUFFIX


def int8_base(name: str) -> str:
    return name[:-len(INT8_SUFFIX)] if name.endswith(INT8_SUFFIX) else name


def onnx_path(run_dir: Path, name: str) -> Path:
    """The ONNX file behind a leaderboard name (`m` -> m/model.onnx, `m@int8` -> m/model.int8.onnx)."""
    if name.endswith(INT8_SUFFIX):
        return model_dir(run_dir, int8_base(name)) / "model.int8.onnx"
    return model_dir(run_dir, name) / "model.onnx"


def predictions(run_dir: Path, name: str, kind: str) -> Path:
    """`oof`/`test` probabilities of a leaderboard name: m/oof.npy, or m/int8/oof.npy for m@int8."""
    base = model_dir(run_dir, int8_base(name))
    return base / "int8" / f"{kind}.npy" if name.endswith(INT8_SUFFIX) else base / f"{kind}.npy"


def artefact(run_dir: Path, name: str, stem: str) -> Path:
    """`bench`/`score` JSON of a leaderboard name: m/bench.json, or m/bench.int8.json for m@int8."""
    base = model_dir(run_dir, int8_base(name))
    return base / (f"{stem}.int8.json" if name.endswith(INT8_SUFFIX) else f"{stem}.json")

"""harness: a Kaggle competition harness for image competitions of one form (Digit Recognizer, MNIST
as CSV, by default; harness.core.competition describes any other).

One package per stage, bottom up (docs/ARCHITECTURE.md; tests/test_layers.py keeps the order):
core, registry, kaggle, data, train, executors, export, bench, tune, results, report, run, cli.
`harness.registry` is the plugin API; `harness.cli` is the thin command line over the rest.
"""

import os as _os

# ONNX Runtime 1.29+ uploads telemetry from Linux too; harness runs offline and phones nowhere.
# Set before its first import in this process and inherited by every worker; a user's own value wins.
for _name in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED"):
    _os.environ.setdefault(_name, "1")

__version__ = "0.1.0"
COMPETITION = "digit-recognizer"

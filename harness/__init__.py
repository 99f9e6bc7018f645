"""harness: a Kaggle competition harness for Digit Recognizer (MNIST as CSV).

One package per stage, bottom up (docs/ARCHITECTURE.md; tests/test_layers.py keeps the order):
core, registry, kaggle, data, train, executors, export, bench, tune, results, report, run, cli.
`harness.registry` is the plugin API; `harness.cli` is the thin command line over the rest.
"""

__version__ = "0.1.0"
COMPETITION = "digit-recognizer"

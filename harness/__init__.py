"""harness: a Kaggle competition harness for image competitions of one form (Digit Recognizer, MNIST
as CSV, by default; harness.core.competition describes any other).

One package per stage, bottom up (docs/ARCHITECTURE.md; tests/test_layers.py keeps the order):
core, registry, kaggle, data, train, executors, export, bench, tune, results, report, run, cli.
`harness.registry` is the plugin API; `harness.cli` is the thin command line over the rest.
"""

__version__ = "0.1.0"
COMPETITION = "digit-recognizer"

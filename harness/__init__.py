"""harness: a Kaggle competition harness for Digit Recognizer (MNIST as CSV).

Stages, in the one direction data flows:
data -> registry -> cv -> export -> bench -> leaderboard -> submission -> kaggle / report.
Each stage is a module of library functions; `harness.cli` is the thin command line over them.
"""

__version__ = "0.1.0"
COMPETITION = "digit-recognizer"

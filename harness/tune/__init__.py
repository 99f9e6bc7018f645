"""tune: hyperparameter search with Optuna, cross-validated and resumable.

- options: TuneOptions, what `harness tune` was asked to do
- space: each model's search space and the parameters a trial draws from it
- study: the study (harness tune): trials, pruning, resume, the best parameters
- parallel: trials as executor jobs, several at once
- summary: what a study found, for the CLI and the report
"""

from harness.tune.options import TuneOptions
from harness.tune.study import tune

__all__ = ["TuneOptions", "options", "parallel", "space", "study", "summary", "tune"]

"""tune: hyperparameter search with Optuna, cross-validated and resumable.

- space: each model"s search space and the parameters a trial draws from it
- study: the study (harness tune): trials, pruning, resume, the best parameters
- parallel: trials as executor jobs, several at once
- summary: what a study found, for the CLI and the report
"""

__all__ = ["parallel", "space", "study", "summary"]

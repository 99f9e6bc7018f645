"""run: harness run from end to end: the stages in order over one run folder.

- pipeline: the run"s stages (data, train, ensemble, export, INT8, bench, results, submission, report, upload)
- training: every selected model"s folds handed to an executor, checkpointed fold by fold
"""

__all__ = ["pipeline", "training"]

"""run: harness run from end to end: the stages in order over one run folder.

- options: RunOptions, what `harness run` was asked to do
- state: Run, one invocation on one run folder, handed to every stage
- pipeline: the run's stages (data, train, ensemble, export, INT8, bench, results, submission, report, upload)
- training: every selected model's folds handed to an executor, checkpointed fold by fold
"""

from harness.run.options import RunOptions
from harness.run.pipeline import run
from harness.run.state import Run

__all__ = ["Run", "RunOptions", "options", "pipeline", "run", "state", "training"]

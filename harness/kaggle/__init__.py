"""kaggle: the competition's file formats and the Kaggle API, below the data stage that downloads through it.

- formats: the CSV schemas (train, test, submission), reading and writing them
- submission: a submission file checked against its schema
- client: the Kaggle client's calls, with timeouts and errors mapped to exit codes
- api: download, submit (validated, never twice), the submission history
"""

__all__ = ["api", "client", "formats", "submission"]

"""data: the competition's data on disk: got from Kaggle or the offline replica, validated, loaded.

- dataset: ensure_data (download or replica), load, the data manifest
- replica: the exact offline replica of Digit Recognizer (MNIST in Kaggle's split)
- local: another competition's files built from the user's NPZ or IDX images (their own split)
"""

from harness.data.dataset import DataInfo, Dataset, ensure_data, load, solution_path

__all__ = ["DataInfo", "Dataset", "dataset", "ensure_data", "load", "local", "replica", "solution_path"]

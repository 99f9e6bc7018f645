"""data: the competition's data on disk: got from Kaggle or the offline replica, validated, loaded.

- dataset: ensure_data (download or replica), load, the data manifest
- replica: the exact offline replica of Digit Recognizer (MNIST in Kaggle's split)
"""

from harness.data.dataset import DataInfo, Dataset, ensure_data, load, solution_path

__all__ = ["DataInfo", "Dataset", "dataset", "ensure_data", "load", "replica", "solution_path"]

"""data: the competition"s data on disk: got from Kaggle or the offline replica, validated, loaded.

- dataset: ensure_data (download or replica), load, the data manifest
- replica: the exact offline replica of Digit Recognizer (MNIST in Kaggle"s split)
"""

__all__ = ["dataset", "replica"]

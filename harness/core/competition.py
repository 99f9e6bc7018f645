"""The competition a project works on: its files, columns, image shape, classes and metric.

    comp = resolve_competition("digit-recognizer")      # a built-in, by slug
    comp = resolve_competition("fashion.toml")          # a spec the user wrote (a TOML file)
    comp.shape, comp.n_classes, comp.submission_header  # (28, 28, 1), 10, ("ImageId", "Label")

Every competition of this form has a `train.csv` of a label column and pixel columns, a `test.csv`
of pixel columns (with an id column or not), and a submission of one id and one label per test row,
scored by accuracy. Pixels are integers 0..255 in row-major height x width x channels order
(`pixel0` is row 0, column 0, channel 0). Built in: `digit-recognizer` (the default) and
`Kannada-MNIST`; any other is a small TOML file:

    slug = "fashion-mnist"          # the Kaggle competition's slug, or a name of the user's own
    kaggle = false                  # true: `harness data` downloads it with the Kaggle client
    image = [28, 28, 1]             # height, width, channels
    classes = ["T-shirt/top", "Trouser", ...]   # or a count: classes = 10 (named "0".."9")
    id_column = "id"                # the submission's id column
    id_start = 0                    # test ids run id_start.. in test.csv order (unless test_id_column)
    submission_label = "label"      # the submission's label column

and optionally `title`, `train`/`test`/`sample_submission` (file names; `sample_submission = ""` when
there is none), `label_column` ("label"), `pixel_prefix` ("pixel"), `pixel_start` (0),
`test_id_column` (a column of test.csv holding each row's id), `labels` (each class's value in the
files when they are not 0..K-1), `test_labels` (a file of `<id_column>,<label>` answers for the test
rows, for local scoring), `metric` ("accuracy", the only one yet), `augment` (the augmentation policy
to use instead of choosing one: see harness.train.augment), `extra_files` (files beside them that the
harness keeps but does not use). The file may also be a `[competition]` table of harness.toml or
`[tool.harness.competition]` of pyproject.toml. Every mistake is one line of a `UsageError`.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import UsageError

METRICS = ("accuracy",)


@dataclass(frozen=True)
class Competition:
    """One competition's layout. Class k is written as `labels[k]` in its files."""

    slug: str
    title: str = ""
    kaggle: bool = False
    height: int = 28
    width: int = 28
    channels: int = 1
    classes: tuple[str, ...] = tuple(str(d) for d in range(10))
    labels: tuple[int, ...] = ()            # () = 0..K-1
    train: str = "train.csv"
    test: str = "test.csv"
    sample_submission: str = "sample_submission.csv"  # "" = none: ids are generated
    label_column: str = "label"
    pixel_prefix: str = "pixel"
    pixel_start: int = 0
    id_column: str = "ImageId"
    id_start: int = 1
    test_id_column: str = ""
    submission_label: str = "Label"
    metric: str = "accuracy"
    test_labels: str = ""
    augment: str = ""                       # "" = the run's probe chooses (harness.train.augment.POLICIES)
    extra_files: tuple[str, ...] = ()
    origin: str = "built-in"                # where the spec came from (a path for a user's file)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def n_pixels(self) -> int:
        return self.height * self.width * self.channels

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def label_values(self) -> tuple[int, ...]:
        """Each class's label in the files (0..K-1 unless the spec says otherwise)."""
        return self.labels or tuple(range(self.n_classes))

    @property
    def pixel_columns(self) -> tuple[str, ...]:
        return tuple(f"{self.pixel_prefix}{i}" for i in range(self.pixel_start, self.pixel_start + self.n_pixels))

    @property
    def submission_header(self) -> tuple[str, str]:
        return (self.id_column, self.submission_label)

    @property
    def files(self) -> dict[str, str]:
        """The files the data folder must hold, by role."""
        files = {"train": self.train, "test": self.test}
        if self.sample_submission:
            files["sample_submission"] = self.sample_submission
        return files

    @property
    def is_digits(self) -> bool:
        """The layout of Digit Recognizer (its defaults and the digit recipes)."""
        return self.slug == DIGIT_RECOGNIZER.slug

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Competition":
        """The inverse of `to_dict` (a run's manifest records its competition this way)."""
        doc = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items() if k in _FIELDS}
        return cls(**doc)


_FIELDS = {f for f in Competition.__dataclass_fields__}

DIGIT_RECOGNIZER = Competition(
    slug="digit-recognizer", title="Digit Recognizer", kaggle=True, augment="digits")

KANNADA_MNIST = Competition(
    slug="Kannada-MNIST", title="Kannada MNIST", kaggle=True,
    classes=("0 (sonne)", "1 (ondu)", "2 (eradu)", "3 (mooru)", "4 (naalku)", "5 (aidu)", "6 (aaru)",
             "7 (elu)", "8 (entu)", "9 (ombattu)"),
    id_column="id", id_start=0, test_id_column="id", submission_label="label", augment="digits",
    extra_files=("Dig-MNIST.csv",))

BUILT_IN = {c.slug: c for c in (DIGIT_RECOGNIZER, KANNADA_MNIST)}

# TOML key -> how to read it. `image` and `classes` expand into several fields.
_KEYS = {"slug", "title", "kaggle", "image", "classes", "labels", "train", "test", "sample_submission",
         "label_column", "pixel_prefix", "pixel_start", "id_column", "id_start", "test_id_column",
         "submission_label", "metric", "test_labels", "augment", "extra_files"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_ .-]*")


def resolve_competition(value: str | os.PathLike | None, cwd: Path | None = None) -> Competition:
    """A built-in by slug (case-insensitive), or a TOML spec by path; None is Digit Recognizer."""
    if value is None or str(value) == "":
        return DIGIT_RECOGNIZER
    text = str(value)
    for slug, comp in BUILT_IN.items():
        if text.lower() == slug.lower():
            return comp
    path = Path(os.path.expanduser(text))
    if not path.is_absolute() and cwd is not None:
        path = cwd / path
    if path.suffix.lower() != ".toml" and not path.is_file():
        raise UsageError(f"unknown competition {text!r}: built in are {', '.join(BUILT_IN)}; "
                         "any other is a TOML spec file (see `harness data --help`)")
    return load_spec(path)


def load_spec(path: str | os.PathLike) -> Competition:
    """Read and check a TOML competition spec; every mistake is one line of one UsageError."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: competition spec not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read the competition spec ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML ({e})") from None
    for table in (("competition",), ("tool", "harness", "competition")):
        inner = doc
        for key in table:
            inner = inner.get(key) if isinstance(inner, dict) else None
        if isinstance(inner, dict):
            doc = inner
            break
    return spec_from_dict(doc, str(path))


def spec_from_dict(doc: dict[str, Any], origin: str) -> Competition:
    """Check a spec's keys and values; raise one UsageError with a line per mistake."""
    mistakes: list[str] = []
    fields: dict[str, Any] = {"origin": origin}

    def bad(key: str, what: str) -> None:
        mistakes.append(f"{origin}: {key}: {what}")

    for key in sorted(set(doc) - _KEYS):
        bad(key, f"unknown key (known: {', '.join(sorted(_KEYS))})")
    if "slug" not in doc:
        bad("slug", "missing (the competition's name, e.g. \"fashion-mnist\")")
    for key in ("slug", "title", "train", "test", "sample_submission", "label_column", "pixel_prefix", "id_column",
                "test_id_column", "submission_label", "metric", "test_labels", "augment"):
        if key in doc:
            if isinstance(doc[key], str):
                fields[key] = doc[key]
            else:
                bad(key, f"must be a string, got {doc[key]!r}")
    if "slug" in fields and not _NAME.fullmatch(fields["slug"]):
        bad("slug", f"{fields['slug']!r}: use letters, digits, '_', '-' and '.'")
    for key in ("pixel_start", "id_start"):
        if key in doc:
            if isinstance(doc[key], int) and not isinstance(doc[key], bool) and doc[key] >= 0:
                fields[key] = doc[key]
            else:
                bad(key, f"must be a whole number of at least 0, got {doc[key]!r}")
    if "kaggle" in doc:
        if isinstance(doc["kaggle"], bool):
            fields["kaggle"] = doc["kaggle"]
        else:
            bad("kaggle", f"must be true or false, got {doc['kaggle']!r}")
    _image(doc.get("image", [28, 28, 1]), fields, bad)
    _classes(doc.get("classes", 10), doc.get("labels"), fields, bad)
    if "extra_files" in doc:
        if isinstance(doc["extra_files"], list) and all(isinstance(f, str) for f in doc["extra_files"]):
            fields["extra_files"] = tuple(doc["extra_files"])
        else:
            bad("extra_files", "must be a list of file names")
    if fields.get("metric", "accuracy") not in METRICS:
        bad("metric", f"{fields['metric']!r} is not supported (supported: {', '.join(METRICS)})")
    for key in ("label_column", "id_column", "submission_label", "test_id_column"):
        if fields.get(key) and not _COLUMN.fullmatch(fields[key]):
            bad(key, f"{fields[key]!r} is not a column name")
    if "id_column" in fields and fields["id_column"] == fields.get("submission_label", "Label"):
        bad("submission_label", f"the same as id_column ({fields['id_column']!r})")
    for key in ("train", "test", "sample_submission", "test_labels"):
        name = fields.get(key)
        if name and (Path(name).name != name or not name.lower().endswith(".csv")):
            bad(key, f"{name!r}: a CSV file name inside the data folder (no folders)")
    for key in ("train", "test"):
        if key in fields and not fields[key]:
            bad(key, "must name a file")
    if fields.get("augment"):
        if fields["augment"] not in AUGMENT_POLICIES:
            bad("augment", f"{fields['augment']!r} is not a policy (known: {', '.join(AUGMENT_POLICIES)})")
    if mistakes:
        raise UsageError("\n".join(mistakes))
    return Competition(**fields)


# The augmentation policies a spec may pin (harness.train.augment defines them; listed here so the
# spec is checked before anything trains).
AUGMENT_POLICIES = ("digits", "objects", "none")


def _image(value: Any, fields: dict[str, Any], bad) -> None:
    ok = (isinstance(value, list) and len(value) == 3
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
    if not ok:
        bad("image", f"must be [height, width, channels], got {value!r}")
        return
    h, w, c = value
    if not (4 <= h <= 512 and 4 <= w <= 512):
        bad("image", f"height and width must be 4..512 pixels, got {h}x{w}")
    elif c not in (1, 3):
        bad("image", f"channels must be 1 (grayscale) or 3 (RGB), got {c}")
    else:
        fields.update(height=h, width=w, channels=c)


def _classes(value: Any, labels: Any, fields: dict[str, Any], bad) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 2 <= value <= 1000:
            bad("classes", f"must be 2..1000 classes, got {value}")
            return
        names = tuple(str(k) for k in range(value))
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = tuple(value)
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            bad("classes", f"duplicate class name(s): {', '.join(map(repr, dup))}")
            return
        if not 2 <= len(names) <= 1000 or any(not n.strip() for n in names):
            bad("classes", f"need 2..1000 non-empty names, got {len(names)}")
            return
    else:
        bad("classes", f"must be a list of class names or a count, got {value!r}")
        return
    fields["classes"] = names
    if labels is None:
        return
    if not (isinstance(labels, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                             for v in labels)):
        bad("labels", f"must be a list of whole numbers (each class's label in the files), got {labels!r}")
    elif len(labels) != len(names):
        bad("labels", f"{len(labels)} values for {len(names)} classes")
    elif len(set(labels)) != len(labels):
        bad("labels", "a label value appears twice")
    else:
        fields["labels"] = tuple(labels)


def of_manifest(manifest: dict[str, Any]) -> Competition:
    """The competition a run recorded in its manifest (runs from before specs: Digit Recognizer)."""
    doc = manifest.get("competition")
    return Competition.from_dict(doc) if isinstance(doc, dict) and doc.get("slug") else DIGIT_RECOGNIZER


def describe(comp: Competition) -> str:
    """One line: what the competition is."""
    h, w, c = comp.shape
    kind = "grayscale" if c == 1 else "RGB"
    return (f"{comp.slug}: {h}x{w} {kind} images, {comp.n_classes} classes, submission "
            f"{','.join(comp.submission_header)} ({comp.origin})")


__all__ = ["Competition", "DIGIT_RECOGNIZER", "KANNADA_MNIST", "BUILT_IN", "resolve_competition", "load_spec",
           "spec_from_dict", "describe", "of_manifest", "AUGMENT_POLICIES"]

"""Settings, resolved in one order: defaults < [tool.harness] in ./pyproject.toml or
./harness.toml < HARNESS_* environment variables < command-line flags.

Paths are relative to the current directory unless absolute, so a project folder is
self-contained: data/, runs/, submissions/, reports/ live beside the user's pyproject.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import UsageError


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data/digit-recognizer")
    runs_dir: Path = Path("runs")
    submissions_dir: Path = Path("submissions")
    reports_dir: Path = Path("reports")
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "harness")
    folds: int = 5
    seed: int = 42
    time_limit: str | None = None   # harness run's --time-limit ("30m", "none"); None: 30m, 5m with --quick

    def replace(self, **changes: Any) -> "Settings":
        """A copy with the non-None `changes` applied (unset flags keep lower layers)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **_coerce(changes))


_ENV = {
    "data_dir": "HARNESS_DATA_DIR",
    "runs_dir": "HARNESS_RUNS_DIR",
    "submissions_dir": "HARNESS_SUBMISSIONS_DIR",
    "reports_dir": "HARNESS_REPORTS_DIR",
    "cache_dir": "HARNESS_CACHE",
    "folds": "HARNESS_FOLDS",
    "seed": "HARNESS_SEED",
    "time_limit": "HARNESS_TIME_LIMIT",
}


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    for key, value in values.items():
        if key not in types:
            raise UsageError(f"unknown setting {key!r} (known: {', '.join(sorted(types))})")
        if types[key] in ("str | None", "str"):
            out[key] = str(value)
            continue
        try:
            out[key] = int(value) if types[key] in ("int", int) else Path(os.path.expanduser(str(value)))
        except ValueError:
            raise UsageError(f"setting {key!r} must be an integer, got {value!r}") from None
    return out


def _file_layer(cwd: Path) -> dict[str, Any]:
    for name, table in (("harness.toml", None), ("pyproject.toml", ("tool", "harness"))):
        path = cwd / name
        if not path.is_file():
            continue
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{path}: not valid TOML ({e})") from None
        for key in table or ():
            doc = doc.get(key, {})
        if doc:
            return dict(doc)
    return {}


# A Kaggle notebook mounts the competition's files here, read-only (HARNESS_KAGGLE_INPUT: tests).
KAGGLE_INPUT = Path("/kaggle/input/digit-recognizer")
_DATA_FILES = ("train.csv", "test.csv", "sample_submission.csv")


def load_settings(cwd: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Resolve settings from file and environment; flags are applied by the caller.

    With no data folder configured and none at the default place, a Kaggle notebook's mounted
    competition folder is the data folder (used in place, never written)."""
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    files = _file_layer(cwd)
    settings = Settings().replace(**files).replace(**{k: env[v] for k, v in _ENV.items() if env.get(v)})
    mounted = Path(env.get("HARNESS_KAGGLE_INPUT") or KAGGLE_INPUT)
    if "data_dir" not in files and not env.get("HARNESS_DATA_DIR") \
            and not (cwd / settings.data_dir / "train.csv").exists() \
            and all((mounted / name).is_file() for name in _DATA_FILES):
        settings = settings.replace(data_dir=mounted)
    return settings

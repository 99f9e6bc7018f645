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

from harness.core.competition import BUILT_IN, Competition, resolve_competition
from harness.core.errors import UsageError

DEFAULT_DATA_DIR = Path("data/digit-recognizer")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR  # data/<slug> for another competition
    runs_dir: Path = Path("runs")
    submissions_dir: Path = Path("submissions")
    reports_dir: Path = Path("reports")
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "harness")
    folds: int = 5
    seed: int = 42
    time_limit: str | None = None   # harness run's --time-limit ("30m", "none"); None: 30m, 5m with --quick
    competition_spec: str | None = None  # a built-in slug or a TOML spec's path; None: digit-recognizer

    @property
    def competition(self) -> Competition:
        """The competition (harness.core.competition): parsed anew, so a changed spec file counts."""
        return resolve_competition(self.competition_spec)

    def replace(self, **changes: Any) -> "Settings":
        """A copy with the non-None `changes` applied (unset flags keep lower layers). A new
        competition moves a data folder left at its default to data/<slug>."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "competition" in changes:  # the name users write; the field is the spec's name or path
            changes["competition_spec"] = changes.pop("competition")
        if "competition_spec" in changes:
            spec = str(changes["competition_spec"])
            path = Path(os.path.expanduser(spec))
            if not any(spec.lower() == s.lower() for s in BUILT_IN) and (path.suffix == ".toml" or path.exists()):
                spec = str(path.resolve())  # a spec file: found from any folder
            changes["competition_spec"] = spec
            if "data_dir" not in changes and self.data_dir == DEFAULT_DATA_DIR:
                changes["data_dir"] = Path("data") / resolve_competition(spec).slug
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
    "competition_spec": "HARNESS_COMPETITION",
}


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    for key, value in values.items():
        if key == "competition_spec" and isinstance(value, dict):
            raise UsageError("an inline [competition] table is read by load_settings, not by replace")
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
            doc = dict(doc)
            spec = doc.get("competition")
            if isinstance(spec, dict):  # the spec itself, inline: harness.core.competition reads it there
                doc["competition"] = str(path)
            elif isinstance(spec, str) and spec.lower().endswith(".toml"):
                doc["competition"] = str(cwd / spec)  # relative to the file that names it
            return doc
    return {}


# A Kaggle notebook mounts a competition's files at /kaggle/input/<slug>, read-only
# (HARNESS_KAGGLE_INPUT: the folder itself, for tests).
KAGGLE_INPUT = Path("/kaggle/input")


def load_settings(cwd: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Resolve settings from file and environment; flags are applied by the caller.

    With no data folder configured and none at the default place, a Kaggle notebook's mounted
    competition folder is the data folder (used in place, never written)."""
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    files = _file_layer(cwd)
    settings = Settings().replace(**files).replace(**{k: env[v] for k, v in _ENV.items() if env.get(v)})
    comp = settings.competition
    mounted = Path(env.get("HARNESS_KAGGLE_INPUT") or KAGGLE_INPUT / comp.slug)
    if "data_dir" not in files and not env.get("HARNESS_DATA_DIR") \
            and not (cwd / settings.data_dir / comp.train).exists() \
            and all((mounted / name).is_file() for name in comp.files.values()):
        settings = settings.replace(data_dir=mounted)
    return settings

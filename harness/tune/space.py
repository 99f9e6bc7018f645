"""The search spaces model plugins declare, and the tuned parameters `harness tune` saves.

    space = search_space(get_model("cnn_small"))          # name -> (kind, low, high[, step]) | choices
    params = parse_assignments(spec, ["batch_size=512"])  # `--fix` values, checked against the space
    params, source = load_tuned(runs_dir, spec)           # runs/tuned/<model>.json, validated

Kinds: `int` (low, high[, step]), `float` (low, high[, step]), `log` (low, high), `categorical`
([choices]). Every value that leaves here has been checked: an unknown name or a value outside
the declared space is a ModelError naming the nearest known name.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any

from harness.core import io
from harness.core.errors import ModelError, UsageError
from harness.registry import ModelSpec

KINDS = ("int", "float", "log", "categorical")


# ----------------------------------------------------------------------------- search spaces

def search_space(spec: ModelSpec) -> dict[str, tuple]:
    """The plugin's declared space, checked: name -> (kind, ...) with known parameter names."""
    known = spec.params()
    space: dict[str, tuple] = {}
    for name, entry in spec.search_space.items():
        where = f"model {spec.name!r}: search space entry {name!r}"
        if name not in known:
            raise ModelError(f"{where} is not a parameter of the model (known: {', '.join(sorted(known))})")
        if not isinstance(entry, (tuple, list)) or not entry or entry[0] not in KINDS:
            raise ModelError(f"{where} must be (kind, ...) with kind one of {', '.join(KINDS)}, got {entry!r}")
        kind = entry[0]
        if kind == "categorical":
            if len(entry) != 2 or not isinstance(entry[1], (list, tuple)) or not entry[1]:
                raise ModelError(f"{where} must be ('categorical', [choices...]), got {entry!r}")
            space[name] = (kind, list(entry[1]))
            continue
        if len(entry) not in (3, 4) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in entry[1:]):
            raise ModelError(f"{where} must be ({kind!r}, low, high[, step]), got {entry!r}")
        lo, hi = entry[1], entry[2]
        step = entry[3] if len(entry) == 4 else (1 if kind == "int" else None)
        if not lo <= hi or (kind == "log" and lo <= 0) or (step is not None and step <= 0) \
                or (kind == "log" and len(entry) == 4):
            raise ModelError(f"{where} has an empty or invalid range: {entry!r}")
        if kind == "int" and not all(float(v).is_integer() for v in (lo, hi, step)):
            raise ModelError(f"{where}: an int range needs integer bounds and step, got {entry!r}")
        space[name] = (kind, lo, hi) if step is None else (kind, lo, hi, step)
    return space


def describe(entry: tuple) -> str:
    kind = entry[0]
    if kind == "categorical":
        return "one of " + ", ".join(map(repr, entry[1]))
    text = f"{kind} {entry[1]:g}..{entry[2]:g}"
    return text + (f" step {entry[3]:g}" if len(entry) == 4 and not (kind == "int" and entry[3] == 1) else "")


def in_space(value: Any, entry: tuple) -> bool:
    """Whether `value` is a point of the declared space entry (bounds, integrality, step, choices)."""
    kind = entry[0]
    if kind == "categorical":
        return any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in entry[1])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    lo, hi = entry[1], entry[2]
    if not lo - 1e-12 * abs(lo) <= value <= hi + 1e-12 * abs(hi):
        return False
    if kind == "int" and not float(value).is_integer():
        return False
    if len(entry) == 4:
        k = (value - lo) / entry[3]
        return abs(k - round(k)) < 1e-9
    return True


def _unknown_name(spec: ModelSpec, name: str, known: list[str], what: str) -> ModelError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ModelError(f"model {spec.name!r} has no {what} {name!r} (known: {', '.join(sorted(known))}){hint}")


def check_params(spec: ModelSpec, params: dict[str, Any], *, where: str) -> dict[str, Any]:
    """Validate parameter values: known names, the default's type, inside the declared space.

    Returns them typed as the model's defaults are (an int parameter given 64.0 becomes 64)."""
    if not isinstance(params, dict):
        raise ModelError(f"{where}: parameters must be a JSON object of name: value, got {type(params).__name__}")
    defaults, space = spec.params(), search_space(spec)
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in defaults:
            raise ModelError(f"{where}: " + str(_unknown_name(spec, name, list(defaults), "parameter")))
        default = defaults[name]
        if value is None:
            raise ModelError(f"{where}: parameter {name!r} is null")
        if isinstance(default, bool) != isinstance(value, bool):
            raise ModelError(f"{where}: parameter {name!r} must be {type(default).__name__}, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ModelError(f"{where}: parameter {name!r} must be a number, got {value!r}")
            if isinstance(default, int) and not float(value).is_integer():
                raise ModelError(f"{where}: parameter {name!r} must be a whole number, got {value!r}")
            if value < 0 or (value == 0 and name in ("epochs", "batch_size", "learning_rate")):
                raise ModelError(f"{where}: parameter {name!r} must be positive, got {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise ModelError(f"{where}: parameter {name!r} must be a string, got {value!r}")
        if name in space and not in_space(value, space[name]):
            raise ModelError(f"{where}: {name}={value!r} is outside the search space of {spec.name!r} "
                             f"({describe(space[name])})")
        out[name] = spec.params({name: value})[name]
    return out


def parse_assignments(spec: ModelSpec, items: list[str]) -> dict[str, Any]:
    """`--fix NAME=VALUE` flags -> checked values (JSON literals, else plain strings)."""
    raw: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise UsageError(f"--fix expects NAME=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text.strip()
        raw[name.strip()] = value
    return check_params(spec, raw, where="--fix")


def active_space(spec: ModelSpec, only: list[str] | None, fixed: dict[str, Any]) -> dict[str, tuple]:
    """The declared space restricted to `only` (if given), minus the `fixed` names."""
    space = search_space(spec)
    if only:
        names = [n.strip() for item in only for n in item.split(",") if n.strip()]
        defaults = spec.params()
        for name in names:
            if name not in defaults:
                raise _unknown_name(spec, name, list(space) or list(defaults), "parameter")
            if name not in space:
                raise ModelError(f"--only {name}: {name!r} is not in the search space of {spec.name!r} "
                                 f"(searchable: {', '.join(space) or 'none'}); use --fix {name}=VALUE to set it")
            if name in fixed:
                raise UsageError(f"--only {name} and --fix {name}=... contradict each other")
        space = {n: space[n] for n in space if n in names}
    space = {n: e for n, e in space.items() if n not in fixed}
    if not space:
        raise ModelError(f"model {spec.name!r}: nothing to tune (its search space is "
                         f"{'empty' if not spec.search_space else 'all fixed'})")
    return space


def suggest(trial: Any, name: str, entry: tuple) -> Any:
    kind = entry[0]
    if kind == "categorical":
        return trial.suggest_categorical(name, entry[1])
    if kind == "int":
        return trial.suggest_int(name, int(entry[1]), int(entry[2]), step=int(entry[3]) if len(entry) == 4 else 1)
    if kind == "log":
        return trial.suggest_float(name, float(entry[1]), float(entry[2]), log=True)
    return trial.suggest_float(name, float(entry[1]), float(entry[2]),
                               step=float(entry[3]) if len(entry) == 4 else None)


# ----------------------------------------------------------------------------- saved parameters

def tuned_path(runs_dir: Path, model: str) -> Path:
    return Path(runs_dir) / "tuned" / f"{model}.json"


def load_tuned(runs_dir: Path, spec: ModelSpec) -> tuple[dict[str, Any], Path | None]:
    """The tuned parameters of `spec` from runs/tuned/<model>.json, validated; ({}, None) if none.

    A hand-edited file with an unknown name or a value outside the declared space is a ModelError."""
    path = tuned_path(runs_dir, spec.name)
    if not path.is_file():
        return {}, None
    try:
        doc = io.read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: not readable JSON ({e}); fix it or re-run `harness tune {spec.name}`") from None
    if not isinstance(doc, dict) or "params" not in doc:
        raise ModelError(f"{path}: expected an object with a \"params\" object (written by `harness tune`)")
    if doc.get("model", spec.name) != spec.name:
        raise ModelError(f"{path}: holds parameters of model {doc.get('model')!r}, not {spec.name!r}")
    return check_params(spec, doc["params"], where=str(path)), path

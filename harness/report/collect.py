"""Read a run folder into plain data for the report, tolerating whatever is missing.

A report is most useful exactly when a run went partly wrong, so nothing here raises for a
missing or unreadable artefact: it is left as None (or empty) and a one-line note is added to
`RunData.notes`, which the report shows. Only a folder that is not a run at all is an error.

    run = load_run(Path("runs/20250101-120000"))
    run.models[0].cv["fold_mean"], run.models[0].bench, run.dataset
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.errors import RunError
from harness.core.names import INT8_SUFFIX as SUFFIX
from harness.core.names import artefact, predictions
from harness.core.names import int8_base as base_of
from harness.core.runs import RUN_MARKER


@dataclass
class ModelData:
    name: str
    row: dict[str, Any] = field(default_factory=dict)  # the results.json row, when ranked
    cv: dict[str, Any] | None = None
    histories: list[tuple[int, dict[str, list[float]]]] = field(default_factory=list)
    oof: np.ndarray | None = None  # float32 [n_train, 10], aligned to RunData.train_index
    test: np.ndarray | None = None  # float32 [n_test, 10]
    bench: dict[str, Any] | None = None
    export: dict[str, Any] | None = None
    tuned: dict[str, Any] | None = None  # runs/tuned/<model>.json, when this run used tuned parameters
    tuned_source: str | None = None  # that file's path as the manifest records it


@dataclass
class RunData:
    run_dir: Path
    run_id: str
    manifest: dict[str, Any]
    results: dict[str, Any]
    models: list[ModelData]
    train_index: np.ndarray | None = None
    folds: np.ndarray | None = None
    dataset: Any = None  # harness.data.dataset.Dataset (x_train, y_train, x_test, image_ids) or None
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> ModelData | None:
        name = self.results.get("best")
        for m in self.models:
            if m.name == name or (name is None and m.row.get("best")):
                return m
        return None

    @property
    def y_true(self) -> np.ndarray | None:
        """Labels of the train rows this run used (aligned with every oof.npy), if known."""
        if self.dataset is None:
            return None
        y = np.asarray(self.dataset.y_train)
        if self.train_index is None:
            return y
        try:
            return y[self.train_index]
        except IndexError:
            return None


def _json(path: Path, notes: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        notes.append(f"{path.name} in {path.parent.name}/ could not be read ({type(e).__name__})")
        return None


def _npy(path: Path, notes: list[str]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        notes.append(f"{path.parent.name}/{path.name} could not be read ({type(e).__name__})")
        return None


def _histories(model_dir: Path, notes: list[str]) -> list[tuple[int, dict[str, list[float]]]]:
    out = []
    for d in sorted(model_dir.glob("fold_*")):
        try:
            k = int(d.name.split("_", 1)[1])
        except ValueError:
            continue
        h = _json(d / "history.json", notes)
        if isinstance(h, dict):
            out.append((k, h))
    return sorted(out, key=lambda kh: kh[0])


def _tuned(run: RunData, m: ModelData) -> None:
    """The tuning study behind `m`'s parameters: the manifest's `param_sources` names the
    runs/tuned/<model>.json file `harness run --tuned` read (relative to the directory the run
    was started from, so runs/tuned/ beside this run folder is tried too)."""
    sources = run.manifest.get("param_sources")
    src = sources.get(m.name) if isinstance(sources, dict) else None
    if not isinstance(src, str) or not src.endswith(".json"):
        return  # "model defaults": not tuned
    m.tuned_source = src
    path = Path(src)
    found = next((p for p in (path, run.run_dir.parent / "tuned" / path.name) if p.is_file()), None)
    if found is None:
        run.notes.append(f"{m.name}: its tuned parameters came from {src}, which is gone: "
                         "no tuning section")
        return
    doc = _json(found, run.notes)
    if doc is not None and not isinstance(doc, dict):
        run.notes.append(f"{found.name} in {found.parent.name}/ is not a tuning summary")
        doc = None
    m.tuned = doc


def _model_names(run_dir: Path, rows: list[dict[str, Any]]) -> list[str]:
    """Ranked models first (leaderboard order), then any other model folder, by name."""
    names = [str(r["model"]) for r in rows if r.get("model") is not None]
    for d in sorted(run_dir.iterdir()):
        if d.is_dir() and d.name not in names and any(
            (d / f).is_file() for f in ("cv.json", "bench.json", "export.json")
        ):
            names.append(d.name)
    return names


def load_run(run_dir: Path, data_dir: Path | None = None, dataset: Any = None) -> RunData:
    """Everything the report shows about `run_dir`; the dataset is loaded when it can be."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_MARKER).is_file():
        raise RunError(f"{run_dir} is not a run folder (no {RUN_MARKER})")
    notes: list[str] = []
    manifest = _json(run_dir / RUN_MARKER, notes) or {}
    results = _json(run_dir / "results.json", notes) or {}
    if not results:
        notes.append("results.json is missing: the leaderboard has not been written for this run")
    rows = [r for r in results.get("rows") or [] if isinstance(r, dict)]
    by_name = {str(r.get("model")): r for r in rows}

    models = []
    for name in _model_names(run_dir, rows):
        d = run_dir / name
        m = ModelData(name=name, row=by_name.get(name, {}))
        if name.endswith(SUFFIX) and (run_dir / base_of(name)).is_dir():  # an INT8 variant (harness.export.quantize)
            m.oof = _npy(predictions(run_dir, name, "oof"), notes)
            m.test = _npy(predictions(run_dir, name, "test"), notes)
            m.bench = _json(artefact(run_dir, name, "bench"), notes)
        elif d.is_dir():
            m.cv = _json(d / "cv.json", notes)
            m.histories = _histories(d, notes)
            m.oof = _npy(d / "oof.npy", notes)
            m.test = _npy(d / "test.npy", notes)
            m.bench = _json(d / "bench.json", notes)
            m.export = _json(d / "export.json", notes)
        models.append(m)

    run = RunData(
        run_dir=run_dir,
        run_id=str(manifest.get("run_id") or results.get("run_id") or run_dir.name),
        manifest=manifest,
        results=results,
        models=models,
        train_index=_npy(run_dir / "train_index.npy", notes),
        folds=_npy(run_dir / "folds.npy", notes),
        notes=notes,
    )
    for m in models:
        _tuned(run, m)
    run.dataset = dataset if dataset is not None else _load_dataset(run, data_dir)
    return run


def _load_dataset(run: RunData, data_dir: Path | None) -> Any:
    """The competition data named by the run's manifest (or `data_dir`), or None with a note."""
    config = run.manifest.get("config") or {}
    path = Path(data_dir) if data_dir is not None else (
        Path(config["data_dir"]) if config.get("data_dir") else None)
    if path is None:
        run.notes.append("the data folder is unknown: data plots and mistakes are left out")
        return None
    try:
        from harness.data import dataset as _data
    except ImportError:
        run.notes.append("harness.data.dataset is not available: data plots and mistakes are left out")
        return None
    try:
        from harness.core.competition import of_manifest

        return _data.load(path, of_manifest(run.manifest))
    except Exception as e:  # noqa: BLE001 - any failure here only costs the data section
        run.notes.append(f"data in {path} could not be loaded ({e}): data plots are left out")
        return None

"""One invocation of `harness run` on one run folder: what every stage reads and writes.

    run = Run(opts, settings, progress, run_dir, resumed, ...)
    training.cross_validate(run, run.specs, run.params)
    run.checkpoint()                      # manifest.json with this session's seconds so far

The stages take the run instead of a dozen arguments: its options and settings, the models and
their parameters, the data, the rows and folds fixed once per run, and the manifest, saved by
`checkpoint` after every finished job so a killed session's time still counts.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.core import io
from harness.core.config import Settings
from harness.core.progress import TrainingProgress
from harness.registry import ModelSpec
from harness.run.options import RunOptions


@dataclass
class Run:
    opts: RunOptions
    settings: Settings
    progress: TrainingProgress
    run_dir: Path
    resumed: bool
    seed: int
    k: int                                   # folds
    specs: list[ModelSpec]                   # the models trained in round one (bags included)
    params: dict[str, dict[str, Any]]        # each model's resolved parameters
    param_sources: dict[str, str]            # where each model's parameters came from
    data: Any                                # harness.data.dataset.Dataset
    info: Any                                # harness.data.dataset.DataInfo (source, hashes, solution)
    fingerprint: str
    index: np.ndarray | None = None          # the train.csv rows the run uses
    folds: np.ndarray | None = None          # each of those rows' fold
    x: np.ndarray | None = None              # those rows' images and labels
    y: np.ndarray | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] | None = None     # --time-limit: the limit, the plan and its calibration
    augmentation: dict[str, Any] = field(default_factory=lambda: {"policy": "digits"})  # harness.run.policy
    started: float = field(default_factory=time.perf_counter)
    clock: float = field(default_factory=time.perf_counter)  # when the time limit's clock started

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def x_test(self) -> np.ndarray:
        return self.data.x_test

    @property
    def manifest_path(self) -> Path:
        return self.run_dir / "manifest.json"

    def say(self, message: str) -> None:
        self.progress.stage(message)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage into the manifest's `stages_s` (added up over sessions; the planned
        against the used time of a time-limited run)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            stages = self.manifest.setdefault("stages_s", {})
            stages[name] = round(stages.get(name, 0.0) + time.perf_counter() - start, 1)

    def checkpoint(self, finished: bool = False) -> None:
        """Save the manifest with this session's seconds so far (and `finished`, at the very end)."""
        self.manifest["sessions"][-1]["seconds"] = round(time.perf_counter() - self.started, 1)
        self.manifest["duration_s"] = round(sum(s["seconds"] for s in self.manifest["sessions"]), 1)
        if finished:
            self.manifest["finished"] = io.utc_now()
        io.write_json(self.manifest_path, self.manifest)

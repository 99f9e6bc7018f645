"""What `harness tune` was asked to do: the study's options, as the CLI and the config resolve them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TuneOptions:
    model: str
    trials: int = 20                 # finished (complete + pruned) trials the study should reach
    timeout: float | None = None     # stop starting new trials after this many seconds
    folds: int | None = None         # k of the stratified folds (default settings.folds)
    folds_used: int = 2              # folds trained per trial (the first ones)
    limit: int | None = None         # stratified subset of rows (as `harness run --limit`)
    epochs: int | None = None        # epochs per trial (default: the model's; never saved)
    seed: int | None = None          # folds, subset, sampler, training (default settings.seed)
    fix: dict[str, Any] = field(default_factory=dict)   # checked values held fixed (and saved)
    only: list[str] | None = None    # tune only these names of the declared space
    pruner: str = "median"
    study: str | None = None         # study name (default: the model name)
    fresh: bool = False              # delete an existing study of that name first
    source: str = "auto"
    augment: str | None = None       # the augmentation policy (default: the competition's, else its last run's)
    executor: str = "local"          # local | ray: parallel trials (harness.tune.parallel)
    jobs: int | None = None          # trials at once (local default 1: in this process)
    cpus_per_job: int | None = None
    ray_address: str | None = None
    ray_timeout: float = 30.0

    @property
    def parallel(self) -> bool:
        return self.executor != "local" or (self.jobs or 1) > 1 or self.cpus_per_job is not None

"""What `harness run` was asked to do: its options, as the CLI and the config resolve them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunOptions:
    models: list[str] = field(default_factory=list)
    all_models: bool = False
    folds: int | None = None
    epochs: int | None = None
    seed: int | None = None
    limit: int | None = None
    quick: bool = False
    deterministic: bool = False
    tuned: bool = False
    resume: str | None = None       # a run id to resume explicitly
    new: bool = False               # never resume, always start a fresh run
    source: str = "auto"
    bench: bool = True
    baselines: bool = False         # Keras predict/tf.function baselines in the benchmark (opt-in: ~6 % of a run)
    report: bool = True
    submit: bool = False
    message: str | None = None
    wait: float = 0.0
    command: list[str] = field(default_factory=list)
    executor: str = "local"         # local | ray (harness.executors.local); never part of the fingerprint
    jobs: int | None = None         # jobs at once (local default 1; ray default: as the CPUs allow)
    cpus_per_job: int | None = None
    ray_address: str | None = None
    ray_timeout: float = 30.0
    ensemble: bool = True           # greedy OOF ensemble of the models (harness.train.ensemble)
    tta: int = 1                    # test-time views (harness.train.tta); 1 = off
    bags: int = 1                   # trainings of each model with other seeds (harness.train.bags); 1 = off
    pseudo_label: float | None = None  # confidence threshold of pseudo-labels (harness.train.pseudo); None = off
    int8: bool = True               # static INT8 variants `<model>@int8` (harness.export.quantize)
    max_latency_ms: float | None = None  # choose the best model whose p50 at `latency_batch` fits this
    latency_batch: int = 1
    time_limit: float | None = None  # seconds (harness.run.planner); None: the recipes as they are
    short_bench: bool = False       # one-thread benchmark rows only (a time limit's plan; --quick has it too)
    replay: str | None = None       # --replay RUN: train exactly that run's plan, no time limit
    plan_only: bool = False         # --plan: calibrate and print the plan, train nothing
    track: str = "none"             # experiment tracking after the run (harness.results.track): none | mlflow
    tracking_uri: str | None = None

"""executors: who runs the jobs of a run or a study (harness.train.jobs), and how many at once.

    executor = make_executor("local", jobs=2)            # or ("ray", address="10.0.0.5:6379")
    with executor.session(data, run_dir):                 # connects, checks the workers, puts the data
        run_jobs(executor, jobs, on_done, progress)       # blocks; a failed job stops the run

- base: the contract (Executor, Failure, JobFailed) and the driver loop (run_jobs)
- local: `InProcess` (`--jobs 1`) and `Processes` (`--jobs N` worker processes, which a session
  may keep warm for the next: `warm_slots`)
- ray: `RayExecutor` (`--executor ray`): one Ray task per job (`num_cpus=cpus_per_job`, workers
  reused from job to job) on a cluster at `--ray-address`, or on a Ray started for the run
"""

from __future__ import annotations

from typing import Callable

from harness.core.errors import UsageError
from harness.executors.base import (
    CONNECT_TIMEOUT_S,
    EXECUTORS,
    RAY_INSTALL,
    RAY_PIN,
    Executor,
    Failure,
    Job,
    JobFailed,
    run_jobs,
)
from harness.executors.local import InProcess, Processes, auto_jobs, parse_jobs, warm_slots

__all__ = ["CONNECT_TIMEOUT_S", "EXECUTORS", "Executor", "Failure", "InProcess", "Job", "JobFailed", "Processes",
           "auto_jobs", "make_executor", "parse_jobs", "run_jobs", "warm_slots"]


def make_executor(name: str = "local", *, jobs: int | None = None, cpus_per_job: int | None = None,
                  address: str | None = None, timeout: float = CONNECT_TIMEOUT_S,
                  hooks: Callable[[Job], dict] | None = None) -> Executor:
    """The executor the flags ask for; bad combinations are usage errors."""
    if name not in EXECUTORS:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if cpus_per_job is not None and cpus_per_job < 1:
        raise UsageError(f"--cpus-per-job must be at least 1, got {cpus_per_job}")
    if timeout <= 0:
        raise UsageError(f"--ray-timeout must be positive, got {timeout:g}")
    if name == "local":
        if address:
            raise UsageError("--ray-address needs --executor ray")
        if (jobs or 1) == 1 and cpus_per_job is None:
            return InProcess(hooks)
        return Processes(jobs or 1, cpus_per_job)
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UsageError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL} (installs {RAY_PIN})")
    from harness.executors.ray import RayExecutor

    return RayExecutor(address=address, jobs=jobs, cpus_per_job=cpus_per_job or 1, timeout=timeout)

"""executors: who runs the jobs of a run or a study (harness.train.jobs), and how many at once.

- local: the contract (Executor, Failure, run_jobs), jobs in this process or in N worker processes
- ray: jobs as tasks on a Ray cluster
"""

__all__ = ["local", "ray"]

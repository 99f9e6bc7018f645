"""Parallel trials: this process owns the Optuna study and hands trials to an executor.

Ask-and-tell: the driver asks the study for a trial, sends its parameters to a worker as a
`TrialJob`, and tells the study the result; it is the study's only writer, so a SQLite file is
never written by two processes at once. The sampler is TPE with `constant_liar`, so trials handed
out together differ. Pruning: a worker cannot ask the study, so the driver fixes the median
pruner's bar per epoch (the median of completed trials' fold-0 curves, as Optuna's MedianPruner
computes it) when it hands a trial out; the worker stops when its best accuracy so far falls below
it, and the driver records the curve and the pruned state. Trials left running by a driver that
died on this host are failed and queued again on the next start.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
import warnings
from typing import Any, Callable

from harness.core.errors import UsageError


def thresholds(study: Any, pruner: str, epochs: int, startup: int, warmup_fraction: int) -> tuple:
    """The median pruner's bar at each epoch (None where it would not prune yet)."""
    from optuna.trial import TrialState

    if pruner == "none":
        return ()
    if pruner != "median":
        raise UsageError(f"--pruner {pruner} needs trials run one at a time; use --pruner median or none "
                         "with --jobs > 1 or --executor ray")
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if len(complete) < startup:
        return ()
    warmup = max(1, epochs // warmup_fraction)
    bars: list[float | None] = []
    for step in range(epochs):
        values = [t.intermediate_values[step] for t in complete if step in t.intermediate_values]
        bars.append(statistics.median(values) if step >= warmup and values else None)
    return tuple(bars)


def requeue_orphans(study: Any, say: Callable[[str], None]) -> None:
    """Fail and queue again the trials a dead driver on this host left running."""
    from optuna.trial import TrialState

    from harness.train.jobs import dead_here

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("driver") or {}
        if not dead_here(owner.get("host"), owner.get("pid")):
            continue
        study.tell(t.number, state=TrialState.FAIL)
        attrs = {"retry_of": t.number, **({"baseline": True} if t.user_attrs.get("baseline") else {})}
        study.enqueue_trial(dict(t.params), user_attrs=attrs)
        say(f"trial #{t.number} was left running by a driver that died (pid {owner.get('pid')}); queued again")


def optimize(study: Any, *, make_job: Callable[[Any], Any], executor: Any, data: Any, target: int,
             timeout: float | None, after_trial: Callable[[Any, Any], None], finished: Callable[[], int],
             say: Callable[[str], None]) -> None:
    """Run trials on `executor` until `finished()` reaches `target` (or `timeout` stops new ones)."""
    from optuna.trial import TrialState

    from harness.executors import Failure, JobFailed

    requeue_orphans(study, say)
    t0 = time.perf_counter()
    open_trials: dict[int, Any] = {}
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    with executor.session(data, None):
        say(f"trials on the {executor.name} executor, {executor.slots} at once")
        try:
            while True:
                while (executor.free() > 0 and finished() + len(open_trials) < target
                       and (timeout is None or time.perf_counter() - t0 < timeout)):
                    with warnings.catch_warnings():  # "heartbeat is meant for Study.optimize": we
                        warnings.simplefilter("ignore")  # requeue a dead driver's trials ourselves
                        trial = study.ask()
                    trial.set_user_attr("driver", me)
                    job = make_job(trial)
                    executor.submit(job)
                    open_trials[job.number] = trial
                if not executor.in_flight:
                    break
                for job, outcome in executor.wait(timeout=1.0):
                    trial = open_trials.pop(job.number)
                    if isinstance(outcome, Failure):
                        study.tell(trial, state=TrialState.FAIL)
                        raise JobFailed(f"job {job.name} failed on the {executor.name} executor: "
                                        f"{outcome.message}; finished trials are kept in the study")
                    for epoch, value in enumerate(outcome["curve"]):
                        trial.report(value, epoch)
                    trial.set_user_attr("fold_accuracies", outcome["fold_accuracies"])
                    trial.set_user_attr("worker", {k: outcome.get(k) for k in ("host", "node", "pid", "threads")})
                    if outcome["state"] == "pruned":
                        trial.set_user_attr("pruned_at_epoch", outcome["pruned_at_epoch"])
                        frozen = study.tell(trial, state=TrialState.PRUNED)
                    else:
                        frozen = study.tell(trial, outcome["value"])
                    after_trial(study, frozen)
        except BaseException:
            # Trials cut off (Ctrl-C, a failed job): failed now, and queued to run first next time.
            for number, trial in open_trials.items():
                study.tell(trial, state=TrialState.FAIL)
                frozen = study.trials[number]
                attrs = {"retry_of": number, **({"baseline": True} if frozen.user_attrs.get("baseline") else {})}
                study.enqueue_trial(dict(frozen.params), user_attrs=attrs)
            raise

"""The plan of a run under a time limit: how many epochs each model trains, and how many bags.

    limit = parse_time_limit("30m")                       # 1800.0; "none" -> None
    plan = make_plan(limit, models, costs, k=5, slots=2)  # Plan, or PlanError naming the budget needed

A pure function of measured costs (harness.run.calibrate) and the models' recipes, so it is tested
without training anything. The order of decisions follows what the peers learned
(../shared/BUDGET.md):

1. The stages after training get their share first (export, INT8, benchmarks, ensemble, report):
   a final stage without a budget is how AutoML runs overshoot.
2. Every model trains at least its declared minimum epochs; when even that does not fit, the
   caller (harness.run.budget) tries fewer folds, then `fewer_models` (the dearest left out, the
   cheapest never), and stops before training with the budget it would need on this machine.
3. The time left raises every model's epochs together, from its minimum toward its recipe's
   maximum. The learning-rate schedule is sized to the planned epochs (the recipes' cosine decay
   runs over `epochs`), never a long schedule cut short.
4. Only when every model has its full recipe does time go to bags (`<model>~N`: the same folds
   with other seeds), most expected gain first: a second `cnn_deep` took the ensemble from 146 to
   139 OOF errors, bags of the cheap models bought nothing.
5. Stand-by bags: the bags that would also fit if the jobs ran at STANDBY_SPEED of their costed
   time with no margin. The costs are upper estimates (a 2-hour run's `cnn_deep` folds took 0.79-0.98
   of them and left 45 minutes unused), so these are dealt last, outside the predicted time, and
   the keeper (harness.run.keeper) starts one, with the most epochs that fit, only when the speed
   the jobs really ran at ends it by the training deadline: a budget turns into members when the
   machine allows.

Jobs are one fold of one model (or bag); they are dealt over the slots (local worker processes, Ray
CPUs) in `job_order`: the cheapest model's folds first (the model every run keeps, done before a
machine that slows partway can leave it unstarted at the deadline), then every other model's folds
longest first, then the bags, bag 2 of every model before bag 3, so the work a short-running machine
gives up (harness.run.keeper) is the last bags. The plan's training time is that schedule's makespan.
"""

from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.core.errors import UsageError
from harness.core.names import bag_name, bag_number
from harness.core.progress import fmt_seconds

MARGIN = 0.05           # of the budget, held back for what the costs do not see (drift, stragglers)
MAX_BAGS = 50           # as harness.train.bags
# The ensemble's row after training costs as one model row more: a setup's observed share per row
# is its stages after training divided over the model rows and the ensemble's (observe_stages), so
# every budget of those stages (the plan, the keeper's hard limit, fit_after_training) counts it.
ENSEMBLE_ROWS = 1
STANDBY_SPEED = 0.8     # the fastest the jobs are taken to run against their costs, for stand-by bags


def parse_time_limit(text: str | float | None) -> float | None:
    """'90s', '10m', '1.5h', '2h30m', a number of seconds, or 'none' (None: the fixed recipes).
    Anything else, zero or negative is a UsageError with one line."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        value = str(text).strip().lower()
        if value in ("none", "off"):
            return None
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?", value)
        if not value or parts is None or not any(parts.groups()):
            raise UsageError(f"--time-limit must be a duration such as 90s, 10m, 1.5h or 2h30m, or 'none'; "
                             f"got {text!r}")
        h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = 3600 * h + 60 * m + s
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"--time-limit must be positive, got {text!r}")
    return seconds


@dataclass(frozen=True)
class ModelBudget:
    """A model as the planner sees it: its epochs range and what a bag of it is expected to gain."""
    name: str
    min_epochs: int
    max_epochs: int
    bag_gain: float = 0.0        # expected OOF errors a second bag removes from the ensemble (0: never bag)


@dataclass(frozen=True)
class Costs:
    """Measured on this machine, in the run's layout (harness.run.calibrate): per model, one
    epoch of one fold job and a job's fixed seconds (start, predictions); per model row (the
    ensemble's counted as ENSEMBLE_ROWS more), the stages after training; the run's own fixed
    seconds (data, submission, report), of which `start_s` come before training (data, run folder,
    folds); and each slot's warm-up before its first job."""
    epoch_s: dict[str, float]
    job_s: dict[str, float]
    after_s: dict[str, float]
    run_s: float = 0.0
    warmup_s: float = 0.0        # a worker's start (TensorFlow's import), once per slot before its first job
    start_s: float = 0.0         # of run_s, before training: spent by the time the keeper's clock runs


@dataclass
class Plan:
    limit_s: float
    k: int
    slots: int
    epochs: dict[str, int]
    bags: dict[str, int]
    training_s: float            # the makespan of the training jobs over the slots
    after_s: float               # the stages after training, every row
    run_s: float
    full_recipes: bool = False
    jobs: list[dict[str, Any]] = field(default_factory=list)
    standby: dict[str, int] = field(default_factory=dict)   # stand-by bags after the planned ones

    @property
    def predicted_s(self) -> float:
        return self.training_s + self.after_s + self.run_s

    def as_dict(self) -> dict[str, Any]:
        return {"limit_s": self.limit_s, "k": self.k, "slots": self.slots, "epochs": self.epochs,
                "bags": self.bags, "training_s": round(self.training_s, 1), "after_s": round(self.after_s, 1),
                "run_s": round(self.run_s, 1), "predicted_s": round(self.predicted_s, 1),
                "full_recipes": self.full_recipes, "jobs": self.jobs, "standby": self.standby}


class PlanError(UsageError):
    """The limit is below the cheapest plan on this machine; says what it would need (`need_s`)."""

    def __init__(self, message: str, need_s: float = 0.0):
        super().__init__(message)
        self.need_s = need_s


def standby_bags(plan: dict[str, Any]) -> dict[str, str]:
    """A recorded plan's stand-by bags: each bag's name -> its registered model."""
    return {bag_name(m, plan["bags"][m] + i): m for m, c in (plan.get("standby") or {}).items()
            for i in range(1, c + 1)}


def job_seconds(costs: Costs, model: str, epochs: int) -> float:
    return costs.job_s[model] + epochs * costs.epoch_s[model]


def makespan(durations: list[float], slots: int, busy: list[float] | None = None) -> float:
    """Longest first, each job to the slot that frees first: the end of the last job."""
    return list_schedule(sorted(durations, reverse=True), slots, busy)


def list_schedule(durations: list[float], slots: int, busy: list[float] | None = None, *,
                  own: bool = False) -> float:
    """Jobs in the order given, each to the slot that frees first (`busy`: the seconds until each
    busy slot frees); the end of the last job, busy ones included (`own`: of those given only)."""
    ends = sorted(busy or [])[:max(1, slots)]
    ends += [0.0] * (max(1, slots) - len(ends))
    heapq.heapify(ends)
    last = 0.0
    for d in durations:
        last = max(last, ends[0] + d)
        heapq.heapreplace(ends, ends[0] + d)
    return last if own else max(ends)


def job_order(jobs: list[Any], seconds: Callable[[Any], float], model: Callable[[Any], str],
              standby: Any = (), first: str | None = None) -> list[Any]:
    """The order jobs are handed out: the `first` model's (the cheapest, which the keeper never
    drops: its folds done early, a machine that slows later cannot leave the run without it at
    the deadline), then bag 1 (the models) before bag 2 before bag 3, within a bag index longest
    first (ties keep the given order); the `standby` bags' jobs after all others."""
    return sorted(jobs, key=lambda j: (model(j) in standby, model(j) != first, bag_number(model(j)), -seconds(j)))


def cheapest(names: list[str], seconds: Callable[[str], float]) -> str:
    """The model whose fold job costs least (the first such in `names`): the one every run keeps."""
    return min(names, key=seconds)


def fewer_models(models: list[ModelBudget], costs: Costs) -> list[list[ModelBudget]]:
    """`models`, then without the model whose fold job at its fewest epochs costs most, then without
    the next, down to the cheapest alone: what a budget too short for every model still trains (a
    slow machine's 5 minutes hold `cnn_small` and `ann`, not `cnn_deep`'s fewest epochs)."""
    dear = sorted(models, key=lambda m: -job_seconds(costs, m.name, m.min_epochs))
    return [[m for m in models if m not in dear[:i]] for i in range(len(models))]


def _cost(models: list[ModelBudget], costs: Costs, k: int, slots: int, epochs: dict[str, int],
          bags: dict[str, int], speed: float = 1.0) -> tuple[float, float]:
    """(training makespan, after-training seconds) of a choice of epochs and bags, the jobs taking
    `speed` x their costs."""
    jobs = [(bag_name(m.name, b), speed * job_seconds(costs, m.name, epochs[m.name]))
            for m in models for b in range(1, bags[m.name] + 1) for _ in range(k)]
    after = (sum(costs.after_s[m.name] * bags[m.name] for m in models)
             + ENSEMBLE_ROWS * max(costs.after_s[m.name] for m in models))
    first = cheapest([m.name for m in models], lambda n: job_seconds(costs, n, epochs[n]))
    order = [d for _, d in job_order(jobs, lambda j: j[1], lambda j: j[0], first=first)]
    return list_schedule(order, slots, [costs.warmup_s] * slots), after


def make_plan(limit_s: float, models: list[ModelBudget], costs: Costs, k: int, slots: int,
              spent_s: float = 0.0) -> Plan:
    """The most training that fits in `limit_s` less MARGIN and the `spent_s` already used (the
    calibration); see the module docstring for the order."""
    usable = limit_s * (1 - MARGIN) - spent_s
    bags = {m.name: 1 for m in models}

    def fits(epochs: dict[str, int], bags: dict[str, int]) -> tuple[bool, float, float]:
        train, after = _cost(models, costs, k, slots, epochs, bags)
        return train + after + costs.run_s <= usable, train, after

    lo = {m.name: m.min_epochs for m in models}
    ok, train, after = fits(lo, bags)
    if not ok:
        need = math.ceil((train + after + costs.run_s + spent_s) / (1 - MARGIN))  # rounded up: it must fit
        what = "every model" if len(models) > 1 else f"{models[0].name} alone"
        raise PlanError(f"--time-limit {fmt_seconds(limit_s)} is below the cheapest plan on this machine "
                        f"({what} at its fewest epochs, {k} folds on {slots} slot(s)): it needs about "
                        f"{fmt_seconds(need)}", need_s=need)
    # The largest share f of each model's range (min -> max epochs) that fits, found by bisection:
    # every model gains alike, so none is starved for another's recipe, and more time never
    # means fewer epochs for any model.
    def at(f: float) -> dict[str, int]:
        return {m.name: m.min_epochs + int(math.floor(f * (m.max_epochs - m.min_epochs) + 1e-9)) for m in models}

    best, low, high = lo, 0.0, 1.0
    if fits(at(1.0), bags)[0]:
        best = at(1.0)
    else:
        for _ in range(30):
            mid = (low + high) / 2
            if fits(at(mid), bags)[0]:
                best, low = at(mid), mid
            else:
                high = mid
    full = all(best[m.name] == m.max_epochs for m in models)
    standby: dict[str, int] = {}
    if full:
        bags = _add_bags(models, costs, k, best, bags, lambda more: fits(best, more)[0])

        def fits_fast(more: dict[str, int]) -> bool:  # at the stand-by speed, no margin
            train, after = _cost(models, costs, k, slots, best, more, STANDBY_SPEED)
            return train + after + costs.run_s <= limit_s - spent_s

        more = _add_bags(models, costs, k, best, bags, fits_fast)
        standby = {n: more[n] - bags[n] for n in more if more[n] > bags[n]}
    _, train, after = fits(best, bags)
    jobs = [{"model": m.name, "bags": bags[m.name], "epochs": best[m.name], "min_epochs": m.min_epochs,
             "job_s": round(job_seconds(costs, m.name, best[m.name]), 1)} for m in models]
    return Plan(limit_s=limit_s, k=k, slots=slots, epochs=best, bags=bags, training_s=train, after_s=after,
                run_s=costs.run_s + spent_s, full_recipes=full, jobs=jobs, standby=standby)


def _add_bags(models: list[ModelBudget], costs: Costs, k: int, epochs: dict[str, int], bags: dict[str, int],
              fits: Callable[[dict[str, int]], bool]) -> dict[str, int]:
    """`bags` plus the bags that `fits`, most expected gain per second first, each bag's gain
    halving (diminishing returns)."""
    bags = dict(bags)
    while True:
        options = []
        for m in models:
            if m.bag_gain <= 0 or bags[m.name] >= MAX_BAGS:
                continue
            more = {**bags, m.name: bags[m.name] + 1}
            if fits(more):
                gain = m.bag_gain / 2 ** (bags[m.name] - 1)
                extra = k * job_seconds(costs, m.name, epochs[m.name]) + costs.after_s[m.name]
                options.append((gain / extra, m.name))
        if not options:
            return bags
        bags[max(options)[1]] += 1

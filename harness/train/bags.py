"""Bags: `harness run --bags N` trains each selected model N times, each time with other training
seeds on the same folds, as leaderboard rows of their own (`cnn_deep`, `cnn_deep~2`, ...).

This is how a run buys accuracy with compute (more cores, a Ray cluster, a GPU): Chris Deotte's
99.75 % comes from voting 15 copies of one CNN (`../shared/ACCURACY.md`), and a copy trained with
other seeds makes other mistakes. Each bag is a whole model to every later stage (export, INT8,
benchmark, pseudo-labels), and the ensemble picks among the bags on OOF predictions like among any
models, so nothing downstream needs to know about bags. Bag 1 is the model itself: `--bags 1` (the
default) is exactly the run without the flag.

Bag b of a run with seed s trains its fold f with seed (s + STRIDE * (b - 1)) * 100 + f: the fold
rows, calibration rows and everything else stay those of the run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.core import names
from harness.core.errors import UsageError
from harness.registry import ModelSpec

SEP, name, base, number = names.BAG_SEP, names.bag_name, names.bag_base, names.bag_number  # the bag rows' names (harness.core.names)

MAX_BAGS = 50
STRIDE = 1000  # seed offset between bags: far from the seeds a user passes to neighbouring runs


def check(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_BAGS:
        raise UsageError(f"--bags must be a whole number from 1 to {MAX_BAGS}, got {n!r}")
    return n


def job_seed(seed: int, params: dict[str, Any], fold: int) -> int:
    """The training seed of one fold job (bag 1: the seed a run without bags uses)."""
    return (seed + STRIDE * (int(params.get("bag", 1)) - 1)) * 100 + fold


def expand(specs: list[ModelSpec], params: dict[str, dict[str, Any]], sources: dict[str, str],
           n: int | dict[str, int]) -> tuple[list[ModelSpec], dict[str, dict[str, Any]], dict[str, str]]:
    """Every spec followed by its bags 2..n (`n` for all, or per model: a time-limited run's plan):
    specs, parameters (with `bag`) and parameter sources."""
    counts = n if isinstance(n, dict) else {s.name: n for s in specs}
    if all(counts.get(s.name, 1) == 1 for s in specs):
        return specs, params, sources
    out_specs, out_params, out_sources = [], dict(params), dict(sources)
    for spec in specs:
        out_specs.append(spec)
        for b in range(2, counts.get(spec.name, 1) + 1):
            bag = name(spec.name, b)
            out_specs.append(dataclasses.replace(spec, name=bag, description=f"{spec.description} (bag {b}: "
                                                 f"other training seeds, same folds)"))
            out_params[bag] = {**params[spec.name], "bag": b}
            out_sources[bag] = sources[spec.name]
    return out_specs, out_params, out_sources

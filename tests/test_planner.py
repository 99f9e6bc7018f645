"""The planner (harness.run.planner) as a pure function: costs in, plan out."""

from __future__ import annotations

import pytest

from harness.core.errors import UsageError
from harness.run.planner import Costs, ModelBudget, PlanError, list_schedule, make_plan, makespan, parse_time_limit

MODELS = [ModelBudget("cnn_deep", 8, 30, bag_gain=7.0), ModelBudget("cnn_small", 2, 5),
          ModelBudget("ann", 5, 20)]
# one 2-core machine's figures, roughly: seconds per epoch of one fold job, a job's fixed seconds,
# each row's stages after training, the run's own fixed seconds
COSTS = Costs(epoch_s={"cnn_deep": 60.0, "cnn_small": 25.0, "ann": 6.0},
              job_s={"cnn_deep": 40.0, "cnn_small": 15.0, "ann": 10.0},
              after_s={"cnn_deep": 30.0, "cnn_small": 20.0, "ann": 20.0}, run_s=60.0)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("90", 90), ("10m", 600), ("1.5h", 5400),
                                           ("2h30m", 9000), (" 45S ", 45), (120, 120), ("none", None),
                                           (None, None)])
def test_time_limits_parse(text, seconds):
    assert parse_time_limit(text) == seconds


@pytest.mark.parametrize("text", ["0", "0s", "-5m", "5x", "", "h", "m5", "1.5.2h", "inf", -3])
def test_bad_time_limits_are_usage_errors(text):
    with pytest.raises(UsageError, match="--time-limit"):
        parse_time_limit(text)


def test_makespan_deals_longest_first():
    assert makespan([5, 4, 3, 3, 3], 2) == 10     # 5 | 4, then 3 -> the 4 (7), 3 -> the 5 (8), 3 -> the 7
    assert makespan([10, 1, 1], 4) == 10
    assert makespan([2, 2, 2, 2], 1) == 8


def test_list_schedule_deals_in_order_after_the_busy_slots():
    # two slots busy for 10 and 50 s: the jobs go to the first to free; the end of the last job,
    # or of the jobs given alone (`own`), which may end before a busy slot does
    assert list_schedule([20.0, 5.0], 2, [10.0, 50.0]) == 50.0
    assert list_schedule([20.0, 5.0], 2, [10.0, 50.0], own=True) == 35.0
    assert list_schedule([30.0, 30.0], 2, [10.0, 50.0], own=True) == 70.0   # both after the first to free


@pytest.mark.parametrize("limit", [2400, 3600, 7200, 14400])
def test_the_plan_fits_its_limit(limit):
    plan = make_plan(limit, MODELS, COSTS, k=5, slots=2)
    assert plan.predicted_s <= 0.95 * limit
    for m in MODELS:
        assert m.min_epochs <= plan.epochs[m.name] <= m.max_epochs


def test_below_the_cheapest_plan_names_the_budget_it_needs():
    with pytest.raises(PlanError, match="below the cheapest plan") as e:
        make_plan(300, MODELS, COSTS, k=5, slots=2)
    need = e.value.args[0].rsplit("about ", 1)[1]
    plan = make_plan(parse_time_limit(need), MODELS, COSTS, k=5, slots=2)  # that budget does fit
    assert all(plan.epochs[m.name] >= m.min_epochs for m in MODELS) and plan.predicted_s <= 0.95 * parse_time_limit(need)
    assert e.value.exit_code == 2


def test_more_budget_never_means_fewer_epochs():
    last = None
    for limit in range(2000, 6000, 250):
        epochs = make_plan(limit, MODELS, COSTS, k=5, slots=2).epochs
        if last:
            assert all(epochs[n] >= last[n] for n in epochs), (limit, epochs, last)
        last = epochs


def test_bags_only_once_every_model_has_its_full_recipe():
    tight = make_plan(2400, MODELS, COSTS, k=5, slots=2)
    assert not tight.full_recipes and set(tight.bags.values()) == {1}
    roomy = make_plan(4 * 3600, MODELS, COSTS, k=5, slots=2)
    assert roomy.full_recipes and roomy.epochs == {m.name: m.max_epochs for m in MODELS}
    assert roomy.bags["cnn_deep"] > 1
    assert roomy.bags["cnn_small"] == roomy.bags["ann"] == 1  # no expected gain: never bagged


def test_more_slots_buy_more_members():
    two = make_plan(3 * 3600, MODELS, COSTS, k=5, slots=2)
    eight = make_plan(3 * 3600, MODELS, COSTS, k=5, slots=8)
    assert sum(eight.bags.values()) > sum(two.bags.values())
    assert eight.predicted_s <= 0.95 * 3 * 3600


def test_each_slots_warm_up_delays_its_first_job():
    import dataclasses

    from harness.run.planner import _cost

    cold = dataclasses.replace(COSTS, warmup_s=30.0)
    epochs, bags = {"cnn_deep": 20, "cnn_small": 5, "ann": 10}, {"cnn_deep": 1, "cnn_small": 1, "ann": 1}
    assert _cost(MODELS, cold, 5, 2, epochs, bags)[0] == pytest.approx(_cost(MODELS, COSTS, 5, 2, epochs, bags)[0] + 30)
    for limit in (2400, 3600):   # the plan still fits, and the warm-up costs epochs, never time past the limit
        plan = make_plan(limit, MODELS, cold, k=5, slots=2)
        assert plan.predicted_s <= 0.95 * limit
        assert sum(plan.epochs.values()) <= sum(make_plan(limit, MODELS, COSTS, k=5, slots=2).epochs.values())


def test_time_already_spent_counts_against_the_limit():
    free = make_plan(3600, MODELS, COSTS, k=5, slots=2)
    spent = make_plan(3600, MODELS, COSTS, k=5, slots=2, spent_s=600)
    assert spent.predicted_s <= 0.95 * 3600 and spent.predicted_s - spent.run_s <= 0.95 * 3600 - 600
    assert sum(spent.epochs.values()) < sum(free.epochs.values())
    with pytest.raises(PlanError, match=r"--time-limit 30m00s is below"):
        make_plan(1800, MODELS, COSTS, k=5, slots=2, spent_s=1700)


def test_the_stages_after_training_get_leaner_in_order_and_use_what_was_observed():
    from harness.run.calibrate import After, after_training

    full = After(bench=True, int8=True)
    levels = full.leaner()
    assert [(a.int8, a.short_bench, a.bench) for a in levels] == [
        (True, False, True), (False, False, True), (False, True, True), (False, True, False)]
    assert full.leaner(keep_bench=True)[-1].bench  # --max-latency-ms needs a benchmark
    costs = [sum(after_training(a)) for a in levels]
    assert costs == sorted(costs, reverse=True)    # each level costs less than the one before
    seen = {"after": {levels[1].key: {"per_row_s": 3.0, "run_s": 7.0}}}
    assert after_training(levels[1], seen) == (3.0, 7.0) and after_training(levels[0], seen) == after_training(levels[0])


def test_the_seconds_before_training_are_part_of_the_runs_own_and_not_held_back_by_the_deadline(tmp_path):
    from harness.core import io
    from harness.run.calibrate import START_S, After, before_training, costs_of, observe_after

    probe = {"train_s_per_image": 0.010, "fit_fixed_s": 5.0, "predict_s_per_image": 0.001}
    io.write_json(tmp_path / "calibration.json", {"k": {"probes": {"ann": probe}}})
    record = io.read_json(tmp_path / "calibration.json")["k"]
    assert costs_of(record, rows=1000, k=5, after=After()).start_s == before_training(After()) == START_S
    # a record observed before the start was kept apart: its run's own seconds had it, unsplit
    assert before_training(After(), {"after": {After().key: {"per_row_s": 3.0, "run_s": 4.0}}}) == 4.0
    observe_after(tmp_path, "k", After(), 10.0, 30.0, start_s=12.0)
    record = io.read_json(tmp_path / "calibration.json")["k"]
    costs = costs_of(record, rows=1000, k=5, after=After())
    assert (costs.run_s, costs.start_s) == (30.0, 12.0)
    assert before_training(After(int8=False), record) == START_S  # another level's stages: not observed


def test_the_plan_counts_the_ensembles_row_after_training_as_the_observed_share_was_taken():
    # observe_stages divides the stages after training (the ensemble's export, benchmark and INT8
    # among them) over the model rows and the ensemble's: a plan of the same rows must get them all
    # back (one that counted the model rows alone planned a 2-hour run's 594 s at 509)
    stages_s, rows = 594.0, 3
    per_row = stages_s / (rows + 1)
    costs = Costs(epoch_s=COSTS.epoch_s, job_s=COSTS.job_s, after_s={m.name: per_row for m in MODELS},
                  run_s=COSTS.run_s)
    plan = make_plan(3600, MODELS, costs, k=5, slots=2)
    assert sum(plan.bags.values()) == rows and plan.after_s == pytest.approx(stages_s)
    bagged = make_plan(14400, MODELS, costs, k=5, slots=2)
    assert bagged.after_s == pytest.approx(per_row * (sum(bagged.bags.values()) + 1))


def test_stages_not_taken_yet_cost_no_more_than_richer_ones_taken():
    # the leanest stages (no benchmark) are a run's last resort: held back at their estimate where
    # this setup's short benchmarks, which do more, took less, they cut a 5-minute run's grace
    from harness.run.calibrate import After, after_training

    leanest, short = After(bench=False, int8=False), After(int8=False, short_bench=True)
    taken = {"after": {short.key: {"per_row_s": 1.0, "run_s": 2.0}}}
    assert after_training(leanest, taken) == (1.0, 2.0) and after_training(leanest, taken, spent_s=1.5) == (1.0, 0.5)
    assert after_training(After(int8=False), taken) == after_training(After(int8=False))   # not covered: more work
    dear = {"after": {short.key: {"per_row_s": 99.0, "run_s": 99.0}}}
    assert after_training(leanest, dear) == after_training(leanest)                  # the estimate, when lower
    assert After(bench=True).covers(After(short_bench=True)) and not After(short_bench=True).covers(After())
    assert short in leanest.richer() and After() in short.richer() and short not in After().richer()


def test_observed_figures_are_the_median_of_the_latest_runs(tmp_path):
    from harness.core import io
    from harness.run.calibrate import RECENT, After, costs_of, observe, observe_after

    probe = {"train_s_per_image": 0.010, "fit_fixed_s": 5.0, "predict_s_per_image": 0.001}
    # an entry of one run, as written before runs were kept, counts as that run
    io.write_json(tmp_path / "calibration.json", {"k": {"probes": {"cnn_deep": probe}, "observed": {
        "cnn_deep": {"train_s_per_image": 0.008, "job_fixed_s": 30.0, "observed": "then"}}}})

    def per_image() -> float:
        record = io.read_json(tmp_path / "calibration.json")["k"]
        return costs_of(record, rows=1000, k=5, after=After()).epoch_s["cnn_deep"] / 800

    observe(tmp_path, "k", "cnn_deep", 0.0082, 31.0)
    assert per_image() == pytest.approx(0.0081)           # the median of two: their mean
    observe(tmp_path, "k", "cnn_deep", 0.0160, 60.0)      # one run slowed by something else
    assert per_image() == pytest.approx(0.0082)           # moves the median of three by nothing
    for _ in range(RECENT - 1):
        observe(tmp_path, "k", "cnn_deep", 0.0160, 60.0)  # a machine that stays slower: followed
    assert per_image() == pytest.approx(0.0160)
    assert len(io.read_json(tmp_path / "calibration.json")["k"]["observed"]["cnn_deep"]["runs"]) == RECENT
    observe(tmp_path, "other", "cnn_deep", 1.0, 1.0)      # an unknown setup: nothing is written
    assert set(io.read_json(tmp_path / "calibration.json")) == {"k"}

    for per_row, run_s in ((10.0, 20.0), (50.0, 90.0), (11.0, 21.0)):
        observe_after(tmp_path, "k", After(), per_row, run_s)
    seen = io.read_json(tmp_path / "calibration.json")["k"]["after"][After().key]
    assert (seen["per_row_s"], seen["run_s"]) == (11.0, 21.0)


def test_stand_by_bags_fit_only_at_the_faster_speed_and_stay_out_of_the_prediction():
    from harness.run.planner import STANDBY_SPEED, _cost

    for limit in (3 * 3600, 5 * 3600):
        plan = make_plan(limit, MODELS, COSTS, k=5, slots=2)
        assert plan.full_recipes and plan.standby.get("cnn_deep", 0) >= 1
        assert set(plan.standby) <= {m.name for m in MODELS if m.bag_gain > 0}
        assert plan.predicted_s <= 0.95 * limit          # the prediction is the planned bags' alone
        every = {n: plan.bags[n] + plan.standby.get(n, 0) for n in plan.bags}
        train, after = _cost(MODELS, COSTS, 5, 2, plan.epochs, every)
        assert train + after + COSTS.run_s > 0.95 * limit   # at the costed speed they would not fit
        fast, after = _cost(MODELS, COSTS, 5, 2, plan.epochs, every, STANDBY_SPEED)
        assert fast + after + COSTS.run_s <= limit          # at the stand-by speed they do
    assert make_plan(2400, MODELS, COSTS, k=5, slots=2).standby == {}   # cut recipes: no bags of any kind


def _slow_avx2_plan(monkeypatch, tmp_path, limit: float):
    """plan_run on an AVX2-only EPYC's calibration (per slot, float32, 2 slots; as measured on a
    machine at the family-23 probe's speed): `cnn_deep`'s 7 fewest epochs take ~9 minutes a fold."""
    from types import SimpleNamespace

    import numpy as np

    from harness.run.budget import plan_run
    from harness.run.options import RunOptions

    probes = {"ann": (0.000539, 5.1, 0.000167), "cnn_deep": (0.003547, 0.0, 0.00049),
              "cnn_small": (0.000539, 7.6, 0.000164)}
    record = {"probes": {m: {"train_s_per_image": t, "fit_fixed_s": f, "predict_s_per_image": p}
                         for m, (t, f, p) in probes.items()}, "slots": 2, "seconds": 155.0, "cached": True}
    monkeypatch.setattr("harness.run.calibrate.calibrate", lambda *a, **k: record)
    specs = [SimpleNamespace(name=n, min_epochs=None, bag_gain=g) for n, g in (("ann", 0), ("cnn_deep", 7), ("cnn_small", 0))]
    params = {"ann": {"epochs": 20, "quick_epochs": 3}, "cnn_deep": {"epochs": 30, "quick_epochs": 7},
              "cnn_small": {"epochs": 5, "quick_epochs": 2}}
    data = SimpleNamespace(x_train=np.zeros((42_000, 1)), y_train=np.zeros(42_000), x_test=np.zeros((28_000, 1)),
                           competition=SimpleNamespace(n_classes=10))
    lines: list[str] = []
    budget = plan_run(RunOptions(all_models=True, quick=limit <= 300, time_limit=limit),
                      SimpleNamespace(cache_dir=tmp_path), specs, params, data, k=5, seed=0,
                      progress=SimpleNamespace(stage=lines.append))
    return budget, lines


def test_fewer_models_drops_the_dearest_first_and_keeps_the_cheapest():
    from harness.run.planner import fewer_models

    kept = [[m.name for m in ms] for ms in fewer_models(MODELS, COSTS)]
    assert kept == [["cnn_deep", "cnn_small", "ann"], ["cnn_small", "ann"], ["ann"]]  # ann: 28 s at 3 epochs


def test_a_budget_too_short_for_every_model_plans_without_the_dearest(monkeypatch, tmp_path):
    budget, lines = _slow_avx2_plan(monkeypatch, tmp_path, 300)
    plan = budget["plan"]
    assert budget["left_out"] == ["cnn_deep"] and set(plan["epochs"]) == {"ann", "cnn_small"}
    assert plan["predicted_s"] <= 0.95 * 300
    need = lines[-1].split("every model needs about ", 1)[1].split(" ")[0]
    assert "left out cnn_deep" in lines[-1] and parse_time_limit(need) > 300
    roomy, _ = _slow_avx2_plan(monkeypatch, tmp_path, parse_time_limit(need))   # the budget it named
    assert roomy["left_out"] == [] and set(roomy["plan"]["epochs"]) == {"ann", "cnn_deep", "cnn_small"}
    default, _ = _slow_avx2_plan(monkeypatch, tmp_path, 1800)
    assert default["left_out"] == [] and default["plan"]["k"] >= 2


def test_below_the_cheapest_models_plan_names_it(monkeypatch, tmp_path):
    with pytest.raises(PlanError, match=r"\(cnn_small alone at its fewest epochs, 2 folds on 2 slot\(s\)\): it needs about"):
        _slow_avx2_plan(monkeypatch, tmp_path, 60)


def test_a_model_not_probed_yet_is_estimated_optimistically_from_flops():
    from harness.run.calibrate import HOPE, _worth

    probes = {"ann": {"train_s_per_image": 0.002}, "cnn_small": {"train_s_per_image": 0.003}}
    flops = {"ann": 4_000_000, "cnn_small": 5_000_000, "cnn_deep": 30_000_000}
    asked: list[tuple] = []

    def worth(model: str, s_per_image: float, elapsed: float, probed: dict, slots: int) -> bool:
        asked.append((model, s_per_image, elapsed, set(probed), slots))
        return s_per_image < 0.008

    # the fastest seconds per FLOP of the probed (ann: 5e-10 s) at HOPE: 30 MFLOPs -> 0.015 s x HOPE
    assert _worth("cnn_deep", probes, flops, worth, 12.0, 2) is (HOPE * 0.015 < 0.008)
    assert asked == [("cnn_deep", pytest.approx(HOPE * 0.015), 12.0, {"ann", "cnn_small"}, 2)]
    # nothing to go by: probed
    assert _worth("cnn_deep", {}, flops, worth, 0.0, 2) and _worth("x", probes, flops, worth, 0.0, 2)
    assert _worth("cnn_deep", probes, flops, None, 0.0, 2) and len(asked) == 1

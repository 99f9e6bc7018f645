"""Bags (harness.train.bags): `--bags N` adds `<model>~2..N`, trained with other seeds on the same folds;
bag 1 is the model exactly as a run without the flag trains it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.core.errors import UsageError
from harness.registry import get_model
from harness.train import bags
from tests.conftest import harness_cli


def test_names_seeds_and_bad_values():
    assert bags.name("cnn_deep", 1) == "cnn_deep" and bags.name("cnn_deep", 3) == "cnn_deep~3"
    assert bags.base("cnn_deep~3") == "cnn_deep" and bags.base("cnn_deep") == "cnn_deep"
    assert bags.base("odd~name") == "odd~name"  # only a numeric tail is a bag
    assert bags.job_seed(42, {}, 3) == 4203 == bags.job_seed(42, {"bag": 1}, 3)  # the seed runs always used
    assert bags.job_seed(42, {"bag": 2}, 3) == 104203
    seeds = {bags.job_seed(42, {"bag": b}, f) for b in range(1, bags.MAX_BAGS + 1) for f in range(20)}
    assert len(seeds) == bags.MAX_BAGS * 20 and max(seeds) < 2 ** 31
    for bad in (0, -1, bags.MAX_BAGS + 1, True, 2.0):
        with pytest.raises(UsageError, match="--bags"):
            bags.check(bad)


def test_expand_adds_each_models_bags_after_it():
    specs = [get_model("ann_tiny"), get_model("cnn_tiny")]
    params = {s.name: s.params() for s in specs}
    sources = {s.name: "model defaults" for s in specs}
    assert bags.expand(specs, params, sources, 1) == (specs, params, sources)
    out, p, src = bags.expand(specs, params, sources, 3)
    assert [s.name for s in out] == ["ann_tiny", "ann_tiny~2", "ann_tiny~3", "cnn_tiny", "cnn_tiny~2", "cnn_tiny~3"]
    assert p["cnn_tiny~2"] == {**params["cnn_tiny"], "bag": 2} and "bag" not in p["cnn_tiny"]
    assert out[1].builder is specs[0].builder and out[1].family == specs[0].family and src["ann_tiny~3"] == "model defaults"


TINY = ["--model", "ann_tiny", "--limit", "1200", "--folds", "2", "--epochs", "1", "--deterministic",
        "--no-bench", "--no-report", "--no-int8", "--json"]


@pytest.mark.e2e
def test_bags_are_models_of_their_own_and_bag_one_is_the_plain_model(project: Path):
    bad = harness_cli("run", *TINY, "--bags", "0", cwd=project, timeout=120)
    assert bad.returncode == 2 and "--bags" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1

    plain = harness_cli("run", *TINY, cwd=project, timeout=600)
    assert plain.returncode == 0, plain.stderr
    plain_run = Path(json.loads(plain.stdout)["run_dir"])

    bagged = harness_cli("run", *TINY, "--bags", "2", cwd=project, timeout=600)
    assert bagged.returncode == 0, bagged.stderr
    out = json.loads(bagged.stdout)
    run = Path(out["run_dir"])
    assert run != plain_run  # another fingerprint: never resumes (or prunes) a run of other bags
    assert {"ann_tiny", "ann_tiny~2", "ensemble"} <= {r["model"] for r in out["rows"]}

    # Bag 1 is the plain model, bit for bit; bag 2 trained with other seeds on the same folds.
    np.testing.assert_array_equal(np.load(run / "ann_tiny" / "oof.npy"), np.load(plain_run / "ann_tiny" / "oof.npy"))
    np.testing.assert_array_equal(np.load(run / "folds.npy"), np.load(plain_run / "folds.npy"))
    assert not np.array_equal(np.load(run / "ann_tiny~2" / "oof.npy"), np.load(run / "ann_tiny" / "oof.npy"))
    seeds = {m: [json.loads((run / m / f"fold_{f}" / "fold.json").read_text())["seed"] for f in range(2)]
             for m in ("ann_tiny", "ann_tiny~2")}
    assert seeds == {"ann_tiny": [4200, 4201], "ann_tiny~2": [104200, 104201]}
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["bags"] == 2 and manifest["params"]["ann_tiny~2"]["bag"] == 2
    assert (run / "ann_tiny~2" / "model.onnx").is_file()  # exported behind the parity gate like any model


@pytest.mark.e2e
@pytest.mark.integration  # a longer end-to-end run: CI's second step (README, Tests)
def test_a_bags_pseudo_label_fine_tune_starts_from_its_own_bag(project: Path):
    out = harness_cli("run", *TINY, "--bags", "2", "--pseudo-label", "0.5", cwd=project, timeout=900)
    assert out.returncode == 0, out.stderr
    run = Path(json.loads(out.stdout)["run_dir"])
    assert {"ann_tiny+pl", "ann_tiny~2+pl"} <= {r["model"] for r in json.loads(out.stdout)["rows"]}
    fold = json.loads((run / "ann_tiny~2+pl" / "fold_0" / "fold.json").read_text())
    assert fold["seed"] == 104200  # bag 2's seeds; the fine-tune's weights came from ann_tiny~2 (harness.train.jobs)
    assert fold["init_from"] == "ann_tiny~2/fold_0/model.keras"

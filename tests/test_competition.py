"""Competitions other than Digit Recognizer: the spec (harness.core.competition), files in another
competition's format (Kannada-MNIST's, made from the replica), and a generated dataset of another
image size, channel count and class count through every stage: data, training, ONNX parity, INT8,
benchmark, submission, local scoring, report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from harness.core.competition import DIGIT_RECOGNIZER, KANNADA_MNIST, load_spec, resolve_competition, spec_from_dict
from harness.core.errors import UsageError
from harness.kaggle.formats import schemas, write_table
from tests.conftest import harness_cli

SPEC = """
slug = "shapes-16"
title = "Shapes 16x16"
image = [16, 16, 3]
classes = ["square", "bar", "cross", "ring", "dot"]
id_column = "Id"
id_start = 1
submission_label = "Category"
"""


# --- the spec -----------------------------------------------------------------------------------

def test_built_ins_and_a_written_spec(tmp_path: Path):
    assert resolve_competition(None) is DIGIT_RECOGNIZER
    assert resolve_competition("kannada-mnist") is KANNADA_MNIST  # slugs match case-insensitively
    assert KANNADA_MNIST.submission_header == ("id", "label") and KANNADA_MNIST.id_start == 0
    assert DIGIT_RECOGNIZER.submission_header == ("ImageId", "Label") and DIGIT_RECOGNIZER.shape == (28, 28, 1)
    shipped = resolve_competition(str(Path(__file__).parents[1] / "examples" / "fashion-mnist.toml"))
    assert shipped.slug == "fashion-mnist" and shipped.classes[-1] == "Ankle boot" and not shipped.augment
    path = tmp_path / "shapes.toml"
    path.write_text(SPEC)
    comp = resolve_competition(str(path))
    assert comp.shape == (16, 16, 3) and comp.n_classes == 5 and comp.classes[2] == "cross"
    assert comp.pixel_columns[:2] == ("pixel0", "pixel1") and len(comp.pixel_columns) == 768
    assert comp.submission_header == ("Id", "Category") and not comp.kaggle
    # the same spec as a [competition] table of harness.toml
    (tmp_path / "harness.toml").write_text("[competition]\n" + SPEC)
    assert load_spec(tmp_path / "harness.toml") == dataclasses.replace(comp, origin=str(tmp_path / "harness.toml"))


@pytest.mark.parametrize("doc, mistakes", [
    ({}, ["slug: missing"]),
    ({"slug": "x", "classes": ["a", "b", "a"]}, ["classes: duplicate class name(s): 'a'"]),
    ({"slug": "x", "image": [28, 28]}, ["image: must be [height, width, channels]"]),
    ({"slug": "x", "image": [28, 28, 2]}, ["image: channels must be 1 (grayscale) or 3 (RGB)"]),
    ({"slug": "x", "metric": "auc"}, ["metric: 'auc' is not supported"]),
    ({"slug": "x", "classes": 3, "labels": [0, 2]}, ["labels: 2 values for 3 classes"]),
    ({"slug": "x y", "colour": 1, "train": "../train.csv"},
     ["colour: unknown key", "slug: 'x y'", "train: '../train.csv': a CSV file name"]),
])
def test_a_bad_spec_is_one_line_per_mistake(doc: dict, mistakes: list[str]):
    with pytest.raises(UsageError) as e:
        spec_from_dict(doc, "spec.toml")
    lines = str(e.value).splitlines()
    assert len(lines) == len(mistakes) and e.value.exit_code == 2
    for line, want in zip(lines, mistakes):
        assert line.startswith("spec.toml: ") and want in line


def test_bad_specs_and_data_at_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('slug = "x"\nclasses = ["a", "a"]\nimage = [16, 16]\n')
    proc = harness_cli("data", "--competition", str(bad), cwd=tmp_path)
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if "bad.toml" in line][1:]  # one line per mistake
    assert "duplicate class name" in proc.stderr and "image: must be" in proc.stderr
    unknown = harness_cli("data", "--competition", "cifar-99", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown competition 'cifar-99'" in unknown.stderr

    # a spec whose image shape does not match the files' pixel columns: exit 3, one line
    spec = tmp_path / "shapes.toml"
    spec.write_text(SPEC)
    data = tmp_path / "mismatch"
    data.mkdir()
    digits = DIGIT_RECOGNIZER
    write_table(data / "train.csv", schemas(digits)["train"].columns, np.zeros((10, 785), np.uint8))
    write_table(data / "test.csv", schemas(digits)["test"].columns, np.zeros((4, 784), np.uint8))
    write_table(data / "sample_submission.csv", ("Id", "Category"), np.array([[1, 0], [2, 0], [3, 0], [4, 0]]))
    proc = harness_cli("data", "--competition", str(spec), "--data-dir", str(data), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and "train.csv: header: 785 columns, expected 769" in proc.stderr
    # a missing label column
    write_table(data / "train.csv", schemas(digits)["test"].columns, np.zeros((10, 784), np.uint8))
    proc = harness_cli("data", "--data-dir", str(data), cwd=tmp_path)
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1 and "header" in proc.stderr


# --- Kannada-MNIST's format, made from the replica ----------------------------------------------

def test_kannada_format_runs_and_submits_in_its_format(project: Path, replica_dir: Path):
    from harness.data.dataset import load

    digits = load(replica_dir)
    data = project / "kannada"
    data.mkdir()
    layouts = schemas(KANNADA_MNIST)
    x_tr, y_tr = digits.x_train[:1500].reshape(1500, -1), digits.y_train[:1500]
    x_te = digits.x_test[:300].reshape(300, -1)
    write_table(data / "train.csv", layouts["train"].columns, np.column_stack([y_tr, x_tr]))
    write_table(data / "test.csv", layouts["test"].columns, np.column_stack([np.arange(300), x_te]))
    write_table(data / "sample_submission.csv", ("id", "label"), np.column_stack([np.arange(300), np.zeros(300, int)]))
    assert (data / "test.csv").read_text().split("\n", 1)[0].startswith("id,pixel0,")
    env = {"HARNESS_DATA_DIR": ""}
    info = harness_cli("data", "--competition", "Kannada-MNIST", "--data-dir", str(data), "--json", cwd=project,
                       env=env, check=True)
    assert json.loads(info.stdout)["rows"] == {"train": 1500, "test": 300, "sample_submission": 300}
    assert not (data / ".cache").exists()  # parsed arrays live under HARNESS_CACHE, not beside the data
    proc = harness_cli("run", "--competition", "Kannada-MNIST", "--data-dir", str(data), "--model", "ann_tiny",
                       "--folds", "2", "--epochs", "1", "--no-bench", "--json", cwd=project, env=env)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    run = Path(results["run_dir"])
    lines = (project / "submissions" / f"{run.name}.csv").read_text().splitlines()
    assert lines[0] == "id,label" and len(lines) == 301
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(300))  # ids from 0, as test.csv has them
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["competition"]["slug"] == "Kannada-MNIST"
    html = (project / "reports" / f"{run.name}.html").read_text()
    assert "Kannada MNIST run" in html and "9 (ombattu)" in html  # class names reach the report
    scored = harness_cli("score", str(project / "submissions" / f"{run.name}.csv"), "--competition",
                         "Kannada-MNIST", "--data-dir", str(data), "--json", cwd=project, env=env, check=True)
    assert json.loads(scored.stdout)["valid"] and json.loads(scored.stdout)["score"] is None  # no answers here
    wrong = project / "digits-format.csv"
    wrong.write_text("ImageId,Label\n" + "".join(f"{i + 1},0\n" for i in range(300)))
    refused = harness_cli("score", str(wrong), "--competition", "Kannada-MNIST", "--data-dir", str(data),
                          cwd=project, env=env)
    assert refused.returncode == 6 and "header: column 1 is 'ImageId', expected 'id'" in refused.stderr


# --- another shape and class count through every stage ------------------------------------------

def _shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 RGB images of five drawn classes (a square, a bar, a cross, a ring, a dot) at random
    places and colours, with noise: learnable in an epoch, not trivially."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, size=(n, 16, 16, 3)).astype(np.int32)
    y = rng.integers(0, 5, size=n)
    masks = np.zeros((5, 16, 16), bool)
    masks[0, 4:12, 4:12] = True
    masks[1, 2:14, 7:9] = True
    masks[2, 7:9, 2:14] = True
    masks[2, 2:14, 7:9] = True
    masks[3, 3:13, 3:13] = True
    masks[3, 5:11, 5:11] = False
    masks[4, 6:10, 6:10] = True
    for i in range(n):
        m = np.roll(masks[y[i]], (rng.integers(-2, 3), rng.integers(-2, 3)), axis=(0, 1))
        x[i][m] += rng.integers(160, 216, size=3)
    return np.clip(x, 0, 255).astype(np.uint8), y


@pytest.mark.e2e
def test_another_shape_through_every_stage(project: Path):
    x_train, y_train = _shapes(1200, 0)
    x_test, y_test = _shapes(400, 1)
    np.savez(project / "shapes.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    (project / "shapes.toml").write_text(SPEC)
    env = {"HARNESS_DATA_DIR": ""}
    common = ["--competition", "shapes.toml"]
    made = harness_cli("data", *common, "--source", "npz", "--path", "shapes.npz", "--json", cwd=project, env=env,
                       check=True)
    info = json.loads(made.stdout)
    assert info["data_dir"] == "data/shapes-16" and info["rows"]["test"] == 400 and info["solution"]
    header = (project / "data/shapes-16/train.csv").read_text().split("\n", 1)[0].split(",")
    assert header[0] == "label" and header[-1] == "pixel767"
    proc = harness_cli("run", *common, "--model", "ann_tiny", "--model", "cnn_tiny", "--folds", "2", "--epochs", "2",
                       "--int8", "--json", cwd=project, env=env)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    run = Path(results["run_dir"])
    rows = {r["model"]: r for r in results["rows"]}
    for model in ("ann_tiny", "cnn_tiny"):
        export = json.loads((run / model / "export.json").read_text())
        assert export["ok"] and export["n_parity"] >= 400 and export["max_abs_diff"] <= 1e-4  # parity gate
        assert "[batch,16,16,3]" in export["metadata"]["input"] and "[batch,5]" in export["metadata"]["output"]
        assert json.loads((run / model / "bench.json").read_text())["latency"]
        assert np.load(run / model / "oof.npy").shape == (1200, 5)
    assert any(name.endswith("@int8") for name in rows)  # an INT8 row (gated on OOF, kept or refused with a reason)
    sub = (project / "submissions" / f"{run.name}.csv").read_text().splitlines()
    assert sub[0] == "Id,Category" and len(sub) == 401 and sub[1].startswith("1,")
    assert results["submission"]["private"] is not None and results["submission"]["overall"] > 0.4
    assert rows[results["best"]]["cv_accuracy"] > 0.4  # five classes: chance is 0.2
    # no policy pinned: a probe chose one on OOF errors, the same rows and seeds for each
    augmentation = json.loads((run / "manifest.json").read_text())["augmentation"]
    assert augmentation["chosen_by"] == "probe" and set(augmentation["policies"]) == {"digits", "objects", "none"}
    errors = {p: f["errors"] for p, f in augmentation["policies"].items()}
    assert errors[augmentation["policy"]] == min(errors.values())
    html = (project / "reports" / f"{run.name}.html").read_text()
    assert "Shapes 16x16 run" in html and "cross" in html and "Augmentation policy: " in html
    scored = harness_cli("score", f"submissions/{run.name}.csv", *common, "--json", cwd=project, env=env, check=True)
    assert json.loads(scored.stdout)["score"]["overall"] == pytest.approx(results["submission"]["overall"])


def test_a_model_refuses_images_smaller_than_its_downsampling(project: Path):
    (project / "tiny.toml").write_text('slug = "tiny-8"\nimage = [8, 8, 1]\nclasses = 3\n')
    rng = np.random.default_rng(0)
    np.savez(project / "tiny.npz", x_train=rng.integers(0, 256, (60, 8, 8), dtype=np.uint8),
             y_train=rng.integers(0, 3, 60), x_test=rng.integers(0, 256, (9, 8, 8), dtype=np.uint8),
             y_test=rng.integers(0, 3, 9))
    env = {"HARNESS_DATA_DIR": ""}
    harness_cli("data", "--competition", "tiny.toml", "--source", "npz", "--path", "tiny.npz", cwd=project, env=env,
                check=True)
    proc = harness_cli("run", "--competition", "tiny.toml", "--model", "cnn_tiny", "--folds", "2", "--epochs", "1",
                       cwd=project, env=env)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 4 and last.startswith("harness: error: ")
    assert "model 'cnn_tiny': its two conv-pool blocks need images of at least 10x10 pixels, got 8x8" in last


def test_probe_rows_follow_the_time_limit():
    from harness.run.options import RunOptions
    from harness.run.policy import MIN_PROBE_ROWS, PROBE_ROWS, probe_rows

    untimed = RunOptions(time_limit=None)
    assert probe_rows(untimed, 60_000, None, 5, 2) == PROBE_ROWS
    assert probe_rows(untimed, 3_000, None, 5, 2) == 3_000
    # 30 minutes, 1 ms per image, 5 epochs, 3 policies on 2 slots: 5 % of 1800 s holds 8,000 rows
    assert probe_rows(RunOptions(time_limit=1800), 60_000, 1e-3, 5, 2) == PROBE_ROWS
    short = probe_rows(RunOptions(time_limit=300), 60_000, 1e-3, 5, 2)
    assert MIN_PROBE_ROWS <= short < PROBE_ROWS
    assert short * 1e-3 * 5 * 3 / 2 <= 0.05 * 300 + 1e-9  # the probe's training: within 5 % of the limit
    assert probe_rows(RunOptions(time_limit=60), 60_000, 1e-3, 5, 2) == MIN_PROBE_ROWS
    # without a calibrated speed, in proportion to the limit
    assert probe_rows(RunOptions(time_limit=900), 60_000, None, 5, 2) == PROBE_ROWS // 2


def test_the_competition_setting_moves_the_default_data_folder(tmp_path: Path):
    from harness.core.config import load_settings

    assert load_settings(tmp_path, {}).data_dir == Path("data/digit-recognizer")
    settings = load_settings(tmp_path, {"HARNESS_COMPETITION": "Kannada-MNIST"})
    assert settings.competition is KANNADA_MNIST and settings.data_dir == Path("data/Kannada-MNIST")
    assert load_settings(tmp_path, {"HARNESS_COMPETITION": "Kannada-MNIST", "HARNESS_DATA_DIR": "mine"}).data_dir \
        == Path("mine")  # a data folder given wins
    (tmp_path / "harness.toml").write_text("[competition]\n" + SPEC)  # the spec inline, in the project's settings
    settings = load_settings(tmp_path, {})
    assert settings.competition.slug == "shapes-16" and settings.data_dir == Path("data/shapes-16")
    (tmp_path / "harness.toml").write_text('competition = "specs/shapes.toml"\n')  # relative to the project
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "shapes.toml").write_text(SPEC)
    assert load_settings(tmp_path, {}).competition.shape == (16, 16, 3)

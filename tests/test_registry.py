"""The model registry: registration, lookup, wildcards, duplicates, entry points, params."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from harness import registry
from harness.core.errors import ModelError
from tests.conftest import harness_cli


def test_builtins_are_discovered_with_their_source():
    names = [s.name for s in registry.list_models()]
    assert {"ann", "cnn_small", "cnn_deep", "ann_tiny", "cnn_tiny", "cnn_deep_tiny"} <= set(names)
    assert registry.get_model("cnn_small").source == "models/cnn.py"
    assert registry.get_model("ann").family == "ann"


def test_wildcards_and_tiny_filter():
    assert [s.name for s in registry.list_models("cnn*")] == ["cnn_deep", "cnn_deep_tiny", "cnn_small", "cnn_tiny"]
    assert all(not s.tiny for s in registry.list_models(include_tiny=False))
    assert [s.name for s in registry.select_models(None, all_models=True)] == ["ann", "cnn_deep", "cnn_small"]
    assert [s.name for s in registry.select_models(["cnn_small", "ann*"], False)] == ["cnn_small", "ann", "ann_tiny"]


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(ModelError) as e:
        registry.get_model("cnn_smal")
    msg = str(e.value)
    assert "did you mean 'cnn_small'" in msg and "known: ann" in msg
    with pytest.raises(ModelError, match="no model matches 'zz\\*'"):
        registry.select_models(["zz*"], False)


def test_duplicate_name_is_an_error():
    @registry.register_model("dup_probe", family="ann", description="x")
    def first():  # pragma: no cover - never built
        return None

    try:
        with pytest.raises(ModelError, match="registered twice"):
            @registry.register_model("dup_probe", family="ann", description="y")
            def second():  # pragma: no cover
                return None
    finally:
        registry.unregister_model("dup_probe")


def test_params_merge_defaults_recipe_and_overrides():
    spec = registry.get_model("cnn_small")
    p = spec.params({"learning_rate": 0.01, "epochs": None, "width": 16})
    assert p["learning_rate"] == 0.01 and p["width"] == 16
    assert p["epochs"] == spec.recipe["epochs"]  # None keeps the model's default
    with pytest.raises(ModelError, match="has no parameter 'widht'.*did you mean 'width'"):
        spec.params({"widht": 3})
    with pytest.raises(ModelError, match="must be a number"):
        spec.params({"dropout": "lots"})


def test_unknown_recipe_field_is_an_error():
    with pytest.raises(ModelError, match="unknown recipe field"):
        registry.register_model("bad_recipe", family="ann", description="x", recipe={"epoch": 3})


def _fake_distribution(tmp_path: Path) -> Path:
    """A third-party package installed only as files on sys.path, with a harness.models entry point."""
    (tmp_path / "fake_harness_plugin.py").write_text(textwrap.dedent('''
        from harness.registry import register_model

        @register_model("fake_mlp", family="ann", description="from a third-party package", tiny=True)
        def fake_mlp(width: int = 8):
            import keras
            x = keras.Input((28, 28, 1))
            y = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
            return keras.Model(x, y)
    '''))
    dist = tmp_path / "fake_harness_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-harness-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[harness.models]\nfake = fake_harness_plugin\n")
    return tmp_path


def test_entry_point_plugin_registers(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_fake_distribution(tmp_path)))
    try:
        registry.discover(force=True)
        spec = registry.get_model("fake_mlp")
        assert spec.source == "entry point fake (fake-harness-plugin)"
        assert spec.build().output_shape == (None, 10)
    finally:
        registry.unregister_model("fake_mlp")
        sys.modules.pop("fake_harness_plugin", None)


def test_broken_entry_point_is_a_clear_error(tmp_path, monkeypatch):
    root = _fake_distribution(tmp_path)
    (root / "fake_harness_plugin.py").write_text("raise RuntimeError('boom')\n")
    sys.path.insert(0, str(root))
    try:
        with pytest.raises(ModelError, match="fake_harness_plugin.*failed to load: RuntimeError: boom"):
            registry.discover(force=True)
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("fake_harness_plugin", None)
        import importlib

        importlib.invalidate_caches()
        registry.discover(force=True)  # leave the registry as the other tests expect it


def test_models_cli_lists_entry_point_plugin(tmp_path):
    root = _fake_distribution(tmp_path)
    proc = harness_cli("models", "fake*", "--json", cwd=tmp_path, env={"PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == ["fake_mlp"]
    assert rows[0]["params"] == 7850 and "fake-harness-plugin" in rows[0]["source"]


def test_models_cli_text_and_unknown_pattern(tmp_path):
    proc = harness_cli("models", "cnn_s*", "--no-params", cwd=tmp_path)
    assert proc.returncode == 0
    assert "cnn_small" in proc.stdout and "models/cnn.py" in proc.stdout and "ann" not in proc.stdout
    proc = harness_cli("models", "nothing*", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "" and "no model matches" in proc.stderr


def test_names_that_would_read_as_derived_rows_are_refused():
    for bad in ("cnn~2", "cnn+pl", "cnn@int8", "a/b", "", "_x"):
        with pytest.raises(ModelError, match="model name"):
            registry.register_model(bad, family="ann", description="x")

"""The wheel holds every module and template of the checkout: a package missing from
pyproject.toml works from the checkout and is absent from what users install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration  # builds a wheel (pip fetches setuptools for the build)


def test_the_wheel_holds_every_module_and_template(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("harness-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    wanted = {p.relative_to(ROOT).as_posix() for p in (ROOT / "harness").rglob("*")
              if p.is_file() and p.suffix in (".py", ".html", ".css", ".js") and "__pycache__" not in p.parts}
    wanted |= {"harness_models/" + p.name for p in (ROOT / "models").glob("*.py")}
    missing = sorted(wanted - inside)
    assert not missing, f"not in the wheel: {missing}"

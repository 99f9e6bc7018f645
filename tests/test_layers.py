"""The house: harness's packages in one order, bottom up, with no import running back up and no
import circle between modules (imports inside functions and under TYPE_CHECKING count too: a
circle hidden in a function is still a circle). docs/ARCHITECTURE.md draws the same order."""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"

# Bottom up: a module may import from its own layer and the layers below it, never above.
LAYERS = ["core", "registry", "kaggle", "data", "train", "executors", "export", "bench", "tune", "results",
          "report", "run", "cli"]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The harness modules `name` imports anywhere in its file (`from P import m` counts as P.m
    when m is a module, else as P)."""
    found = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def _layer(module: str) -> str | None:
    """The layer a module belongs to; None for the package's own `harness` and `harness.__main__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_sits_in_a_layer():
    strays = [m for m in _modules() if _layer(m) is None and m not in ("harness", "harness.__main__")]
    assert not strays, f"modules outside the layers {LAYERS}: {strays} (put each in a package, or add a layer)"


def test_no_import_runs_back_up():
    upward = []
    for module, targets in _graph().items():
        lm = _layer(module)
        for t in targets:
            lt = _layer(t)
            if lm is not None and lt is not None and LAYERS.index(lt) > LAYERS.index(lm):
                upward.append(f"{module} -> {t} ({lm} imports {lt}, a layer above it)")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []
    circles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state[t] == 1:
                circles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif state[t] == 0:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if state[m] == 0:
            visit(m)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_each_package_has_a_face_and_is_packaged():
    """Every package says what it holds (`__all__`), and pyproject.toml installs every one of them:
    a package missing there works from the checkout and is absent from the wheel."""
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    for init in PACKAGE.rglob("__init__.py"):
        name = ".".join(init.parent.relative_to(ROOT).parts)
        assert name in declared, f"{name} is not in pyproject.toml's [tool.setuptools] packages"
        if init.parent != PACKAGE:
            tree = ast.parse(init.read_text())
            assert ast.get_docstring(tree), f"{name}/__init__.py has no docstring saying what the package holds"
            assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets)
                       for n in tree.body), f"{name}/__init__.py names no public API (__all__)"

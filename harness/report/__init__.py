"""The HTML report of a run: one self-contained, offline file rendered from the run folder.

    from harness.report import render_report
    render_report(Path("runs/20250101-120000"), Path("reports/20250101-120000.html"))

Modules: collect (read the run folder, tolerating gaps), figures (matplotlib/seaborn -> data:
URIs), bench_view (normalise bench.json), render (context + jinja2 template in templates/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def render_report(run_dir: Path, output: Path, data_dir: Path | None = None, *,
                  dataset: Any = None) -> Path:
    """Render `run_dir` to the HTML file `output`; see harness.report.render.render_report."""
    from harness.report.render import render_report as _render  # matplotlib loads only when used

    return _render(run_dir, output, data_dir, dataset=dataset)


__all__ = ["render_report"]

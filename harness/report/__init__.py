"""HTML report rendering (see harness.report.render)."""

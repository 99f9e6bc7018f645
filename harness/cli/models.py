"""`harness models`: the registered models (built-in plugins and entry points)."""

from __future__ import annotations

import argparse
import sys

from harness.cli._common import add_json, print_json
from harness.core.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models (wildcards work: 'cnn*')",
                       description="List registered models: name, family, parameters, default epochs, "
                       "description and where the plugin came from.")
    p.add_argument("pattern", nargs="?", help="shell-style wildcard, e.g. 'cnn*'")
    p.add_argument("--no-params", action="store_true", help="skip building models to count parameters (faster)")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from harness.registry import list_models

    specs = list_models(args.pattern)
    if not specs:
        print(f"harness: no model matches {args.pattern!r}", file=sys.stderr)
        return 0
    if not args.no_params:
        from harness.train.cv import configure_threads

        configure_threads()
    rows = [{
        "name": s.name, "family": s.family, "tiny": s.tiny,
        "params": None if args.no_params else int(s.build().count_params()),
        "epochs": s.recipe["epochs"], "description": s.description, "source": s.source,
        "hyperparameters": s.params(), "search_space": {k: list(v) for k, v in s.search_space.items()},
    } for s in specs]
    if args.json:
        print_json(rows)
        return 0
    headers = ["name", "family", "params", "epochs", "source", "description"]
    table = [[r["name"] + (" (tiny)" if r["tiny"] else ""), r["family"],
              "-" if r["params"] is None else f"{r['params']:,}", str(r["epochs"]), r["source"],
              r["description"]] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]
    for line in [headers, ["-" * w for w in widths], *table]:
        cells = [c.rjust(w) if h in ("params", "epochs") else c.ljust(w) for h, c, w in zip(headers, line, widths)]
        print("  ".join(cells).rstrip())
    return 0

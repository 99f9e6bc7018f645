"""How the report prints values (its jinja filters) and reads them: a missing or malformed
value prints as '-', never as an exception in the middle of a page."""

from __future__ import annotations

import json
import math
from typing import Any


def as_float(v: Any) -> float | None:
    try:
        f = None if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None
    return None if f is None or math.isnan(f) else f


def fmt_pct(v: Any, digits: int = 2) -> str:
    f = as_float(v)
    return "-" if f is None else f"{f * 100:.{digits}f}%"


def fmt_ms(v: Any) -> str:
    f = as_float(v)
    if f is None:
        return "-"
    return f"{f:.3f}" if f < 1 else f"{f:.2f}" if f < 100 else f"{f:,.0f}"


def fmt_num(v: Any, digits: int = 0) -> str:
    f = as_float(v)
    if f is None:
        return "-" if v in (None, "") else str(v)
    return f"{f:,.{digits}f}"


def fmt_si(v: Any, unit: str = "") -> str:
    f = as_float(v)
    if f is None:
        return "-"
    for div, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(f) >= div:
            return f"{f / div:.3g} {prefix}{unit}"
    return f"{f:.3g} {unit}".strip()


def fmt_bytes(v: Any) -> str:
    f = as_float(v)
    if f is None:
        return "-"
    for div, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if f >= div:
            return f"{f / div:.1f} {unit}"
    return f"{f:.0f} B"


def fmt_duration(v: Any) -> str:
    f = as_float(v)
    if f is None:
        return "-"
    if f < 60:
        return f"{f:.1f} s"
    m, s = divmod(int(round(f)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def fmt_score(v: Any) -> str:
    """A Kaggle score: this competition's metric is accuracy, so 0..1 prints as a percentage."""
    f = as_float(v)
    if f is None:
        return "-" if v in (None, "") else str(v)
    return fmt_pct(f, 3) if 0 <= f <= 1 else f"{f:g}"


def status_class(status: Any) -> str:
    s = str(status or "").lower()
    if s in ("ok", "complete", "submitted", "scored"):
        return "ok"
    return "failed" if ("fail" in s or "error" in s) else "other"


def fmt_value(v: Any) -> str:
    """Any scalar for a key/value table; floats rounded sensibly, lists joined."""
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3e}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_value(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, default=str)
    return str(v)


# The template's filters: {{ x | pct }}, {{ x | ms }}, ...
FILTERS = dict(pct=fmt_pct, ms=fmt_ms, num=fmt_num, si=fmt_si, bytes=fmt_bytes, duration=fmt_duration,
               value=fmt_value, score=fmt_score, status_class=status_class)


def pick(d: Any, *keys: str) -> dict[str, Any]:
    """`d`'s values for `keys` (None where absent): the template never meets a missing key."""
    d = d if isinstance(d, dict) else {}
    return {k: d.get(k) for k in keys}

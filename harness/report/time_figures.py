"""The report's figures over time and speed: tuning trials, parameter importances, latency
percentiles and throughput. Same contract as harness.report.figures (plain arrays in, a
deterministic `data:` URI out), on its shared style.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import seaborn as sns
from matplotlib.lines import Line2D

from harness.report.figures import TEST_COLOR, TRAIN_COLOR, WIDTH, _figure, _log_axis, _t, _uri, styled

# --- tuning -----------------------------------------------------------------------------------


BEST_COLOR, BASELINE_COLOR, FAIL_COLOR = "#c0392b", TEST_COLOR, "#b23b3b"


def _err(acc: float) -> float:
    """Error rate in %, floored so a perfect score still sits on a log axis."""
    return max(1.0 - float(acc), 1e-4) * 100


def _time_axis(seconds: list[float]) -> tuple[float, str]:
    span = max(seconds, default=0.0)
    return (1.0, "s") if span < 120 else (60.0, "min") if span < 3 * 3600 else (3600.0, "h")


@styled
def tuning_trials(trials: list[dict[str, Any]]) -> str:
    """Each trial's CV accuracy against the time it finished, best-so-far as a step line.

    `trials`: dicts with number, state (complete | pruned | fail | ...), value (CV accuracy of a
    complete trial), last (a pruned trial's last reported validation accuracy, or None),
    t (seconds from the study's first trial start to this trial's end, or None), baseline.
    x is that time when every trial has one, else the trial number. y is accuracy on a log scale
    of the error rate (up is better), so 90%, 99% and 99.9% are equally far apart.
    """
    fig = _figure(WIDTH, 3.9)
    ax = fig.subplots()
    timed = bool(trials) and all(tr.get("t") is not None for tr in trials)
    div, unit = _time_axis([tr["t"] for tr in trials]) if timed else (1.0, "")

    def x(tr: dict[str, Any]) -> float:
        return tr["t"] / div if timed else tr["number"]

    done = sorted((tr for tr in trials if tr["state"] == "complete" and tr.get("value") is not None),
                  key=x)
    pruned = [tr for tr in trials if tr["state"] == "pruned" and tr.get("last") is not None]
    other = [tr for tr in trials if tr not in done and tr not in pruned and tr["state"] != "running"]
    handles = []
    if done:
        ax.scatter([x(tr) for tr in done], [_err(tr["value"]) for tr in done], s=30,
                   color=TRAIN_COLOR, edgecolor="white", lw=0.6, zorder=3)
        handles.append(Line2D([], [], color=TRAIN_COLOR, marker="o", ls="", ms=6,
                              label="complete: CV accuracy"))
        xs, best = [x(done[0])], [_err(done[0]["value"])]
        for tr in done[1:]:
            xs.append(x(tr))
            best.append(min(best[-1], _err(tr["value"])))
        xs.append(max(x(tr) for tr in trials))
        best.append(best[-1])
        ax.step(xs, best, where="post", color=BEST_COLOR, lw=1.4, alpha=0.85, zorder=2)
        handles.append(Line2D([], [], color=BEST_COLOR, lw=1.4, label="best so far"))
    if pruned:
        ax.scatter([x(tr) for tr in pruned], [_err(tr["last"]) for tr in pruned], marker="x",
                   s=26, color="0.5", lw=1.2, zorder=3)
        handles.append(Line2D([], [], color="0.5", marker="x", ls="", ms=6, mew=1.2,
                              label="pruned: fold-1 val. accuracy when stopped"))
    if other:  # failed (or pruned before any report): no score, a tick on the x axis
        ax.plot([x(tr) for tr in other], [0.03] * len(other), ls="", marker="|", ms=10,
                mew=1.6, color=FAIL_COLOR, transform=ax.get_xaxis_transform(), zorder=3)
        handles.append(Line2D([], [], color=FAIL_COLOR, marker="|", ls="", ms=9, mew=1.6,
                              label="failed or no score"))
    top = min(done, key=lambda tr: (_err(tr["value"]), tr["number"])) if done else None
    base = next((tr for tr in done if tr.get("baseline")), None)
    lo_x, hi_x = (min(x(tr) for tr in trials), max(x(tr) for tr in trials)) if trials else (0, 1)
    for tr, color, marker, text in ((base, BASELINE_COLOR, "o", "baseline (defaults)"),
                                    (top, BEST_COLOR, "*", "best")):
        if tr is None:
            continue
        ax.scatter(x(tr), _err(tr["value"]), s=200 if marker == "*" else 130, marker=marker,
                   facecolor=color if marker == "*" else "none", edgecolor=color,
                   lw=2 if marker == "o" else 0.8, zorder=4)
        # the best-so-far line leaves the baseline sideways and reaches the best from the left:
        # the baseline's label goes under it, the best's above it
        right = hi_x > lo_x and (x(tr) - lo_x) / (hi_x - lo_x) > 0.7
        below = tr is base
        ax.annotate(f"{text}, #{tr['number']}: {tr['value']:.2%}", (x(tr), _err(tr["value"])),
                    textcoords="offset points", xytext=(-8 if right else 8, -8 if below else 7),
                    fontsize=8, color=color, ha="right" if right else "left",
                    va="top" if below else "bottom", fontweight="bold")
    handles += [Line2D([], [], color=BASELINE_COLOR, marker="o", ls="", ms=9, mfc="none", mew=2,
                       label="baseline: the defaults"),
                Line2D([], [], color=BEST_COLOR, marker="*", ls="", ms=11, label="best trial")]
    if done or pruned:
        ax.set_yscale("log")
        ax.margins(x=0.03, y=0.12)
        ax.invert_yaxis()  # lower error = higher accuracy = up
        _log_axis(ax.yaxis, lambda v: f"{100 - v:.4g}%")
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no trial has a score yet", ha="center", transform=ax.transAxes,
                color="0.4")
    if not timed:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"time since the study's first trial started ({unit})" if timed
                  else "trial number")
    ax.set_ylabel("CV accuracy (log scale of the error)")
    ax.set_title("Tuning trials: CV accuracy of each trial when it finished")
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return _uri(fig)


_EVALUATORS = {"fanova": "fANOVA", "pedanova": "PED-ANOVA", "meandecreaseimpurity": "MDI"}


@styled
def param_importances(importances: dict[str, float], evaluator: str | None = None) -> str:
    """Horizontal bars of each tuned parameter's importance (shares summing to 1), largest on top."""
    items = sorted(((str(k), float(v)) for k, v in importances.items()), key=lambda kv: -kv[1])
    fig = _figure(6.6, 1.05 + 0.34 * max(len(items), 1))
    ax = fig.subplots()
    vals = [v * 100 for _, v in items]
    ax.barh(range(len(items)), vals, color=TRAIN_COLOR, height=0.62)
    ax.set_yticks(range(len(items)), [_t(k) for k, _ in items])
    ax.set_ylim(len(items) - 0.5, -0.5)  # largest on top
    for i, v in enumerate(vals):
        ax.annotate(f"{v:.0f}%" if v >= 1 else f"{v:.1f}%", (v, i), textcoords="offset points",
                    xytext=(4, 0), va="center", fontsize=8, color="0.15")
    ax.set_xlim(0, max(vals + [1.0]) * 1.15)
    ax.grid(False, axis="y")
    ax.set_xlabel("importance (% of the total)")
    name = _EVALUATORS.get(str(evaluator).lower(), evaluator) if evaluator else None
    ax.set_title("Parameter importance" + (f" ({_t(name)})" if name else ""))
    return _uri(fig)


# --- latency ----------------------------------------------------------------------------------


_PCT_STYLE = (("p50", "#1d2430"), ("p90", "#e08a2c"), ("p99", "#c0392b"))


@styled
def latency_distribution(series: list[dict[str, Any]]) -> str:
    """Batch-1 latency per model: the measured distribution where samples exist, else the
    quoted percentiles as a ladder. `series`: dicts with model, samples_ms (list or None),
    percentiles ({"p50": ms, "p90": ms, ...})."""
    fig = _figure(WIDTH, 0.9 + 0.42 * max(len(series), 1))
    ax = fig.subplots()
    names = [_t(s["model"]) for s in series]
    for i, s in enumerate(series):
        samples = s.get("samples_ms")
        if samples is not None and len(samples) > 1:
            v = np.asarray(samples, dtype=float)
            parts = ax.violinplot([v], positions=[i], vert=False, widths=0.8, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(TRAIN_COLOR)
                body.set_alpha(0.35)
        pcts = s.get("percentiles") or {}
        for key, color in _PCT_STYLE:
            if pcts.get(key) is not None:
                ax.scatter(pcts[key], i, marker="|", s=260, color=color, zorder=3, lw=2.2)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.invert_yaxis()
    ax.set_xscale("log")
    _log_axis(ax.xaxis)
    ax.grid(True, which="major", axis="x")
    ax.set_xlabel("latency per call, batch 1, one thread (ms, log scale)")
    ax.set_title("Batch-1 latency distribution (ONNX Runtime): shaded = all timed calls")
    handles = [Line2D([], [], color=c, marker="|", ls="", ms=12, mew=2.2, label=k)
               for k, c in _PCT_STYLE]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return _uri(fig)


@styled
def throughput_by_batch(series: list[dict[str, Any]]) -> str:
    """Images/s against batch size per model (log-log), one line per thread count.
    `series`: dicts with model, points [(batch, threads, images_per_s), ...]."""
    fig = _figure(8.5, 3.8)
    ax = fig.subplots()
    palette = sns.color_palette("colorblind", max(len(series), 1))
    thread_styles = ["-", "--", ":", "-."]
    all_threads = sorted({t for s in series for _, t, _ in s["points"]})
    for color, s in zip(palette, series):
        for ti, t in enumerate(all_threads):
            pts = sorted((b, ips) for b, tt, ips in s["points"] if tt == t and ips)
            if pts:
                ax.plot([b for b, _ in pts], [v for _, v in pts], marker="o", ms=3.5,
                        color=color, ls=thread_styles[ti % 4], lw=1.3)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    _log_axis(ax.yaxis, "{:,.0f}")
    ax.set_xlabel("batch size (images per call, log scale)")
    ax.set_ylabel("throughput (images/s, log)")
    ax.set_title("Throughput by batch size")
    handles = [Line2D([], [], color=c, lw=2, label=_t(s["model"])) for c, s in zip(palette, series)]
    if len(all_threads) > 1:
        handles += [Line2D([], [], color="0.3", ls=thread_styles[i % 4],
                           label=f"{t} thread{'s' if t != 1 else ''}")
                    for i, t in enumerate(all_threads)]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return _uri(fig)


@styled
def budget_bars(stages: list[dict[str, Any]], jobs: list[dict[str, Any]], limit_s: float | None) -> str:
    """A time-limited run: each stage's planned and used seconds side by side, stacked to the run's
    length against its limit (left); each training job's used against planned seconds (right).
    `stages`: dicts with stage, planned, used (None where not recorded); `jobs`: job, planned_s, wall_s."""
    fig = _figure(WIDTH, 2.9)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    palette = sns.color_palette("colorblind", len(stages))
    div, unit = _time_axis([limit_s or 0.0, sum(r["used"] or 0 for r in stages),
                            sum(r["planned"] or 0 for r in stages)])
    for y, key in ((1, "planned"), (0, "used")):
        start = 0.0
        for color, row in zip(palette, stages):
            width = (row[key] or 0.0) / div
            left.barh(y, width, left=start, color=color, edgecolor="white", height=0.6,
                      label=_t(row["stage"]) if key == "used" else None)
            start += width
    if limit_s:
        left.axvline(limit_s / div, color=BEST_COLOR, lw=1.4, ls="--")
        left.text(limit_s / div, 1.45, " limit", color=BEST_COLOR, fontsize=8, va="center")
    left.set_yticks([0, 1], ["used", "planned"])
    left.set_ylim(-0.5, 1.7)
    left.set_xlabel(f"time ({unit})")
    left.set_title("Planned against used, by stage")
    left.legend(loc="lower right", fontsize=7, ncols=len(stages))
    if jobs:
        top = max(max(j["planned_s"], j["wall_s"]) for j in jobs) * 1.1
        right.plot([0, top], [0, top], color="0.6", lw=1, ls=":")
        right.scatter([j["planned_s"] for j in jobs], [j["wall_s"] for j in jobs], s=14, color=TRAIN_COLOR)
        right.set_xlim(0, top)
        right.set_ylim(0, top)
        right.set_xlabel("planned (s)")
        right.set_ylabel("used (s)")
    else:
        right.text(0.5, 0.5, "no timed jobs", ha="center", va="center", transform=right.transAxes)
    right.set_title("Training jobs")
    return _uri(fig)

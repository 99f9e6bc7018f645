"""The report's figures: each function takes plain arrays and returns a `data:` URI.

Charts are SVG (crisp at any zoom, text kept as text so files stay small); pictures of digits are
PNG. Figures are built on `matplotlib.figure.Figure` directly, never through pyplot, so no global
figure state leaks between calls and no GUI backend is touched. Output is deterministic (fixed SVG
ids, no timestamps), so re-rendering a run gives the same bytes.

    uri = learning_curves([(0, {"loss": [...], "val_loss": [...]})])
    # -> "data:image/svg+xml;base64,..."  for <img src=...>
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any, Sequence

import numpy as np
import seaborn as sns
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MultipleLocator

WIDTH = 10.5  # inches; at the browser's 96 px/in an SVG this wide fills the page's 1008 px column
PNG_DPI = 110
CLASSES = list(range(10))
TRAIN_COLOR, TEST_COLOR = "#3b6fb6", "#e08a2c"
FOLD_COLORS = sns.color_palette("colorblind", 10)

_RC = {
    **sns.axes_style("whitegrid"),
    **sns.plotting_context("notebook", font_scale=0.8),
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # SVG text names it, then the generic sans-serif
    "svg.fonttype": "none",  # text as <text>, not glyph paths: about half the bytes
    "svg.hashsalt": "harness-report",  # stable element ids
    "axes.titleweight": "bold",
    "axes.titlesize": 10,
    "figure.titlesize": 11,
    "figure.titleweight": "bold",
    "legend.frameon": False,
    "image.interpolation": "nearest",
}


def _t(text: Any) -> str:
    """Plugin/file text for matplotlib: a '$' must print as-is, not start TeX math."""
    return str(text).replace("$", r"\$")


def _log_axis(axis: Any, fmt: Any = "{:g}") -> None:
    """Log-scale labels as plain numbers (1, 2, 5 per decade), never TeX like 10^{-1}.
    `fmt`: a format string, or a function of the tick value."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    lo, hi = sorted(abs(v) for v in axis.get_view_interval())
    decades = np.log10(hi / lo) if lo > 0 else 9
    subs = (1.0, 2.0, 5.0) if decades > 1.5 else (1.0, 2.0, 3.0, 5.0) if decades > 0.6 \
        else tuple(range(1, 10))
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    label = fmt if callable(fmt) else fmt.format
    axis.set_major_formatter(FuncFormatter(lambda v, _: label(float(f"{v:.3g}"))))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _figure(w: float, h: float, **kwargs: Any) -> Figure:
    return Figure(figsize=(w, h), layout="constrained", **kwargs)


_SVG_NUMBERS = re.compile(r'(\s(?:d|x|y|x1|x2|y1|y2|width|height|transform|points)=")([^"]*)"')


def _compact_svg(svg: str) -> str:
    """Drop matplotlib's metadata and indentation, and round coordinates to 0.1 pt (0.13 px):
    about a quarter of the bytes. Only attribute values are touched, never text."""
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = _SVG_NUMBERS.sub(
        lambda m: m.group(1) + re.sub(r"(\d\.\d)\d+", r"\1", m.group(2)) + '"', svg)
    svg = re.sub(r' transform="rotate\(-?0 [^"]*\)"', "", svg)  # a no-op on every label
    return re.sub(r"\n\s+", "\n", svg)


def _uri(fig: Figure, fmt: str = "svg") -> str:
    buf = io.BytesIO()
    if fmt == "svg":
        # dpi only sets the resolution of artists marked rasterized (e.g. heatmap cells)
        fig.savefig(buf, format="svg", dpi=PNG_DPI * 2, metadata={"Date": None, "Creator": None})
        data = _compact_svg(buf.getvalue().decode("utf-8")).encode("utf-8")
        return f"data:image/svg+xml;base64,{base64.b64encode(data).decode('ascii')}"
    else:
        fig.savefig(buf, format="png", dpi=PNG_DPI, metadata={"Software": None})
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def styled(fn):
    """Run a figure function under the report's matplotlib style."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with rc_context(_RC):
            return fn(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def digit_png(image: np.ndarray, scale: int = 2) -> str:
    """One 28x28 digit as a tiny grayscale PNG (ink dark on white), scaled by pixel repetition."""
    from PIL import Image

    a = 255 - np.asarray(image, dtype=np.uint8).reshape(28, 28)
    a = np.kron(a, np.ones((scale, scale), dtype=np.uint8))
    buf = io.BytesIO()
    Image.fromarray(a, mode="L").save(buf, format="PNG", optimize=True)
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _mosaic(images: Sequence[np.ndarray], rows: int, cols: int, gap: int = 2) -> np.ndarray:
    """Tile 28x28 images into one array (NaN gaps render as background)."""
    out = np.full((rows * (28 + gap) - gap, cols * (28 + gap) - gap), np.nan)
    for i, img in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        out[r * (28 + gap): r * (28 + gap) + 28, c * (28 + gap): c * (28 + gap) + 28] = (
            np.asarray(img, dtype=float).reshape(28, 28))
    return out


# --- data -------------------------------------------------------------------------------------


@styled
def class_counts(y_train: np.ndarray, y_test: np.ndarray | None) -> str:
    """Grouped bars (train vs test) of images per digit, plus one pie per set."""
    fig = _figure(WIDTH, 3.5)
    gs = fig.add_gridspec(1, 3, width_ratios=[2.2, 1, 1])
    ax = fig.add_subplot(gs[0])
    train = np.bincount(y_train, minlength=10)
    sets = [("train (true labels)", train, TRAIN_COLOR)]
    if y_test is not None:
        sets.append(("test (predicted)", np.bincount(y_test, minlength=10), TEST_COLOR))
    width = 0.8 / len(sets)
    for i, (label, counts, color) in enumerate(sets):
        x = np.arange(10) + (i - (len(sets) - 1) / 2) * width
        ax.bar(x, counts, width=width, color=color, label=f"{label}, n={counts.sum():,}")
    ax.set_xticks(CLASSES)
    ax.set_xlabel("digit")
    ax.set_ylabel("images")
    ax.set_title("Images per class")
    ax.legend(loc="upper left", fontsize=8, ncols=2)
    ax.set_ylim(0, max(c.max() for _, c, _ in sets) * 1.22)
    for i, (label, counts, _) in enumerate(sets):
        pax = fig.add_subplot(gs[1 + i])
        colors = sns.color_palette("tab10", 10)
        pax.pie(counts, labels=[str(c) for c in CLASSES], colors=colors, startangle=90,
                counterclock=False, autopct=lambda p: f"{p:.0f}%" if p >= 7 else "",
                pctdistance=0.72, textprops={"fontsize": 8},
                wedgeprops={"linewidth": 0.8, "edgecolor": "white"})
        pax.set_title(label.split(" (")[0].capitalize() + " share")
    if y_test is None:
        pax = fig.add_subplot(gs[2])
        pax.axis("off")
        pax.text(0.5, 0.5, "test set:\nno predictions\nin this run", ha="center", va="center",
                 color="0.4")
    return _uri(fig)


def _ink_hist(x: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, float]:
    flat = x.reshape(-1)
    counts = np.bincount(flat, minlength=256)
    ink = counts[1:].sum()
    per_bin = np.add.reduceat(counts, bins[:-1])[: len(bins) - 1]
    per_bin[0] -= counts[0]  # the first bin starts at 0; intensity 0 (background) is left out
    return per_bin / max(ink, 1), ink / max(flat.size, 1)


@styled
def intensity_histograms(x_train: np.ndarray, y_train: np.ndarray,
                         x_test: np.ndarray | None, y_test: np.ndarray | None) -> str:
    """Per digit: the distribution of non-zero pixel intensities, train vs test."""
    fig = _figure(WIDTH, 4.3)
    axes = fig.subplots(2, 5, sharex=True, sharey=True).ravel()
    bins = np.arange(0, 257, 8)
    for c, ax in zip(CLASSES, axes):
        h, ink = _ink_hist(x_train[y_train == c], bins)
        ax.stairs(h * 100, bins, color=TRAIN_COLOR, linewidth=1.4, fill=False)
        title = f"{c}: ink {ink:.0%}"
        if x_test is not None and (y_test is not None or c == 0):
            sel = x_test[y_test == c] if y_test is not None else x_test
            if len(sel):
                ht, ink_t = _ink_hist(sel, bins)
                ax.stairs(ht * 100, bins, color=TEST_COLOR, linewidth=1.2, linestyle="--")
                title += f" / {ink_t:.0%}" if y_test is not None else ""
        ax.set_title(title, fontweight="normal")
        ax.set_xlim(0, 256)
        ax.set_xticks([0, 128, 255])
        ax.set_yscale("log")  # the saturated 248-255 bin dwarfs the strokes' soft edges
    for ax in axes[5:]:
        ax.set_xlabel("intensity (0-255)")
    for ax in axes[::5]:
        ax.set_ylabel("% of ink pixels (log)")
    _log_axis(axes[0].yaxis, "{:g}")
    handles = [Line2D([], [], color=TRAIN_COLOR, lw=1.4, label="train"),
               Line2D([], [], color=TEST_COLOR, lw=1.2, ls="--",
                      label="test (predicted class)" if y_test is not None else "test (all)")]
    fig.legend(handles=handles, loc="outside upper right", ncols=2, fontsize=8)
    fig.suptitle("Pixel intensity per class (background zeros excluded; 'ink' = share of "
                 "non-zero pixels)", x=0.01, ha="left")
    return _uri(fig)


def _samples(x: np.ndarray, y: np.ndarray, per_class: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for c in CLASSES:
        idx = np.flatnonzero(y == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        imgs = [x[i] for i in pick]
        out += imgs + [np.full((28, 28), np.nan)] * (per_class - len(imgs))
    return out


@styled
def sample_digits(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray | None,
                  y_test: np.ndarray | None, per_class: int = 10, seed: int = 0) -> str:
    """A grid of random digits per class: train by true label, test by predicted label."""
    panels = [("Train (true label)", x_train, y_train)]
    if x_test is not None and y_test is not None:
        panels.append(("Test (predicted label)", x_test, y_test))
    fig = _figure(WIDTH, 5.2)
    axes = np.atleast_1d(fig.subplots(1, 2))
    for ax, (title, x, y) in zip(axes, panels):
        ax.imshow(_mosaic(_samples(x, y, per_class, seed), 10, per_class), cmap="gray_r",
                  vmin=0, vmax=255)
        ax.set_yticks([r * 30 + 14 for r in range(10)], [str(c) for c in CLASSES])
        ax.set_xticks([])
        ax.grid(False)
        ax.set_title(title)
        ax.set_ylabel("class")
    for ax in axes[len(panels):]:
        ax.axis("off")
        ax.text(0.5, 0.5, "test set: no predictions in this run", ha="center", va="center",
                color="0.4", transform=ax.transAxes)
    return _uri(fig, "png")


@styled
def mean_digits(x_train: np.ndarray, y_train: np.ndarray,
                x_test: np.ndarray | None, y_test: np.ndarray | None) -> str:
    """The average image of each class, train above test."""
    rows = [("train", x_train, y_train)]
    if x_test is not None and y_test is not None:
        rows.append(("test\n(pred.)", x_test, y_test))
    fig = _figure(WIDTH, 1.25 + 1.1 * len(rows))
    axes = np.atleast_1d(fig.subplots(len(rows), 1))
    for ax, (label, x, y) in zip(axes, rows):
        means = [x[y == c].mean(axis=0) if np.any(y == c) else np.full((28, 28), np.nan)
                 for c in CLASSES]
        im = ax.imshow(_mosaic(means, 1, 10, gap=4), cmap="magma", vmin=0, vmax=255)
        ax.set_xticks([c * 32 + 14 for c in CLASSES], [str(c) for c in CLASSES])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
        ax.grid(False)
    fig.colorbar(im, ax=axes, shrink=0.9, label="mean intensity", pad=0.01)
    fig.suptitle("Mean digit per class", x=0.01, ha="left")
    return _uri(fig, "png")


# --- leaderboard ------------------------------------------------------------------------------


@styled
def accuracy_vs_latency(points: list[dict[str, Any]], baseline_accuracy: float | None) -> str:
    """Error rate (log) vs batch-1 latency (log), Pareto front joined, majority baseline drawn.

    `points`: dicts with model, accuracy (0..1), latency_ms, pareto, best.
    Error rate on a log axis keeps 1% and the baseline's 89% readable on one chart.
    """
    fig = _figure(8.5, 4.4)
    ax = fig.subplots()
    pts = [p for p in points if p.get("accuracy") is not None and p.get("latency_ms")]
    lat = [p["latency_ms"] for p in pts] or [1.0]
    lo, hi = np.log(min(lat)), np.log(max(lat))
    for p in pts:
        # labels of points in the right quarter go to their left, so they stay inside the figure
        right = hi > lo and (np.log(p["latency_ms"]) - lo) / (hi - lo) > 0.75
        err = max(1 - p["accuracy"], 1e-4) * 100
        color = "#c0392b" if p.get("best") else (TRAIN_COLOR if p.get("pareto") else "0.55")
        ax.scatter(p["latency_ms"], err, s=60 if p.get("pareto") else 30, color=color,
                   zorder=3, marker="D" if p.get("pareto") else "o", edgecolor="white")
        ax.annotate(_t(p["model"]) + (" (best)" if p.get("best") else ""), (p["latency_ms"], err),
                    textcoords="offset points", xytext=(-6 if right else 6, 4), fontsize=8,
                    color="0.15", ha="right" if right else "left")
    front = sorted((p for p in pts if p.get("pareto")), key=lambda p: p["latency_ms"])
    if len(front) > 1:
        xs = [p["latency_ms"] for p in front]
        ys = [max(1 - p["accuracy"], 1e-4) * 100 for p in front]
        ax.step(xs, ys, where="post", color=TRAIN_COLOR, lw=1.2, alpha=0.7, zorder=2)
    if baseline_accuracy is not None:
        ax.axhline((1 - baseline_accuracy) * 100, color="0.35", ls=":", lw=1.2)
        ax.annotate(f"majority-class baseline: {baseline_accuracy:.1%} accuracy",
                    (0.01, (1 - baseline_accuracy) * 100), xycoords=("axes fraction", "data"),
                    textcoords="offset points", xytext=(0, -11), fontsize=8, color="0.35")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_axis(ax.yaxis, "{:g}%")
    _log_axis(ax.xaxis)
    if not pts:
        ax.text(0.5, 0.5, "no model has both an accuracy and a latency", ha="center",
                transform=ax.transAxes, color="0.4")
    ax.set_xlabel("latency, batch 1, p50 (ms, log scale)")
    ax.set_ylabel("CV error rate (log scale)")
    ax.set_title("Accuracy vs latency: lower left is better; ◆ = Pareto front")
    return _uri(fig)


# --- per model --------------------------------------------------------------------------------


@styled
def learning_curves(histories: list[tuple[int, dict[str, list[float]]]]) -> str:
    """Loss and accuracy per epoch, one colour per fold; train solid, validation dashed."""
    keys = [k for k in ("loss", "accuracy") if any(k in h for _, h in histories)]
    keys += [k for _, h in histories for k in h
             if not k.startswith("val_") and k not in keys and k not in ("lr", "learning_rate")]
    keys = list(dict.fromkeys(keys))[:2] or ["loss"]
    fig = _figure(WIDTH, 3.3)
    axes = np.atleast_1d(fig.subplots(1, len(keys)))
    for ax, key in zip(axes, keys):
        pct = "acc" in key
        for k, h in histories:
            color = FOLD_COLORS[k % 10]
            for name, ls, face in ((key, "-", color), (f"val_{key}", "--", "white")):
                vals = h.get(name)
                if vals:
                    v = np.asarray(vals, dtype=float) * (100 if pct else 1)
                    few = len(v) < 4  # short runs: markers, so single epochs stay visible
                    ax.plot(np.arange(1, len(v) + 1), v, ls=ls, color=color, lw=1.3,
                            marker="o" if few else None, ms=5, mfc=face)
        n_epochs = max((len(h.get(key) or []) for _, h in histories), default=1)
        ax.set_xlim(0.7, max(n_epochs, 1) + 0.3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{key} (%)" if pct else key)
        ax.set_title(key.replace("_", " ").capitalize())
        ax.xaxis.set_major_locator(MultipleLocator(max(1, int(np.ceil(n_epochs / 10)))))
    handles = [Line2D([], [], color=FOLD_COLORS[k % 10], lw=1.5, label=f"fold {k}")
               for k, _ in histories]
    handles += [Line2D([], [], color="0.3", ls="-", marker="o", ms=4, label="train"),
                Line2D([], [], color="0.3", ls="--", marker="o", ms=4, mfc="white",
                       label="validation")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return _uri(fig)


@styled
def confusion_matrix(cm: np.ndarray) -> str:
    """Counts; correct cells green, errors red, so rare confusions stay visible."""
    fig = _figure(5.4, 4.6)
    ax = fig.subplots()
    diag = np.eye(10, dtype=bool)
    annot = np.vectorize(lambda v: f"{v:d}" if v else "")(cm)
    off_max = max(int(cm[~diag].max()) if cm.size else 1, 1)
    sns.heatmap(cm, mask=~diag, cmap="Greens", vmin=0, vmax=max(int(cm.max()), 1), annot=annot,
                fmt="", cbar=False, ax=ax, square=True, linewidths=0.5, linecolor="white",
                annot_kws={"fontsize": 7})
    sns.heatmap(cm, mask=diag | (cm == 0), cmap="Reds", vmin=0, vmax=off_max, annot=annot,
                fmt="", cbar=True, cbar_kws={"label": "errors (count)", "shrink": 0.8}, ax=ax,
                square=True, linewidths=0.5, linecolor="white", annot_kws={"fontsize": 7})
    from matplotlib.ticker import MaxNLocator

    ax.collections[-1].colorbar.locator = MaxNLocator(integer=True)
    ax.collections[-1].colorbar.update_ticks()
    ax.set_facecolor("white")
    for mesh in ax.collections:  # 200 cells as vector paths cost ~50 kB; as pixels ~3 kB
        mesh.set_rasterized(True)
    ax.grid(False)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(f"Confusion matrix (out-of-fold, n={int(cm.sum()):,})")
    return _uri(fig)


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

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
CLASSES = [str(d) for d in range(10)]  # Digit Recognizer's class names; other competitions pass theirs
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
    """One image [H,W,C] (or a 28x28 digit, flat) as a tiny PNG, scaled by pixel repetition:
    grayscale ink dark on white, RGB as it is."""
    from PIL import Image

    a = np.asarray(image, dtype=np.uint8)
    a = a.reshape(28, 28, 1) if a.ndim < 3 else a
    a = np.kron(a, np.ones((scale, scale, 1), dtype=np.uint8))
    buf = io.BytesIO()
    if a.shape[2] == 1:
        Image.fromarray(255 - a[..., 0], mode="L").save(buf, format="PNG", optimize=True)
    else:
        Image.fromarray(a, mode="RGB").save(buf, format="PNG", optimize=True)
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _mosaic(images: Sequence[np.ndarray], rows: int, cols: int, gap: int = 2,
            shape: tuple[int, ...] = (28, 28, 1)) -> np.ndarray:
    """Tile images of `shape` into one array [.., .., C] (NaN gaps render as background); a
    grayscale mosaic is 2-D, as imshow's colour maps want it."""
    h, w, ch = shape
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, ch), np.nan)
    for i, img in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = (
            np.asarray(img, dtype=float).reshape(h, w, ch))
    return out[..., 0] if ch == 1 else out


def _show(ax: Any, mosaic: np.ndarray, **gray: Any) -> Any:
    """imshow a mosaic: grayscale through the given colour map, RGB as it is (NaN gaps white)."""
    if mosaic.ndim == 2:
        return ax.imshow(mosaic, **gray)
    return ax.imshow(np.nan_to_num(mosaic / 255.0, nan=1.0).clip(0, 1))


def _shape(x: np.ndarray) -> tuple[int, int, int]:
    return (x.shape[1], x.shape[2], x.shape[3] if x.ndim == 4 else 1)


# --- data -------------------------------------------------------------------------------------


@styled
def class_counts(y_train: np.ndarray, y_test: np.ndarray | None, names: Sequence[str] = CLASSES) -> str:
    """Grouped bars (train vs test) of images per class, plus one pie per set."""
    k = len(names)
    fig = _figure(WIDTH, 3.5)
    gs = fig.add_gridspec(1, 3, width_ratios=[2.2, 1, 1])
    ax = fig.add_subplot(gs[0])
    train = np.bincount(y_train, minlength=k)
    sets = [("train (true labels)", train, TRAIN_COLOR)]
    if y_test is not None:
        sets.append(("test (predicted)", np.bincount(y_test, minlength=k), TEST_COLOR))
    width = 0.8 / len(sets)
    for i, (label, counts, color) in enumerate(sets):
        x = np.arange(k) + (i - (len(sets) - 1) / 2) * width
        ax.bar(x, counts, width=width, color=color, label=f"{label}, n={counts.sum():,}")
    ax.set_xticks(range(k), [_t(n) for n in names], rotation=0 if max(map(len, names)) <= 3 else 45,
                  ha="center" if max(map(len, names)) <= 3 else "right")
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    ax.set_title("Images per class")
    ax.legend(loc="upper left", fontsize=8, ncols=2)
    ax.set_ylim(0, max(c.max() for _, c, _ in sets) * 1.22)
    for i, (label, counts, _) in enumerate(sets):
        pax = fig.add_subplot(gs[1 + i])
        colors = sns.color_palette("tab10" if k <= 10 else "husl", k)
        pax.pie(counts, labels=[_t(n) if k <= 12 else "" for n in names], colors=colors, startangle=90,
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
                         x_test: np.ndarray | None, y_test: np.ndarray | None,
                         names: Sequence[str] = CLASSES) -> str:
    """Per class: the distribution of non-zero pixel intensities, train vs test."""
    rows = -(-len(names) // 5)
    fig = _figure(WIDTH, 0.3 + 2.0 * rows)
    axes = np.atleast_1d(fig.subplots(rows, 5, sharex=True, sharey=True)).ravel()
    bins = np.arange(0, 257, 8)
    for ax in axes[len(names):]:
        ax.axis("off")
    for c, (name, ax) in enumerate(zip(names, axes)):
        h, ink = _ink_hist(x_train[y_train == c], bins)
        ax.stairs(h * 100, bins, color=TRAIN_COLOR, linewidth=1.4, fill=False)
        title = f"{_t(name)[:14]}: ink {ink:.0%}"
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
    for ax in axes[len(axes) - 5:]:
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


def _samples(x: np.ndarray, y: np.ndarray, per_class: int, seed: int, k: int = 10) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for c in range(k):
        idx = np.flatnonzero(y == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        imgs = [x[i] for i in pick]
        out += imgs + [np.full(_shape(x), np.nan)] * (per_class - len(imgs))
    return out


@styled
def sample_digits(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray | None,
                  y_test: np.ndarray | None, per_class: int = 10, seed: int = 0,
                  names: Sequence[str] = CLASSES) -> str:
    """A grid of random images per class: train by true label, test by predicted label."""
    panels = [("Train (true label)", x_train, y_train)]
    if x_test is not None and y_test is not None:
        panels.append(("Test (predicted label)", x_test, y_test))
    k, shape = len(names), _shape(x_train)
    fig = _figure(WIDTH, 0.6 + 0.46 * k)
    axes = np.atleast_1d(fig.subplots(1, 2))
    for ax, (title, x, y) in zip(axes, panels):
        _show(ax, _mosaic(_samples(x, y, per_class, seed, k), k, per_class, shape=shape), cmap="gray_r",
              vmin=0, vmax=255)
        ax.set_yticks([r * (shape[0] + 2) + shape[0] // 2 for r in range(k)], [_t(n)[:16] for n in names])
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
                x_test: np.ndarray | None, y_test: np.ndarray | None, names: Sequence[str] = CLASSES) -> str:
    """The average image of each class, train above test."""
    rows = [("train", x_train, y_train)]
    if x_test is not None and y_test is not None:
        rows.append(("test\n(pred.)", x_test, y_test))
    k, shape = len(names), _shape(x_train)
    fig = _figure(WIDTH, 1.25 + 1.1 * len(rows))
    axes = np.atleast_1d(fig.subplots(len(rows), 1))
    im = None
    for ax, (label, x, y) in zip(axes, rows):
        means = [x[y == c].mean(axis=0) if np.any(y == c) else np.full(shape, np.nan) for c in range(k)]
        im = _show(ax, _mosaic(means, 1, k, gap=4, shape=shape), cmap="magma", vmin=0, vmax=255)
        ax.set_xticks([c * (shape[1] + 4) + shape[1] // 2 for c in range(k)],
                      [_t(n)[:10] for n in names], rotation=0 if max(map(len, names)) <= 3 else 45)
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
        ax.grid(False)
    if shape[2] == 1:
        fig.colorbar(im, ax=axes, shrink=0.9, label="mean intensity", pad=0.01)
    fig.suptitle("Mean image per class", x=0.01, ha="left")
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
def confusion_matrix(cm: np.ndarray, names: Sequence[str] = CLASSES) -> str:
    """Counts; correct cells green, errors red, so rare confusions stay visible."""
    k = len(cm)
    fig = _figure(5.4 + 0.1 * max(k - 10, 0), 4.6 + 0.1 * max(k - 10, 0))
    ax = fig.subplots()
    diag = np.eye(k, dtype=bool)
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
    ax.set_xticks(np.arange(k) + 0.5, [_t(n)[:12] for n in names], rotation=0 if max(map(len, names)) <= 3 else 60)
    ax.set_yticks(np.arange(k) + 0.5, [_t(n)[:12] for n in names])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.tick_params(axis="y", rotation=0)
    ax.set_title(f"Confusion matrix (out-of-fold, n={int(cm.sum()):,})")
    return _uri(fig)

"""The two figures that explain a verdict: per-class F1 of child minus parent with its person-bootstrap interval,
and a grid of the validation images the child fixed and broke. What they draw comes from report/explain.py."""
import matplotlib

matplotlib.use("Agg")  # runs write files; no display is needed or assumed
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from fastmask.labels import describe
from fastmask.report.plots import _save, short_name

# an interval above 0, below 0, or across it
_COLOURS = {1: "#2a9d4b", -1: "#c0392b", 0: "#9aa0a6"}


def side(d):
    """+1 when a class's interval lies above 0, -1 below, 0 across it: what the chart colours."""
    return 1 if d.low > 0 else -1 if d.high < 0 else 0


def save_class_deltas(deltas, path, parent="parent"):
    """A horizontal bar per class with validation images: child F1 minus parent F1 and its 95 % interval over
    people. Returns how many classes it draws (0: nothing written)."""
    if not deltas:
        return 0
    deltas = sorted(deltas, key=lambda d: d.cls)
    y = np.arange(len(deltas))[::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.28 * len(deltas) + 1.3))
    ax.barh(y, [d.delta for d in deltas], color=[_COLOURS[side(d)] for d in deltas], height=0.6)
    ax.errorbar([d.delta for d in deltas], y, xerr=[[d.delta - d.low for d in deltas], [d.high - d.delta for d in deltas]],
                fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{short_name(d.cls)}  (n={d.support})" for d in deltas], fontsize=7, family="monospace")
    ax.set_xlabel(f"F1 of this run minus {parent}'s (95 % interval over people)", fontsize=8)
    ax.set_xlim(-1.05, 1.05)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title("per-class change: green above 0, red below, grey within noise", fontsize=9)
    _save(fig, path)
    return len(deltas)


def save_flips(fixed, broken, path, k=6):
    """Two rows of thumbnails: validation images the child gets right and the parent got wrong (fixed), and the
    reverse (broken), up to `k` each, titled with the true class and the other model's answer. Returns how
    many images it shows (0: nothing written)."""
    rows = [(name, f.head(k)) for name, f in (("fixed", fixed), ("broken", broken))]
    if not sum(len(f) for _, f in rows):
        return 0
    fig, axes = plt.subplots(2, k, figsize=(1.9 * k, 5.0), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (name, f) in enumerate(rows):
        axes[r, 0].text(-0.15, 0.5, f"{name}\n({len(f)} shown)", ha="right", va="center", fontsize=8,
                        transform=axes[r, 0].transAxes)
        for ax, row in zip(axes[r], f.itertuples()):
            try:
                with Image.open(row.path) as im:
                    ax.imshow(np.asarray(im.convert("RGB")))
            except (OSError, ValueError):
                ax.text(0.5, 0.5, "image missing", ha="center", va="center", transform=ax.transAxes, fontsize=7)
            other = row.parent if name == "fixed" else row.child
            who = "parent" if name == "fixed" else "this run"
            ax.set_title(f"true: {describe(row.label)}\n{who}: {describe(other)}", fontsize=6)
    fig.suptitle("validation images this run fixed (top) and broke (bottom) against its parent", fontsize=9)
    _save(fig, path)
    return sum(len(f) for _, f in rows)

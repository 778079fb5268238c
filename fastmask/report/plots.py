"""PNG figures beside a card: the normalised confusion matrix, per-class F1 with support, learning curves
per fold or seed with their spread, per-batch loss with the lr schedule, the lr finder's curve and the top
losses. Each figure has a pure function computing what it draws (tested) beside the function drawing it."""
import matplotlib

matplotlib.use("Agg")  # runs write files; no display is needed or assumed
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from PIL import Image
from sklearn.metrics import confusion_matrix

from fastmask.labels import AGE_BANDS, N_CLASSES, decode, describe, per_class

_SHORT_MASK, _SHORT_GENDER, _SHORT_AGE = ("mask", "inc", "none"), ("M", "F"), ("<30", "30-59", "60+")
# Colours of the learning-curve series (matplotlib's default cycle, fixed so folds share a colour per series).
_COLOURS = {"train_loss": "C0", "valid_loss": "C1", "macro_f1": "C2", "accuracy": "C3"}
_LABELS = {"train_loss": "train loss", "valid_loss": "validation loss", "macro_f1": "macro F1", "accuracy": "accuracy"}


def short_name(c):
    """' 7 M 30-59 inc' for class 7: id, gender, age group, mask (none / inc = worn wrongly), for axes."""
    m, g, a = decode(int(c))
    return f"{int(c):>2} {_SHORT_GENDER[g]} {_SHORT_AGE[a]} {_SHORT_MASK[m]}"


def _save(fig, path, dpi=90):
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


# --- confusion ----------------------------------------------------------------------------------------

def confusion_table(y, p):
    """(counts, shares): the 18 x 18 confusion counts (rows true, columns predicted) and the same rows
    normalised to sum to 1 (the share of each true class's images predicted as each class); a class with
    no true image has a row of zeros."""
    counts = confusion_matrix(np.asarray(y, int), np.asarray(p, int), labels=range(N_CLASSES))
    totals = counts.sum(1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, float), where=totals > 0)
    return counts, shares


def save_confusion(y, p, path, title="validation"):
    """Colours: each true class's row normalised (share of its images); numbers: image counts."""
    counts, shares = confusion_table(y, p)
    fig, ax = plt.subplots(figsize=(10, 9))
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    n = counts.sum(1)
    ax.set_xticks(range(N_CLASSES), [short_name(c) for c in range(N_CLASSES)], rotation=90, fontsize=8,
                  family="monospace")
    ax.set_yticks(range(N_CLASSES), [f"{short_name(c)} (n={n[c]})" for c in range(N_CLASSES)], fontsize=8,
                  family="monospace")
    for i, j in zip(*np.nonzero(counts)):
        ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=7,
                color="white" if shares[i, j] > 0.5 else "black")
    for b in (5.5, 11.5):  # mask blocks: worn | worn wrongly | none
        ax.axhline(b, color="grey", lw=0.6), ax.axvline(b, color="grey", lw=0.6)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02).set_label("share of the true class's images (row)")
    ax.set_xlabel("predicted class"), ax.set_ylabel("true class (n = its images)")
    ax.set_title(f"confusion ({title}, {int(n.sum())} images): colour = row share, number = images\n"
                 "classes: id, gender, age group, mask (inc = worn wrongly)", fontsize=10)
    _save(fig, path)


# --- per-class F1 ---------------------------------------------------------------------------------------

def f1_table(metrics):
    """One row per class (index: class id): name, f1, support (its true images; None when unknown), from a
    metrics dict's per_class_f1 / per_class_support (class-name keys, or "0".."17" from older runs)."""
    f1, support = per_class(metrics), per_class(metrics, "per_class_support")
    return pd.DataFrame({"name": [short_name(c) for c in range(N_CLASSES)],
                         "f1": [f1.get(c) for c in range(N_CLASSES)],
                         "support": [support.get(c) for c in range(N_CLASSES)]}, index=range(N_CLASSES))


def save_per_class_f1(metrics, path, title="validation"):
    """Horizontal bars of each class's F1 (class 0 on top) with its support written beside the bar and the
    macro F1 as a dashed line. Returns False (nothing written) when the metrics hold no per-class F1."""
    t = f1_table(metrics)
    if t["f1"].isna().all():
        return False
    fig, ax = plt.subplots(figsize=(8, 6.5))
    ys = np.arange(N_CLASSES)
    f1 = t["f1"].fillna(0).to_numpy(float)
    ax.barh(ys, f1, color=[f"C{decode(c)[0]}" for c in range(N_CLASSES)], height=0.7)
    for c in range(N_CLASSES):
        s = t.at[c, "support"]
        note = "F1 unknown" if pd.isna(t.at[c, "f1"]) else f"{f1[c]:.2f}"
        note += "" if pd.isna(s) else ("  no images" if int(s) == 0 else f"  n={int(s)}")
        ax.text(f1[c] + 0.01, c, note, va="center", fontsize=8,
                bbox=dict(facecolor="white", edgecolor="none", pad=0.3, alpha=0.8))
    mf = metrics.get("macro_f1")
    known = isinstance(mf, (int, float))
    if known:
        ax.axvline(mf, color="k", ls="--", lw=1)
    ax.set_yticks(ys, t["name"], fontsize=8, family="monospace")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.18)
    ax.set_xlabel("F1 (n = the class's true images)"), ax.set_ylabel("class: id, gender, age group, mask")
    handles = [Patch(color="C0", label="mask worn"), Patch(color="C1", label="worn wrongly (inc)"),
               Patch(color="C2", label="no mask")]
    if known:
        handles.append(Line2D([], [], color="k", ls="--", label=f"macro F1 {mf:.3f}"))
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=len(handles))
    ax.set_title(f"per-class F1 ({title})", fontsize=10)
    _save(fig, path)
    return True


# --- learning curves ------------------------------------------------------------------------------------

def curve_series(hist, col, group=None):
    """{fold or seed: Series of `col` indexed by epoch counted from 1} from a history.csv frame (with a
    `group` column for several models; one entry keyed None otherwise). Each model keeps its own curve."""
    if col not in hist:
        return {}
    if group is None or group not in hist:
        return {None: pd.Series(hist[col].to_numpy(float), index=hist["epoch"].to_numpy(int) + 1)}
    return {k: pd.Series(g[col].to_numpy(float), index=g["epoch"].to_numpy(int) + 1)
            for k, g in hist.groupby(group, sort=True)}


def spread(series):
    """Per epoch over the models in `series` (curve_series' output): mean, min, max and n (how many models
    reached that epoch: early stopping ends some sooner)."""
    frame = pd.DataFrame(series)
    return pd.DataFrame({"mean": frame.mean(1), "min": frame.min(1), "max": frame.max(1),
                         "n": frame.notna().sum(1)}).rename_axis("epoch")


def _curve_panel(ax, hist, cols, group, what):
    handles = []
    for col in cols:
        series = curve_series(hist, col, group)
        if not series:
            continue
        colour = _COLOURS.get(col, "C4")
        if len(series) == 1:
            s = next(iter(series.values()))
            ax.plot(s.index, s.values, marker="o", color=colour)
        else:
            for s in series.values():
                ax.plot(s.index, s.values, color=colour, lw=0.7, alpha=0.55)
            band = spread(series)
            ax.fill_between(band.index, band["min"], band["max"], color=colour, alpha=0.15, lw=0)
            ax.plot(band.index, band["mean"], marker="o", color=colour, lw=2)
        handles.append(Line2D([], [], color=colour, marker="o", lw=2,
                              label=_LABELS.get(col, col) + (f" (mean of {len(series)} {what})" if len(series) > 1 else "")))
    whole_epochs(ax)
    ax.set_xlabel("epoch")
    return handles


def whole_epochs(ax):
    """Ticks on whole epochs only; with one or two epochs the locator alone would tick 0.95 .. 1.05."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    xs = sorted({float(x) for ln in ax.lines for x in ln.get_xdata()})
    if 0 < len(xs) < 3:
        ax.set_xticks(xs)
        ax.set_xlim(xs[0] - 0.5, xs[-1] + 0.5)


def save_curves(history, path, group=None, kept=None):
    """Loss (train, validation) and validation macro F1 / accuracy per epoch from a history.csv frame. With
    several models (`group`: "fold" or "seed", a column of the frame) each model is a thin line, with their
    mean as a thick one and their min-max as a band. `kept`: the epoch (from 1) whose weights the run kept,
    a dashed line on both panels."""
    n = history[group].nunique() if group and group in history else 1
    what = f"{group}s" if n > 1 else ""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, cols, name, ylabel in ((a, ("train_loss", "valid_loss"), "loss", "loss"),
                                   (b, ("macro_f1", "accuracy"), "validation scores", "score")):
        handles = _curve_panel(ax, history, cols, group if n > 1 else None, what)
        if kept is not None:
            ax.axvline(kept, color="k", ls="--", lw=0.9)
            handles.append(Line2D([], [], color="k", ls="--", lw=0.9, label=f"kept: epoch {kept}"))
        if n > 1:
            handles += [Line2D([], [], color="grey", lw=0.7, alpha=0.7, label=f"one {group}"),
                        Patch(color="grey", alpha=0.25, label=f"min-max over {n} {what}")]
        ax.set_ylabel(ylabel), ax.set_title(name + (f" ({n} {what})" if n > 1 else ""), fontsize=10)
        if handles:
            ax.legend(handles=handles, fontsize=7)
    _save(fig, path)


# --- per batch: loss and lr schedule --------------------------------------------------------------------

def batch_axis(trace):
    """The x of each batch of a trace (fastai Recorder: per-batch `loss` and `lr`, and `iters`, the batch
    count at each epoch's end) in epochs: batch k (from 1) of a fit with B batches an epoch sits at k / B,
    so epoch e ends at e and integer ticks fall on epoch ends."""
    n = len(trace["loss"])
    per = (trace.get("iters") or [n])[0] or n
    return np.arange(1, n + 1, dtype=float) / max(per, 1)


def save_batches(traces, path):
    """Per-batch training loss (fastai's smoothed loss, as the progress bar shows it) over the lr schedule,
    one line per model. `traces`: [(name, {"loss": [...], "lr": [...], "iters": [...],
    "valid_loss": [...] (optional, per epoch)})]. Returns False when there is nothing to draw."""
    traces = [(n, t) for n, t in traces if t and len(t.get("loss") or [])]
    if not traces:
        return False
    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, gridspec_kw={"height_ratios": (3, 1.4)})
    many = len(traces) > 1
    first_lr = np.asarray(traces[0][1]["lr"], float)
    same_lr = all(len(t["lr"]) == len(first_lr) and np.allclose(t["lr"], first_lr) for _, t in traces)
    for i, (name, t) in enumerate(traces):
        x, colour = batch_axis(t), f"C{i % 10}" if many else "C0"
        a.plot(x, t["loss"], lw=0.8 if many else 1.2, color=colour, label=f"{name} train (per batch)" if many else
               "train loss (per batch, smoothed)")
        vl = list(t.get("valid_loss") or [])
        if vl:
            a.plot(np.arange(1, len(vl) + 1), vl, ls="none", marker="o", ms=5, color=colour, mfc="white",
                   label=f"{name} validation (epoch end)" if many else "validation loss (epoch end)")
        if not (same_lr and i):  # one line when every model followed the same schedule
            b.plot(x, t["lr"], lw=1, color="k" if same_lr else colour,
                   label=None if not many else f"all {len(traces)} models" if same_lr else name)
    ends = max(len(t.get("iters") or []) for _, t in traces)
    for e in range(1, ends):
        a.axvline(e, color="grey", lw=0.5, ls=":"), b.axvline(e, color="grey", lw=0.5, ls=":")
    a.set_ylabel("loss"), a.set_title("per-batch training loss and the one-cycle lr schedule", fontsize=10)
    a.legend(fontsize=7, ncol=2 if many else 1)
    b.set_ylabel("learning rate"), b.set_xlabel("epoch")
    if many:
        b.legend(fontsize=7)
    b.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    b.xaxis.set_major_locator(MaxNLocator(integer=True))
    b.set_xlim(0, None)
    _save(fig, path)
    return True


# --- lr finder ------------------------------------------------------------------------------------------

def lr_find_points(curve):
    """(lrs, losses) of an lr finder curve ({"lrs": [...], "losses": [...], "suggestion": lr or None}) as
    fastai's plot shows them: the first tenth and the last five points (the divergence) left out."""
    lrs, losses = np.asarray(curve.get("lrs") or [], float), np.asarray(curve.get("losses") or [], float)
    n = min(len(lrs), len(losses))
    lo, hi = (n // 10, n - 5) if n > 20 else (0, n)
    keep = slice(lo, hi)
    ok = np.isfinite(losses[:n][keep])
    return lrs[:n][keep][ok], losses[:n][keep][ok]


def save_lr_find(curves, path):
    """Loss against lr (log scale) of the lr finder, one line per model, with the lr it suggested
    (fastai's valley) marked. `curves`: [(name, {"lrs", "losses", "suggestion"})]. Returns False when
    there is nothing to draw."""
    curves = [(n, c) for n, c in curves if c and len(lr_find_points(c)[0])]
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    many = len(curves) > 1
    for i, (name, c) in enumerate(curves):
        lrs, losses = lr_find_points(c)
        colour = f"C{i % 10}"
        ax.plot(lrs, losses, color=colour, lw=1, label=name if many else "loss (smoothed)")
        s = c.get("suggestion")
        if s:
            ax.plot([s], [np.interp(np.log(s), np.log(lrs), losses)], marker="o", ms=7, color=colour, mfc="white",
                    ls="none", label=f"{name + ': ' if many else ''}suggested lr {s:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)"), ax.set_ylabel("training loss (smoothed)")
    ax.set_title("lr finder (fastai lr_find; the suggestion is its valley)", fontsize=10)
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


# --- top losses -----------------------------------------------------------------------------------------

def top_losses(vp, k=16):
    """The `k` rows of a valid_preds frame (label, pred, p0..p17) whose true label got the lowest
    probability, worst first, with `p_true` and `p_pred` added."""
    probs = vp[[f"p{i}" for i in range(N_CLASSES)]].to_numpy(float)
    idx = np.arange(len(vp))
    out = vp.assign(p_true=probs[idx, vp["label"].to_numpy(int)], p_pred=probs[idx, vp["pred"].to_numpy(int)])
    return out.sort_values(["p_true", "path"], kind="stable").head(k) if len(out) else pd.DataFrame()


def loss_title(r):
    """A top-loss image's title: true and predicted class in words, the person's age (the age group turns
    at 30 and 60, so 29 or 59 read as the next group is a near miss) and person id when known, and the
    two probabilities. `r`: a row of top_losses' frame (attribute access)."""
    who = []
    age = getattr(r, "age", None)
    if age is not None and not pd.isna(age):
        near = next((b for lo, hi, b in AGE_BANDS if lo <= int(age) <= hi), None)
        who.append(f"age {int(age)}" + (f" (near {near})" if near else ""))
    person = getattr(r, "person", None)
    if person is not None and not pd.isna(person):
        who.append(f"person {person}")
    return (f"true: {describe(r.label)}\npred: {describe(r.pred)}\n" + ("  ".join(who) + "\n" if who else "")
            + f"p(true) {r.p_true:.2g}  p(pred) {r.p_pred:.2f}")


def save_top_losses(vp, path, k=16, cols=4):
    """A grid of the validation images the model got most wrong (lowest probability of the true label),
    each titled by loss_title. No learner needed: images load with PIL.
    Returns how many images the grid shows (0: nothing written)."""

    worst = top_losses(vp, k)
    if not len(worst):
        return 0
    rows = -(-len(worst) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, worst.itertuples()):
        try:
            with Image.open(r.path) as im:
                ax.imshow(np.asarray(im.convert("RGB")))
        except (OSError, ValueError):
            ax.text(0.5, 0.5, "image missing", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_title(loss_title(r), fontsize=7)
    fig.suptitle("top losses (validation): lowest probability of the true label", fontsize=9)
    _save(fig, path)
    return len(worst)

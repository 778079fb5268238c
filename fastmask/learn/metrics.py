"""Scores on the 18-class code: macro F1 (zero_division=0) beside accuracy, per task and per class (keyed by
class name, with each class's support: its number of true images)."""
import numpy as np

from fastmask.labels import CLASS_NAMES, N_CLASSES, TASKS, decode


def macro_f1(y, p):
    from sklearn.metrics import f1_score  # here: the statistics below serve the board, which trains nothing
    return float(f1_score(y, p, average="macro", zero_division=0))


def scores(y, p):
    """Every figure a record holds, from true and predicted class ids."""
    y, p = np.asarray(y), np.asarray(p)
    out = {"macro_f1": macro_f1(y, p), "accuracy": float((y == p).mean())}
    for name, yt, pt in zip(TASKS, decode(y), decode(p)):
        out[f"{name}_f1"] = macro_f1(yt, pt)
    from sklearn.metrics import f1_score
    per = f1_score(y, p, labels=range(N_CLASSES), average=None, zero_division=0)
    out["per_class_f1"] = {name: float(f) for name, f in zip(CLASS_NAMES, per)}
    support = np.bincount(y.astype(int), minlength=N_CLASSES)
    out["per_class_support"] = {name: int(n) for name, n in zip(CLASS_NAMES, support)}
    return out


def group_counts(y, p, groups, n_groups, n_classes=N_CLASSES):
    """Per group, per class: true positives, false positives, false negatives, as (n_groups, 3, n_classes)."""
    y, p, groups = np.asarray(y, int), np.asarray(p, int), np.asarray(groups, int)
    hit = y == p
    base = groups * 3 * n_classes
    idx = np.concatenate([base[hit] + y[hit], base[~hit] + n_classes + p[~hit], base[~hit] + 2 * n_classes + y[~hit]])
    return np.bincount(idx, minlength=n_groups * 3 * n_classes).reshape(n_groups, 3, n_classes).astype(float)


def f1_per_class(c):
    """Per-class F1 from summed counts (..., 3, classes); 0 where a class has no image and no prediction."""
    tp, fp, fn = c[..., 0, :], c[..., 1, :], c[..., 2, :]
    return np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(tp + fp + fn) > 0)


def f1_of_counts(c):
    """Macro F1 from summed counts (..., 3, classes): classes seen in labels or predictions, zero_division 0,
    as `macro_f1` (scikit-learn's f1_score, average="macro") computes it."""
    seen = (c.sum(-2) > 0)
    return f1_per_class(c).sum(-1) / np.maximum(seen.sum(-1), 1)


def bootstrap_weights(rng, units, n):
    """`n` draws of multinomial weights over `units` (each unit's count in one bootstrap sample), (n, units)."""
    return rng.multinomial(units, np.full(units, 1 / units), size=n).astype(float)


def resum(counts, w):
    """Per-unit counts (units, 3, C) summed under bootstrap weights `w` (B, units): (B, 3, C)."""
    return (w @ counts.reshape(len(counts), -1)).reshape(len(w), *counts.shape[1:])


def paired_difference(y, p_a, p_b, groups, draws=400, seed=0):
    """(macro F1 of `p_a` minus that of `p_b` on the same images, its standard error under a bootstrap over
    `groups`): the people, whose 7 photos are correlated, drawn with both predictions together."""
    codes = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    n = int(codes.max()) + 1 if len(codes) else 0
    a, b = group_counts(y, p_a, codes, n), group_counts(y, p_b, codes, n)
    w = bootstrap_weights(np.random.default_rng(seed), n, draws)
    diff = f1_of_counts(resum(a, w)) - f1_of_counts(resum(b, w))
    return float(f1_of_counts(a.sum(0)) - f1_of_counts(b.sum(0))), float(diff.std(ddof=1))


def _f1_from_preds(preds, targs):
    return macro_f1(targs.cpu().numpy(), preds.argmax(-1).cpu().numpy())


def MacroF1():
    """fastai metric over the whole validation set (not averaged over batches)."""
    from fastai.metrics import AccumMetric
    return AccumMetric(_f1_from_preds, flatten=False, name="macro_f1", to_np=False)

"""Scores on the 18-class code: macro F1 (zero_division=0) beside accuracy, per task and per class (keyed by
class name, with each class's support: its number of true images)."""
import numpy as np
from fastai.metrics import AccumMetric
from sklearn.metrics import f1_score

from fastmask.labels import CLASS_NAMES, N_CLASSES, decode, TASKS


def macro_f1(y, p):
    return float(f1_score(y, p, average="macro", zero_division=0))


def scores(y, p):
    """Every figure a record holds, from true and predicted class ids."""
    y, p = np.asarray(y), np.asarray(p)
    out = {"macro_f1": macro_f1(y, p), "accuracy": float((y == p).mean())}
    for name, yt, pt in zip(TASKS, decode(y), decode(p)):
        out[f"{name}_f1"] = macro_f1(yt, pt)
    per = f1_score(y, p, labels=range(N_CLASSES), average=None, zero_division=0)
    out["per_class_f1"] = {name: float(f) for name, f in zip(CLASS_NAMES, per)}
    support = np.bincount(y.astype(int), minlength=N_CLASSES)
    out["per_class_support"] = {name: int(n) for name, n in zip(CLASS_NAMES, support)}
    return out


def _f1_from_preds(preds, targs):
    return macro_f1(targs.cpu().numpy(), preds.argmax(-1).cpu().numpy())


def MacroF1():
    """fastai metric over the whole validation set (not averaged over batches)."""
    return AccumMetric(_f1_from_preds, flatten=False, name="macro_f1", to_np=False)

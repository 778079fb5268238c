"""Why a verdict came out as it did, and what to try next: per-class F1 of child minus parent with person
bootstrap intervals, the validation images that flipped between them, and suggestions drawn from the child's
measured errors. Numbers in, numbers out: the frames are the runs' validation predictions (path, person,
label, pred[, seed]); nothing here reads a file."""
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fastmask.labels import AGE_GROUPS, CLASS_NAMES, N_CLASSES, decode
from fastmask.learn.metrics import bootstrap_weights, f1_per_class, group_counts, resum

DRAWS = 400
LEVEL = 0.95


def paired_rows(child, parent):
    """The child's and the parent's predictions of the same validation images, paired by path (and by seed
    where both ran the same seeds), as one frame: path, person, label, child, parent[, seed]. Rows are never
    paired by position: two runs may list their images in another order."""
    keys = ["path"]
    if "seed" in child and "seed" in parent and set(child["seed"]) & set(parent["seed"]):
        keys.append("seed")
    else:  # no seed in common: the first seed of each side, so an image appears once per side
        child, parent = (f[f["seed"] == f["seed"].iloc[0]] if "seed" in f and len(f) else f for f in (child, parent))
    c = child[[*keys, "person", "label", "pred"]].rename(columns={"pred": "child"})
    p = parent[[*keys, "label", "pred"]].rename(columns={"pred": "parent", "label": "parent_label"})
    both = c.merge(p, on=keys, how="inner", validate="one_to_one")
    # a relabelled child may see other labels for the same image: judge both against the child's
    return both.drop(columns="parent_label").reset_index(drop=True)


@dataclass
class ClassDelta:
    cls: int
    name: str
    child: float
    parent: float
    delta: float
    low: float
    high: float
    support: int


def class_deltas(pairs, draws=DRAWS, seed=0, level=LEVEL):
    """Per class: child F1, parent F1, their difference and its interval under a bootstrap over people (a
    person's photos drawn together, with both models' predictions). Classes with no validation image are left
    out."""
    if not len(pairs):
        return []
    codes, _ = pd.factorize(pairs["person"].astype(str))
    n = int(codes.max()) + 1
    y = pairs["label"].to_numpy(int)
    a, b = (group_counts(y, pairs[side].to_numpy(int), codes, n) for side in ("child", "parent"))
    w = bootstrap_weights(np.random.default_rng(seed), n, draws)
    diff = f1_per_class(resum(a, w)) - f1_per_class(resum(b, w))
    lo, hi = np.quantile(diff, [(1 - level) / 2, (1 + level) / 2], axis=0)
    fc, fp = f1_per_class(a.sum(0)), f1_per_class(b.sum(0))
    support = np.bincount(y, minlength=N_CLASSES)
    return [ClassDelta(k, CLASS_NAMES[k], float(fc[k]), float(fp[k]), float(fc[k] - fp[k]), float(lo[k]),
                       float(hi[k]), int(support[k])) for k in range(N_CLASSES) if support[k]]


def flips(pairs):
    """The images one model gets right and the other wrong: `fixed` (the child right, the parent wrong) and
    `broken` (the reverse), each a frame of path, person, label, child, parent."""
    right_c, right_p = pairs["child"] == pairs["label"], pairs["parent"] == pairs["label"]
    return pairs[right_c & ~right_p].reset_index(drop=True), pairs[~right_c & right_p].reset_index(drop=True)


def flip_counts(pairs):
    """Per true class with any flip: (class name, fixed, broken), most flips first."""
    fixed, broken = flips(pairs)
    f = fixed["label"].value_counts()
    b = broken["label"].value_counts()
    classes = sorted(set(f.index) | set(b.index), key=lambda k: (-(f.get(k, 0) + b.get(k, 0)), k))
    return [(CLASS_NAMES[int(k)], int(f.get(k, 0)), int(b.get(k, 0))) for k in classes]


# --- what to try next ------------------------------------------------------------------------------------

@dataclass
class Suggestion:
    recipe: str      # a recipe that exists, by name
    why: str         # the measured figure that triggered it, in words
    command: str = ""


# thresholds a person would call "most", "far below", "well above"; the figure is always quoted with them
AGE_BOUNDARY_SHARE = 0.5     # of age errors between 30-59 and >=60
MIN_AGE_ERRORS = 5
RARE_GAP = 0.2               # mean F1 of the >=60 classes below that of the rest
MASK_ERROR_SHARE = 0.05      # of images with the mask status wrong
HOLDOUT_GAP = 0.1            # validation macro F1 above holdout macro F1


def errors(y, p):
    """The measured weaknesses of predictions `p` of labels `y` (class ids): age errors and how many cross the
    60 boundary, per-class F1 of the rare old classes against the rest, the share of mask-status errors."""
    y, p = np.asarray(y, int), np.asarray(p, int)
    (my, _, ay), (mp, _, ap) = decode(y), decode(p)
    age_wrong = ay != ap
    boundary = age_wrong & (np.minimum(ay, ap) == 1) & (np.maximum(ay, ap) == 2)
    f1 = f1_per_class(group_counts(y, p, np.zeros(len(y), int), 1).sum(0))
    old = np.array([decode(k)[2] == len(AGE_GROUPS) - 1 for k in range(N_CLASSES)])
    seen = np.bincount(y, minlength=N_CLASSES) > 0
    mean = lambda m: float(f1[m & seen].mean()) if (m & seen).any() else None  # noqa: E731
    return {"age_errors": int(age_wrong.sum()), "age_boundary_errors": int(boundary.sum()),
            "old_f1": mean(old), "rest_f1": mean(~old), "mask_error_share": float((my != mp).mean()) if len(y) else 0.0}


def suggest(valid, metrics, recipes, lineage=(), split=None, command=None):
    """What to try next, from the run's own errors (`valid`: path, person, label, pred) and `metrics`, naming
    only recipes in `recipes` (names that exist) and none the run already descends from (`lineage`). Each
    suggestion quotes the figure that triggered it; `command(name)` gives the line to paste."""
    e, out = errors(valid["label"], valid["pred"]), []
    avail = [r for r in recipes if r not in set(lineage)]

    def add(names, why):
        name = next((r for r in names if r in avail), None)
        if name is not None and name not in [s.recipe for s in out]:
            out.append(Suggestion(name, why, command(name) if command else ""))

    if e["age_errors"] >= MIN_AGE_ERRORS and e["age_boundary_errors"] / e["age_errors"] >= AGE_BOUNDARY_SHARE:
        add(["age58"], f"{e['age_boundary_errors']} of {e['age_errors']} age errors fall between 30-59 and >=60")
    if e["old_f1"] is not None and e["rest_f1"] is not None and e["rest_f1"] - e["old_f1"] >= RARE_GAP:
        add(["oversample", "rare_cutmix", "weighted_sampler"],
            f"the >=60 classes average F1 {e['old_f1']:.2f} against {e['rest_f1']:.2f} for the rest")
    if e["mask_error_share"] >= MASK_ERROR_SHARE:
        add(["face_crop"], f"{e['mask_error_share']:.0%} of validation images have the mask status wrong")
    hold, val = metrics.get("holdout_macro_f1"), metrics.get("macro_f1")
    if (isinstance(hold, (int, float)) and isinstance(val, (int, float)) and val - hold >= HOLDOUT_GAP
            and str(split or "").startswith("random")):
        add(["person_split"], f"validation macro F1 {val:.3f} is {val - hold:.3f} above the holdout's {hold:.3f} "
                              "with a random split: the same people on both sides")
    return out

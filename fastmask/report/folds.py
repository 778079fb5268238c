"""k-fold cross-validation on person-grouped folds: which models a recipe trains, and the
out-of-fold (OOF) table and CV figures their validation predictions make.

`split="kfold:K"` trains K models; model F validates on fold F of `fastmask.split.person_kfold`
(the recipe it trains has `split="kfold:K/F"`, which `Splitter` reads). The folds' validation
parts partition the people, so every training image gets exactly one OOF prediction."""
import numpy as np
import pandas as pd

from fastmask.labels import N_CLASSES

PROB_COLS = [f"p{i}" for i in range(N_CLASSES)]


def n_folds(recipe):
    """K for a `kfold:K` recipe, None for a single split. `kfold:K/F` (one fold) is a single split."""
    return recipe.split.n_folds


def folds(recipe):
    """The fold numbers a run trains: [None] for a single split, else 0..K-1."""
    return recipe.split.folds()


def fold_recipe(recipe, fold):
    """The recipe that trains fold `fold` (itself for a single split); same name, file and parent."""
    return recipe if fold is None else recipe.variant(split=recipe.split.one(fold))


def oof_frame(parts):
    """One row per validation image of every part: path, person, label, p0..p17, fold.

    `parts` are (fold, rows, probs) with `rows` the validation rows (path, person, label)."""
    frames = []
    for fold, rows, probs in parts:
        f = rows[["path", "person", "label"] + (["age"] if "age" in rows else [])].reset_index(drop=True)
        p = pd.DataFrame(np.asarray(probs, dtype=np.float64).round(5), columns=PROB_COLS[:np.shape(probs)[1]])
        frames.append(pd.concat([f, p], axis=1).assign(fold=-1 if fold is None else int(fold)))
    return pd.concat(frames, ignore_index=True)


def probs_of(oof):
    return oof[[c for c in PROB_COLS if c in oof.columns]].to_numpy()


def cv_summary(fold_scores):
    """{"folds": [...], "cv_mean", "cv_std"} from per-fold macro F1 (std over folds, ddof=1)."""
    f = [float(x) for x in fold_scores]
    return {"folds": f, "cv_mean": float(np.mean(f)) if f else None,
            "cv_std": float(np.std(f, ddof=1)) if len(f) > 1 else 0.0 if f else None}


def check_partition(oof, df):
    """Problems (strings) when the OOF rows are not exactly one per training image with each person in one fold."""
    out = []
    counts = oof["path"].value_counts()
    if (counts > 1).any():
        out.append(f"{int((counts > 1).sum())} images with more than one OOF row (first: {counts.index[0]})")
    missing = set(df["path"]) - set(oof["path"])
    if missing:
        out.append(f"{len(missing)} training images without an OOF row")
    per_person = oof.groupby("person")["fold"].nunique()
    if (per_person > 1).any():
        out.append(f"{int((per_person > 1).sum())} people in more than one fold")
    return out

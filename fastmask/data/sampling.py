"""Rare classes seen more often: per-row weights for fastai's WeightedDL, or copied training rows.

Weights change how often rows are drawn and keep epochs the same length; oversampling adds rows, so
each copy gets its own augmentation draw and an epoch grows. Both leave validation rows alone."""
import fastai.callback.data  # noqa: F401  (defines DataBlock.weighted_dataloaders, used with class_weights)
import numpy as np
import pandas as pd

from fastmask.choices import Choices
from fastmask.errors import FastmaskError
from fastmask.labels import N_CLASSES


def class_counts(labels, idx=None):
    """Rows per class id (length N_CLASSES), counted over positions `idx` (default: all)."""
    y = np.asarray(labels)
    y = y if idx is None else y[np.asarray(idx, dtype=int)]
    return np.bincount(y.astype(int), minlength=N_CLASSES)


def class_weights(labels, power=1.0, idx=None):
    """One weight per row of `labels`: (1 / rows of its class) ** power, summing to 1.

    power=1 draws every class equally often, 0 draws rows uniformly, 0.5 sits between. Frequencies
    come from the rows at `idx` (pass the training positions) or from all rows. For
    `DataBlock.weighted_dataloaders(df, wgts, ...)`, which wants a weight for every row and keeps
    the training ones itself."""
    y = np.asarray(labels).astype(int)
    counts = class_counts(y, idx).astype(float)
    # Rows of classes absent from the counted (training) rows are never drawn: weight 0. A person-
    # grouped fold can leave a rare class entirely in validation.
    w = np.where(counts[y] > 0, np.maximum(counts[y], 1) ** -float(power), 0.0)
    if w.sum() == 0:
        raise FastmaskError("class_weights: no counted rows to weight")
    return w / w.sum()


def _copies_per_class(counts, share):
    # Copies k_c so that every class below `share` reaches it after the copies are added. Adding rows
    # shrinks every other class's share, which can push a class just above `share` below it:
    # grow the set of rare classes until none is left behind.
    n = counts.sum()
    present = counts > 0
    rare = present & (counts < share * n)
    while True:
        r, s = rare.sum(), counts[rare].sum()
        if r == 0:
            return np.zeros_like(counts)
        total = n + max(0.0, (r * share * n - s) / (1 - r * share))
        more = present & ~rare & (counts < share * total)
        if not more.any():
            break
        rare |= more
    return np.where(rare, np.maximum(0, np.round(share * total).astype(int) - counts), 0)


def oversample(df, train_idx, target_share=0.5 / N_CLASSES, seed=0, label_col="label"):
    """(df_out, train_idx_out): `df` with copies of rare training rows appended at the end.

    A class whose share of the training rows is below `target_share` gets copies of its own training
    rows (spread evenly over them) until it holds about that share. Copies keep every column (person
    id included, so person-grouped checks still see them) and carry `copy` = 1, 2, ... (0 for
    originals). Existing positions stay valid; validation rows are never copied. df_out has a fresh
    RangeIndex. Split the result with fixed positions (e.g. `IndexSplitter(valid_idx)`), not by
    re-running a person split, which would draw a different split over the grown frame."""
    if not 0 < target_share < 1 / max(1, (class_counts(df[label_col], train_idx) > 0).sum()):
        raise FastmaskError(f"oversample: target_share {target_share} must be above 0 and below "
                            "1 / number of classes present")
    train_idx = np.asarray(train_idx, dtype=int)
    y = df[label_col].to_numpy().astype(int)
    k = _copies_per_class(class_counts(y, train_idx), target_share)
    rng = np.random.default_rng(seed)
    picks, nth = [], []
    for c in np.flatnonzero(k):
        rows = train_idx[y[train_idx] == c]
        # Whole rounds over a shuffled order, so each row is copied floor or ceil(k / rows) times.
        order = np.concatenate([rng.permutation(rows) for _ in range(-(-k[c] // len(rows)))])[: k[c]]
        picks.append(order)
        nth.append(np.arange(k[c]) // len(rows) + 1)
    out = df.reset_index(drop=True)
    if "copy" not in out:
        out["copy"] = 0
    if not picks:
        return out, train_idx
    picks, nth = np.concatenate(picks), np.concatenate(nth)
    copies = out.iloc[picks].copy()
    copies["copy"] = out["copy"].to_numpy()[picks] + nth
    out = pd.concat([out, copies], ignore_index=True)
    return out, np.concatenate([train_idx, np.arange(len(df), len(out))])


SAMPLERS = Choices("sampler")  # the recipe field's names, registered on what each one does


def resample(sampler, df, train_idx, seed=0, label_col="label"):
    """(df, train_idx, weights) for a recipe's `sampler`: rows added by oversampling, or per-row weights
    for `DataBlock.weighted_dataloaders` (None: draw rows uniformly)."""
    fn, value = SAMPLERS.lookup(sampler)
    return fn(df, train_idx, None if value is None else float(value), seed, label_col)


@SAMPLERS.register(None)
def _uniform(df, train_idx, value, seed, label_col):
    return df, train_idx, None


@SAMPLERS.register("weighted", value="power")
def _weighted(df, train_idx, power, seed, label_col):
    """fastai's WeightedDL draws rows with `class_weights` (power 1: every class equally often)."""
    return df, train_idx, class_weights(df[label_col].to_numpy(), power=1.0 if power is None else power, idx=train_idx)


@SAMPLERS.register("oversample", value="share")
def _oversample(df, train_idx, share, seed, label_col):
    """Copies of rare training rows up to `share` of the training rows per class (default half of 1/18)."""
    df, train_idx = oversample(df, train_idx, target_share=0.5 / N_CLASSES if share is None else share,
                               seed=seed, label_col=label_col)
    return df, train_idx, None

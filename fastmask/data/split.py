"""Person-grouped splits: a person's photos never sit on both sides of a split.

Each splitter is a fastai-style callable `df -> (train_idx, valid_idx)` over integer positions."""
import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from fastmask.choices import Choices, Split
from fastmask.errors import FastmaskError
from fastmask.labels import age_group


class LeakError(FastmaskError):
    pass


def _strata(df):
    # gender x age group; the duplicated id 003397 (ages 19 and 20) stays in one stratum anyway.
    return (df["gender"].astype(str) + "/" + age_group(df["age"].to_numpy()).astype(str)).to_numpy()


def _sgkf(df, n_splits, seed):
    if df["person"].nunique() < n_splits:
        raise FastmaskError(f"split: {df['person'].nunique()} people cannot fill {n_splits} folds")
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # sklearn warns when a stratum has fewer people than folds
        warnings.simplefilter("ignore", UserWarning)
        return [(np.sort(t), np.sort(v)) for t, v in sgkf.split(np.zeros(len(df)), _strata(df), df["person"].to_numpy())]


def person_kfold(df, n_splits=5, seed=0):
    """`n_splits` (train_idx, valid_idx) pairs whose validation parts partition the people."""
    folds = _sgkf(df, n_splits, seed)
    for t, v in folds:
        check_leak(df, t, v)
    return folds


def person_split(df, valid_pct=0.2, seed=0):
    """One stratified, person-grouped split holding out about `valid_pct` of the people."""
    if not 0 < valid_pct < 1:
        raise FastmaskError(f"valid_pct: {valid_pct} is not between 0 and 1")
    n_splits = max(2, round(1 / valid_pct))
    t, v = _sgkf(df, n_splits, seed)[0]
    check_leak(df, t, v)
    return t, v


def random_split(df, valid_pct=0.2, seed=0):
    """An image-level random split: leaks people across the split; kept to reproduce that mistake."""
    idx = np.random.default_rng(seed).permutation(len(df))
    n_valid = int(round(len(df) * valid_pct))
    t, v = np.sort(idx[n_valid:]), np.sort(idx[:n_valid])
    n = len(straddlers(df, t, v))
    warnings.warn(f"random split: {n} of {df['person'].nunique()} people have photos on both sides; "
                  "validation scores will be optimistic", stacklevel=2)
    return t, v


def straddlers(df, train_idx, valid_idx):
    """Person ids with photos on both sides."""
    p = df["person"].to_numpy()
    return sorted(set(p[train_idx]) & set(p[valid_idx]))


def check_leak(df, train_idx, valid_idx):
    both = straddlers(df, train_idx, valid_idx)
    if both:
        raise LeakError(f"split leaks {len(both)} people onto both sides (first: {both[0]})")


SPLITS = Choices("split")  # the recipe field's names, registered on what each one does


@SPLITS.register("person")
def _person(df, split, valid_pct, seed):
    return person_split(df, valid_pct, seed)


@SPLITS.register("random")
def _random(df, split, valid_pct, seed):
    return random_split(df, valid_pct, seed)


@SPLITS.register("kfold", value="K[/F]", needs_value=True)
def _kfold(df, split, valid_pct, seed):
    """Fold F of `person_kfold` (fold 0 for a whole "kfold:K", which a run trains fold by fold)."""
    return person_kfold(df, split.k, seed)[split.fold or 0]


class Splitter:
    """fastai splitter from a recipe's `split` field (a Split, or its text): "person", "random" or "kfold:K/F"
    (fold F of K)."""
    def __init__(self, kind="person", valid_pct=0.2, seed=0):
        self.kind, self.valid_pct, self.seed = kind, valid_pct, seed

    def __call__(self, df):
        fn = SPLITS[self.kind]
        try:
            split = Split(self.kind)  # a recipe's split is one already: handed on as it is
        except ValueError as e:
            raise FastmaskError(f"recipe field split: {e}") from None
        return fn(df, split, self.valid_pct, self.seed)

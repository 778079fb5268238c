from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fastmask.data.sampling import class_counts, class_weights, oversample
from fastmask.errors import FastmaskError

REPO = Path(__file__).resolve().parent.parent

# Images per class in the real training set (dataset-facts.md): the skew the sampler must undo.
REAL = np.array([2745, 2050, 415, 3660, 4085, 545, 549, 410, 83, 732, 817, 109, 549, 410, 83, 732, 817, 109])


def skewed(scale=20, seed=0):
    y = np.repeat(np.arange(18), np.maximum(1, REAL // scale))
    return np.random.default_rng(seed).permutation(y)


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_weighted_draws_reach_the_set_rate(power):
    y = skewed()
    w = class_weights(y, power)
    assert w.shape == y.shape and np.isclose(w.sum(), 1)
    counts = np.bincount(y, minlength=18)
    # class share of draws: rows of class c weigh counts_c ** -power, so the class draws counts_c ** (1 - power)
    want = counts ** (1 - power) / (counts ** (1 - power)).sum()
    torch.manual_seed(0)
    draws = y[torch.multinomial(torch.tensor(w), 4000, replacement=True).numpy()]
    got = np.bincount(draws, minlength=18) / len(draws)
    assert abs(got[8] - want[8]) < 0.02  # a rarest class (83 images in the real set)
    assert np.abs(got - want).max() < 0.03
    assert got[8] > 3 * counts[8] / counts.sum()  # far above its natural share


def test_weighted_dataloaders_draw_training_rows_at_the_set_rate():
    # The exact call train.py makes: weights for every row, fastai keeps the training ones.
    from fastai.data.block import CategoryBlock, DataBlock, TransformBlock
    from fastai.data.transforms import IndexSplitter
    y = skewed(scale=40)
    valid = np.arange(0, len(y), 5)
    block = DataBlock(blocks=(TransformBlock, CategoryBlock(vocab=list(range(18)))),
                      get_x=lambda i: i, get_y=lambda i: int(y[i]), splitter=IndexSplitter(valid))
    np.random.seed(0)
    dls = block.weighted_dataloaders(np.arange(len(y)), class_weights(y), bs=64, num_workers=0)
    drawn = np.concatenate([np.asarray(xb) for _ in range(8) for xb, _ in dls.train])
    assert not set(drawn) & set(valid)
    share = np.bincount(y[drawn], minlength=18) / len(drawn)
    assert np.abs(share - 1 / 18).max() < 0.03
    assert len(list(dls.valid)) and np.array_equal(np.concatenate([np.asarray(x) for x, _ in dls.valid]), valid)


def test_weights_counted_on_training_rows():
    y = np.array([0, 0, 0, 1, 1, 1])
    w = class_weights(y, idx=[0, 1, 3])  # class 0: 2 train rows, class 1: 1
    assert w[3] == pytest.approx(2 * w[0])
    with pytest.raises(FastmaskError):
        class_weights(np.array([0, 0, 2]), idx=[])


def frame(seed=0, scale=20):
    y = skewed(scale, seed)
    return pd.DataFrame({"path": [f"/img/{i}.jpg" for i in range(len(y))],
                         "person": [f"{i // 7:06d}" for i in range(len(y))], "label": y})


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), share=st.sampled_from([0.5 / 18, 0.8 / 18, 0.03]))
def test_oversample_copies_train_rows_to_the_target_share(seed, share):
    df = frame(seed)
    rng = np.random.default_rng(seed)
    valid = np.sort(rng.choice(len(df), len(df) // 5, replace=False))
    train = np.setdiff1d(np.arange(len(df)), valid)
    out, t2 = oversample(df, train, target_share=share, seed=seed)
    n = len(df)
    # Originals, positions and validation rows untouched; copies appended and all in training.
    pd.testing.assert_frame_equal(out.iloc[:n].drop(columns="copy"), df)
    assert (out["copy"].iloc[:n] == 0).all() and (out["copy"].iloc[n:] >= 1).all()
    assert np.array_equal(t2[: len(train)], train) and np.array_equal(t2[len(train):], np.arange(n, len(out)))
    assert set(t2).isdisjoint(valid)
    src = out.iloc[n:].merge(df.reset_index(), on=["path", "person", "label"])
    assert set(src["index"]) <= set(train)  # every copy is of a training row, person id kept
    before = class_counts(df.label, train) / len(train)
    after = class_counts(out.label, t2) / len(t2)
    present = before > 0
    assert (after[present] >= share - 1.5 / len(t2)).all()
    untouched = before >= share * (len(t2) / len(train))
    assert np.array_equal(class_counts(out.label, t2)[untouched], class_counts(df.label, train)[untouched])


def test_oversample_is_deterministic_and_spreads_copies():
    df = frame()
    train = np.arange(len(df))
    a, ta = oversample(df, train, seed=3)
    b, tb = oversample(df, train, seed=3)
    c, _ = oversample(df, train, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    copies = a.iloc[len(df):]
    assert len(copies) > 0 and copies.path.isin(df.path).all()
    for c, rows in copies.groupby("label"):
        # Each training row of the class is copied floor or ceil(k / rows) times.
        n = rows.path.value_counts().reindex(df.path[df.label == c], fill_value=0)
        assert n.max() - n.min() <= 1

def test_oversample_rejects_impossible_share():
    with pytest.raises(FastmaskError):
        oversample(frame(), np.arange(10), target_share=0.5)


def test_classes_missing_from_training_get_weight_zero():
    from fastmask.data.sampling import class_weights
    labels = np.array([0, 0, 1, 5, 5, 11])
    w = class_weights(labels, idx=[0, 1, 2])  # classes 5 and 11 sit only in validation
    assert w[3] == w[4] == w[5] == 0 and np.isclose(w[:3].sum(), 1) and np.isclose(w[2], 2 * w[0])


# --- hand-computed weights; the recipe's sampler field as the DataLoaders draw it ---------------------------------

def test_class_weights_by_hand():
    y = np.array([0] * 8 + [1] * 2 + [2])
    # power 1: a row weighs 1 / (rows of its class): 1/8, 1/2, 1, summing to 3 -> 1/24, 1/6, 1/3; each class 1/3.
    w = class_weights(y, power=1.0)
    assert w == pytest.approx([1 / 24] * 8 + [1 / 6] * 2 + [1 / 3], abs=1e-12)
    # power 0.5: 1/sqrt 8, 1/sqrt 2, 1; class totals 2 sqrt 2, sqrt 2, 1 -> shares 2√2 : √2 : 1 over 3√2 + 1.
    w = class_weights(y, power=0.5)
    total = 3 * 2 ** 0.5 + 1
    assert [w[y == c].sum() for c in range(3)] == pytest.approx([2 * 2 ** 0.5 / total, 2 ** 0.5 / total, 1 / total])
    assert class_weights(y, power=0.0) == pytest.approx(np.full(11, 1 / 11))  # power 0: uniform rows


def test_weighted_sampler_field_draws_training_classes_equally(twin):
    from fastmask.repl import load_recipe
    r = load_recipe(REPO / "recipes" / "person_split.py").but(sampler="weighted", size=(32, 24), bs=16, augment="none")
    dls = r.dls(twin)
    items = dls.train.items
    present = np.flatnonzero(np.bincount(items["y"], minlength=18))
    np.random.seed(0)
    drawn = np.concatenate([dls.train.get_idxs() for _ in range(50)])  # 50 epochs of training draws
    share = np.bincount(items["y"].to_numpy()[drawn], minlength=18) / len(drawn)
    # power 1: every class present in training drawn 1 / (classes present) of the time; ~10^4 draws put the sd
    # of a share near sqrt(1/15 * 14/15 / 10^4) = 0.0025, so 0.015 is six of them. Unweighted draws would give
    # the natural shares (the largest class near 0.2).
    assert share[present] == pytest.approx(np.full(len(present), 1 / len(present)), abs=0.015)
    assert share[np.setdiff1d(np.arange(18), present)].sum() == 0
    assert not set(items.person) & set(dls.valid.items.person)


def test_oversample_field_copies_stay_on_the_training_side(twin):
    from fastmask.data.load import load_data
    from fastmask.repl import load_recipe
    r = load_recipe(REPO / "recipes" / "person_split.py").but(sampler="oversample", size=(32, 24), bs=16, augment="none")
    dls = r.dls(twin)
    train, valid = dls.train.items, dls.valid.items
    n = len(load_data(twin).train)
    assert (train["copy"] > 0).any() and (valid["copy"] == 0).all()
    assert len(train) + len(valid) > n and len(valid) + (train["copy"] == 0).sum() == n  # copies added to train only
    assert not set(train.person) & set(valid.person)  # copies keep their person, a training one
    share_before = np.bincount(train.loc[train["copy"] == 0, "y"], minlength=18) / (train["copy"] == 0).sum()
    share_after = np.bincount(train["y"], minlength=18) / len(train)
    rare = (share_before > 0) & (share_before < 0.5 / 18)
    assert rare.any() and (share_after[rare] > share_before[rare]).all()


def test_sampler_field_values_come_from_the_registry():
    from fastmask.data.sampling import SAMPLERS, resample
    df = frame()
    train = np.arange(0, len(df), 2)
    same, t, w = resample(None, df, train)
    assert same is df and t is train and w is None
    _, t, w = resample("weighted:0.5", df, train, label_col="label")
    assert np.array_equal(t, train) and np.allclose(w, class_weights(df["label"], power=0.5, idx=train))
    assert np.allclose(resample("weighted", df, train)[2], class_weights(df["label"], power=1.0, idx=train))
    out, t, w = resample("oversample:0.04", df, train, seed=2)
    want, want_t = oversample(df, train, target_share=0.04, seed=2)
    pd.testing.assert_frame_equal(out, want)
    assert np.array_equal(t, want_t) and w is None
    assert SAMPLERS.describe() == "none, weighted[:power], oversample[:share]"
    with pytest.raises(FastmaskError, match=r"^recipe field sampler: 'uniform' is not a valid choice \(none, weighted"):
        resample("uniform", df, train)

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from fastmask.errors import FastmaskError
from fastmask.labels import age_group
from fastmask.split import LeakError, Splitter, check_leak, person_kfold, person_split, random_split


def roster(n_people, seed=0, photos=7):
    """A frame shaped like read_train's, with the duplicated-id quirk (one person, two folders)."""
    rng = np.random.default_rng(seed)
    ages = rng.choice([19, 25, 40, 57, 60], size=n_people, p=[.3, .2, .2, .2, .1])
    genders = rng.choice(["male", "female"], size=n_people, p=[.4, .6])
    rows = []
    for i in range(n_people):
        pid = f"{i + 1:06d}"
        for k in range(photos):
            rows.append(dict(person=pid, folder=f"{pid}_{genders[i]}", gender=genders[i], age=int(ages[i])))
    rows += [dict(person="000001", folder="000001_b", gender=genders[0], age=int(ages[0]) + 1)] * photos
    return pd.DataFrame(rows)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(20, 150), seed=st.integers(0, 10_000), pct=st.sampled_from([0.1, 0.2, 0.25, 0.5]))
def test_person_split_never_straddles(n, seed, pct):
    df = roster(n, seed)
    t, v = person_split(df, pct, seed)
    assert set(df.person.iloc[t]).isdisjoint(df.person.iloc[v])
    assert len(t) + len(v) == len(df) and len(set(t) | set(v)) == len(df)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(25, 120), k=st.integers(2, 5), seed=st.integers(0, 1000))
def test_kfold_partitions_people(n, k, seed):
    df = roster(n, seed)
    folds = person_kfold(df, k, seed)
    assert len(folds) == k
    valid = np.concatenate([v for _, v in folds])
    assert sorted(valid) == list(range(len(df)))  # every image validated exactly once
    for t, v in folds:
        assert set(df.person.iloc[t]).isdisjoint(df.person.iloc[v])


def test_duplicated_id_stays_on_one_side():
    df = roster(60)
    for t, v in person_kfold(df, 5):
        sides = {"t" if i in set(t) else "v" for i in np.flatnonzero(df.person == "000001")}
        assert len(sides) == 1


def test_stratified_within_a_few_points():
    df = roster(1000, seed=3)
    t, v = person_split(df, 0.2, 0)
    strata = df.gender + age_group(df.age.to_numpy()).astype(str)
    share_all, share_valid = strata.value_counts(normalize=True), strata.iloc[v].value_counts(normalize=True)
    assert (share_all - share_valid).abs().max() < 0.03
    assert abs(len(v) / len(df) - 0.2) < 0.03


def test_split_is_reproducible_and_seed_dependent():
    df = roster(200)
    a, b, c = person_split(df, 0.2, 1), person_split(df, 0.2, 1), person_split(df, 0.2, 2)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])


def test_random_split_leaks_and_warns():
    df = roster(100)
    with pytest.warns(UserWarning, match=r"\d+ of 100 people have photos on both sides"):
        t, v = random_split(df)
    with pytest.raises(LeakError):
        check_leak(df, t, v)


def test_splitter_kinds():
    df = roster(50)
    assert np.array_equal(Splitter("person", 0.2, 0)(df)[1], person_split(df, 0.2, 0)[1])
    assert np.array_equal(Splitter("kfold:5/2", 0.2, 0)(df)[1], person_kfold(df, 5, 0)[2][1])
    with pytest.raises(FastmaskError, match="unknown kind"):
        Splitter("nope")(df)
    with pytest.raises(FastmaskError, match="cannot fill"):
        person_kfold(roster(3), 5)

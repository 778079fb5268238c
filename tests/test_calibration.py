"""The verdict's whole procedure, calibrated on planted prediction tables.

A world is 60 validation people x 7 photos (5 mask, 1 incorrect, 1 no mask) with the real class sizes
(dataset-facts.md: people per gender x age group 549 410 83 732 817 109, scaled to 60 and stratified as
person_split does: 12 9 2 16 18 3). A trained model ("recipe r, seed s") gets a photo right when
    mu_r + ability_person + difficulty_photo + offset(photo kind, age) + g_s + e_(person,s) + eps_(photo,s) > 0:
people and photos are fixed across seeds and recipes (a person's 7 photos share their ability: person
clustering), a seed moves every person (g_s), each person (e) and each photo (eps); a wrong photo goes to a
fixed confusable class (mostly the neighbouring age group). At `noise=1` one model's macro F1 varies by
about 0.03 from seed to seed (harsher than the 0.012-0.026 the issue measured on the twin), at `noise=0.3`
by 0.015, about the twin's. Accuracy is about 0.76, macro F1 about 0.58.

A/A: child and parent are the same recipe (same mu), trained with independent seed noise, so every claim is
false. "Person-heterogeneous null": the child's person abilities are correlated 0.8 with the parent's, from
the same distribution, so over all people neither is better, but on these 60 people one is, by an amount
more seeds never remove: only the person term of the interval covers it.

The procedure is the `--decide` loop: judge at 2, 3, ... paired seeds, stop at the first supported /
refuted / no effect. Monte-Carlo tolerance: with S simulated worlds, a claim count above the 99th
percentile of Binomial(S, 0.05) fails the test (so a true false-claim rate of 5 % fails it 1 % of the time;
the worlds are drawn from fixed seeds, so the test is deterministic). The figures measured with these
seeds are in each test's docstring."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fastmask.report.verdict import compare
from fastmask.store.run_folder import RunFolder

DECIDED = ("supported", "refuted", "no effect")
WEAR = np.array([2745, 2050, 415, 3660, 4085, 545])  # images of classes 0..5: 5 mask photos a person
N_BOOT = 300  # bootstrap draws per verdict (the default is 1000; 300 moves the standard errors by ~4 %)


def groups(n_people):
    """People per gender x age group, stratified as person_split does (largest remainders)."""
    share = WEAR / WEAR.sum() * n_people
    out = np.floor(share).astype(int)
    out[np.argsort(share - out)[::-1][: n_people - out.sum()]] += 1
    return np.repeat(np.arange(6), out)


class World:
    """Validation people: labels, each person's ability, each photo's difficulty and confusable class."""

    def __init__(self, rng, n_people=60):
        g = groups(n_people)
        self.n = n_people
        self.person = np.repeat(np.arange(n_people), 7)
        kind = np.tile([0, 0, 0, 0, 0, 1, 2], n_people)
        y = self.label = kind * 6 + g[self.person]
        self.ability = rng.normal(0, 1.0, n_people)
        self.photo = rng.normal(0, 1.0, len(y))
        m, gen, a = y // 6, (y // 3) % 2, y % 3
        self.offset = np.where(kind == 0, 0.5, -0.3) + np.where(a == 2, -1.5, 0.0)  # the old are hard
        u = rng.random(len(y))
        other_age = np.where(a == 1, np.where(rng.random(len(y)) < .5, 0, 2), 1)
        self.wrong = np.where(u < .6, m * 6 + gen * 3 + other_age,
                              np.where(u < .85, m * 6 + (1 - gen) * 3 + a,
                                       ((m + rng.integers(1, 3, len(y))) % 3) * 6 + gen * 3 + a))

    def model(self, rng, mu, ability, noise=1.0):
        """One trained model's predictions; `noise` scales the training noise."""
        z = (mu + noise * (rng.normal(0, 0.1) + rng.normal(0, 0.25, self.n)[self.person]
                           + rng.normal(0, 0.5, len(self.label)))
             + ability[self.person] + self.photo + self.offset)
        return np.where(z > 0, self.label, self.wrong)

    def frame(self, preds_by_seed):
        paths = [f"/v/{i // 7:03d}/{i % 7}.jpg" for i in range(len(self.label))]
        return pd.concat([pd.DataFrame({"path": paths, "person": (self.person + 1).astype(str), "label": self.label,
                                        "pred": p, "seed": s}) for s, p in preds_by_seed.items()], ignore_index=True)


def pair(rng, seeds, shift=0.0, rho=1.0, mu=1.0, noise=1.0):
    """(child, parent) validation frames with `seeds` paired seeds each."""
    w = World(rng)
    child_ability = rho * w.ability + np.sqrt(1 - rho ** 2) * rng.normal(0, 1, w.n)
    child = w.frame({s: w.model(rng, mu + shift, child_ability, noise) for s in range(seeds)})
    parent = w.frame({s: w.model(rng, mu, w.ability, noise) for s in range(seeds)})
    return child, parent


def record(name, frame, k):
    return RunFolder(Path(f"/nonexistent/{name}"), config={"fields": {"seed": 0}}, metrics={}, valid=frame[frame.seed < k])


def decide(child, parent, max_seeds, looks):
    """The --decide loop: judge at 2, 3, ... paired seeds until a verdict decides. (final verdict, seeds used)."""
    for k in range(2, looks + 1):
        v = compare(record("child", child, k), record("parent", parent, k), max_seeds=max_seeds, n=N_BOOT)
        if v["verdict"] in DECIDED:
            break
    return v, k


def most_claims(sims, rate=0.05):
    """The largest count of claims compatible with a true rate of `rate` (99th percentile of the binomial)."""
    return int(stats.binom.ppf(0.99, sims, rate))


@pytest.mark.parametrize("rho,noise,max_seeds,looks,sims,seed", [
    (1.0, 1.0, 5, 5, 160, 11),       # A/A, harsh training noise, --decide 5: looks at 2..5 seeds, alpha/4 each
    (0.8, 0.3, None, 5, 120, 12),    # person-heterogeneous null, the twin's training noise, open-ended looks
])
def test_a_a_false_claims_stay_under_5_percent_with_repeated_looks(rho, noise, max_seeds, looks, sims, seed):
    """Measured with these seeds: A/A 0 false claims in 160, heterogeneous null 0 in 120 (with other seeds,
    0 in 1,000 and 2 in 1,000 = 0.2 %: the design is conservative). Bounds (99th percentile of
    Binomial(S, 0.05)): 15 of 160, 12 of 120. One-line bugs seen red here: the interval without the seed
    term (person bootstrap only): 144 of 160 A/A; without the person term (seed spread only): 14 of 120
    heterogeneous nulls."""
    rng = np.random.default_rng(seed)
    verdicts = [decide(*pair(rng, looks, rho=rho, noise=noise), max_seeds, looks)[0]["verdict"] for _ in range(sims)]
    claims = sum(v in ("supported", "refuted") for v in verdicts)
    assert claims <= most_claims(sims), (claims, sims)
    assert "unreplicated" not in verdicts and "neither learned" not in verdicts  # the models learned


def test_a_single_look_at_two_seeds_spends_only_its_share():
    """A card judged once at 2 paired seeds (`--replicates 2`, open-ended design) may claim falsely at most
    0.05 / 2 = 2.5 % of the time: 300 A/A worlds, bound 14 (the 99th percentile of Binomial(300, 0.025)).
    Measured: 0. Two seeds taken as a precise measure of training noise (the seed term on a normal
    quantile) claimed 23 of 300."""
    rng = np.random.default_rng(31)
    claims = 0
    for _ in range(300):
        child, parent = pair(rng, 2)
        v = compare(record("child", child, 2), record("parent", parent, 2), n=N_BOOT)
        assert v["level"] == pytest.approx(1 - 0.025)
        claims += v["verdict"] in ("supported", "refuted")
    assert claims <= stats.binom.ppf(0.99, 300, 0.025), claims


def planted(seed, shift, sims):
    """(mean delta, median MDE stated after 5 paired seeds, single-look verdicts at 5 seeds, --decide 5 verdicts)."""
    rng = np.random.default_rng(seed)
    deltas, mdes, single, looped = [], [], [], []
    for _ in range(sims):
        child, parent = pair(rng, 5, shift=shift)
        full = compare(record("child", child, 5), record("parent", parent, 5), max_seeds=5, n=N_BOOT)
        deltas.append(full["delta"])
        mdes.append(full["mde"])
        single.append(full["verdict"])
        looped.append(decide(child, parent, 5, 5)[0]["verdict"])
    return np.mean(deltas), np.median(mdes), single, looped


def test_planted_effect_of_twice_the_stated_mde_is_found():
    """The child's mu is 1.6 higher: a planted gain of about 0.29 macro F1, twice the MDE the verdict states
    after 5 paired seeds (about 0.14 on these tables: a larger gain is also less even across people). The
    `--decide 5` loop must find it (supported) in at least 80 % (the 1st percentile of Binomial(S, 0.8) as
    Monte-Carlo tolerance) and never say refuted or "no effect". Measured: 60 of 60."""
    effect, mde, _, looped = planted(21, 1.6, 60)
    assert 1.8 < effect / mde < 2.2, (effect, mde)  # the planted effect is about twice the stated MDE
    assert looped.count("supported") >= stats.binom.ppf(0.01, len(looped), 0.8), looped
    assert not {"refuted", "no effect"} & set(looped)


def test_the_stated_mde_is_not_understated():
    """At 1x the stated MDE (mu 0.5 higher: gain about 0.11, stated MDE about 0.11 after 5 seeds) one look at 5
    seeds should find it about 80 % of the time: measured 43 of 60. An MDE without the power quantile (z_0.8)
    would be about 0.09 here, so the planted gain would be 1.2 x it (the ratio check fails)."""
    effect, mde, single, _ = planted(22, 0.5, 60)
    assert 0.85 < effect / mde < 1.15, (effect, mde)
    assert single.count("supported") >= 0.6 * len(single), single

"""The statistics of a verdict, on numbers only (no files, no frames): bootstrap weights over people and the
macro F1 they resample, the sequential error rate, the interval from per-seed deltas and their bootstrap draws
(`judge_deltas`), and the paired t-test over k folds (`fold_test`).

Noise has two parts: person noise (a bootstrap over the validation people, 7 correlated photos each, resampled
jointly for every seed and both runs; the part that more seeds cannot average away) on a normal quantile, and
training noise (the spread of the per-seed deltas, which two or three seeds measure badly, floored at the
per-person part of it that the bootstrap measures) on a t quantile with k - 1 degrees of freedom; their
half-widths add in quadrature.

Sequential: `--decide` looks after every added seed pair and users re-judge whenever, so each look spends
part of the error rate. A look is indexed by the number of paired seeds k (the same data always gives the
same verdict), and look k spends alpha / (k (k - 1)) (these sum to alpha over k = 2, 3, ...: valid however
many seeds come), or alpha / (M - 1) when the design caps the seeds at M (`max_seeds`, the recipe's
`decide`). A union bound over the looks: the chance that any look claims a wrong direction, or "no effect"
when the effect is at least min_effect, stays below alpha. Counts and macro F1 from counts are
`fastmask.learn.metrics`' (`group_counts`, `f1_of_counts`), which training's own paired difference uses too."""
import functools
import math

import numpy as np

from fastmask.labels import N_CLASSES
from fastmask.learn.metrics import f1_of_counts

ALPHA = 0.05
POWER = 0.8
# judged_on -> (words for a sentence, classes of the quantity, class ids from 18-class ids)
TASKS = {"macro_f1": ("macro F1", N_CLASSES, lambda y: y),
         "mask_f1": ("mask F1", 3, lambda y: y // 6),
         "gender_f1": ("gender F1", 2, lambda y: (y // 3) % 2),
         "age_f1": ("age F1", 3, lambda y: y % 3)}


def _stats():
    from scipy import stats  # here: the board and compare tables import this module and test nothing
    return stats


# --- the bootstrap over people, on counts ---------------------------------------------------------------

def resample(counts, w):
    """Counts summed under bootstrap weights: `counts` (k, units, 3, C), `w` (B, units) -> (B, k, 3, C)."""
    k, u, _, c = counts.shape
    return (w @ counts.transpose(1, 0, 2, 3).reshape(u, -1)).reshape(len(w), k, 3, c)


def score_draws(counts, w):
    """Observed (k,) and bootstrap (B, k) macro F1 per seed from counts (k, units, 3, C) and weights (B, units)."""
    return f1_of_counts(counts.sum(1)), f1_of_counts(resample(counts, w))


# --- the verdict from per-seed deltas -------------------------------------------------------------------

def spent_alpha(k, alpha=ALPHA, max_seeds=None):
    """The error rate look k (k paired seeds) may spend: alpha / (max_seeds - 1) for a design capped at
    max_seeds, else alpha / (k (k - 1)), which sums to alpha over k = 2, 3, ... (one seed never claims)."""
    if k < 2:
        return alpha
    if max_seeds and max_seeds >= 2:
        return alpha / (max_seeds - 1)
    return alpha / (k * (k - 1))


@functools.lru_cache(maxsize=4096)  # plan() searches seeds and people: thousands of scalar ppf calls, few distinct
def quantile(p, df=math.inf):
    st = _stats()
    return float(st.norm.ppf(p) if not math.isfinite(df) else st.t.ppf(p, df))


def half_width(person_var, seed_var, k, a, power=None):
    """Half-width of the interval (or, with `power`, the MDE): the person part on a normal quantile, the seed
    part (seed_var / k, estimated from k seeds) on a t quantile with k - 1 degrees of freedom, added in
    quadrature (conservative: neither part's uncertainty borrows the other's degrees of freedom)."""
    qp = quantile(1 - a / 2) + (quantile(power) if power else 0)
    out = (qp * math.sqrt(max(person_var, 0.0))) ** 2
    if k > 1 and seed_var > 0:
        qs = quantile(1 - a / 2, k - 1) + (quantile(power, k - 1) if power else 0)
        out += (qs * math.sqrt(seed_var / k)) ** 2
    return math.sqrt(out)


def judge_deltas(seed_deltas, draws, *, min_effect=0.02, alpha=ALPHA, max_seeds=None):
    """The verdict's figures from the per-seed deltas (k,) and their bootstrap draws over people (B, k),
    every seed resampled on the same people: delta, interval, noise, MDE and the verdict word (before the
    chance-level rule).

    Noise: the bootstrap variance of the seed-mean delta is P = F + D / k and that of one seed's delta
    V1 = F + D, where F is the person noise seeds cannot average away (this sample of people favours one
    recipe) and D the per-person part of training noise; so F = (k P - V1) / (k - 1). The between-seed
    variance s^2 of the deltas holds all training noise (D and any shift that moves every person), so it is
    at least D. The interval: delta +- sqrt((z F^0.5)^2 + (t_(k-1) max(s^2, D)^0.5 / k^0.5)^2) at the error
    rate this look spends."""
    d = np.asarray(seed_deltas, float)
    draws = np.asarray(draws, float).reshape(-1, len(d))
    k = len(d)
    delta = float(d.mean())
    boot = float(draws.mean(1).var(ddof=1)) if len(draws) > 1 else 0.0
    one = float(draws.var(0, ddof=1).mean()) if len(draws) > 1 else 0.0
    if k > 1:
        person_var = max((k * boot - one) / (k - 1), 0.0)
        per_person_seed_var = max(k * (one - boot) / (k - 1), 0.0)
        seed_sd = float(d.std(ddof=1))
    else:
        person_var, per_person_seed_var, seed_sd = boot, None, None
    # the per-person part of training noise must show in the spread of the seeds: a spread below it (two
    # seeds that agree by luck) is floored there, since D comes from every person and s^2 from k - 1 df
    seed_var = max(seed_sd ** 2, per_person_seed_var) if seed_sd is not None else 0.0
    se = math.sqrt(person_var + seed_var / k)
    a = spent_alpha(k, alpha, max_seeds)
    half = half_width(person_var, seed_var, k, a)
    low, high = delta - half, delta + half
    if k < 2:
        verdict = "unreplicated"
    elif low > 0:
        verdict = "supported"
    elif high < 0:
        verdict = "refuted"
    elif -min_effect < low and high < min_effect:
        verdict = "no effect"
    else:
        verdict = "inconclusive"
    p_better = float(_stats().norm.cdf(delta / se)) if se > 0 else 1.0 if delta > 0 else 0.0 if delta < 0 else 0.5
    # one seed: the MDE of the first look that may claim (2 seeds) from person noise alone
    mde = half_width(person_var, seed_var, k, a if k > 1 else spent_alpha(2, alpha, max_seeds), POWER)
    return {"verdict": verdict, "delta": delta, "low": low, "high": high, "level": 1 - a, "alpha": alpha,
            "alpha_spent": a, "seeds": k, "se": se, "person_se": math.sqrt(person_var), "seed_sd": seed_sd,
            "training_sd": math.sqrt(seed_var) if seed_sd is not None else None,
            "bootstrap_se": math.sqrt(boot), "per_person_seed_var": per_person_seed_var, "mde": mde,
            "p_better": p_better, "min_effect": min_effect, "max_seeds": max_seeds or None,
            "seed_deltas": [float(x) for x in d]}


# --- k folds --------------------------------------------------------------------------------------------

def fold_test(child, parent, alpha=ALPHA):
    """Paired test over k folds: `child` and `parent` are per-fold macro F1 lists, fold i against fold i
    (the same people validate both). Decided by a two-sided paired t-test at `alpha`: supported when the
    mean difference is above 0 with p < alpha, refuted when below; the exact sign test is reported too.
    None when the fold counts differ or there are fewer than 2 folds."""
    stats = _stats()
    a, b = np.asarray(child, float), np.asarray(parent, float)
    if a.ndim != 1 or a.shape != b.shape or len(a) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    d = a - b
    k, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    level = 1 - alpha
    if sd == 0:  # every fold moved by exactly the same amount (or not at all): no spread to test against
        p, low, high = (1.0 if mean == 0 else 0.0), mean, mean
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
        half = float(stats.t.ppf(1 - alpha / 2, k - 1)) * sd / math.sqrt(k)
        low, high = mean - half, mean + half
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    sign_p = float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0
    verdict = ("supported" if p < alpha and mean > 0 else "refuted" if p < alpha and mean < 0 else "inconclusive")
    return {"method": "folds", "delta": mean, "low": low, "high": high, "p": p, "alpha": alpha,
            "level": level, "folds": k, "deltas": [float(x) for x in d], "wins": wins, "losses": losses,
            "sign_p": sign_p, "verdict": verdict, "se": sd / math.sqrt(k),
            "design": f"One paired t-test over the {k} folds at {alpha:g} (k-fold runs are judged once, not "
                      "sequentially)."}

"""--decide's design: from the noise the first paired runs measured, the cheapest design within the budget that
resolves the effect asked for; none (with what would) when nothing within it can. Expected values worked by hand
from the formulas in report/plan.py (t and normal quantiles from tables)."""
import numpy as np
import pytest

from fastmask.report.design import Design, choose, fold_minutes, futile, options, plan_line, what_would

# two paired seeds on 60 of 300 people: person SE 0.02 a seed, training noise SD 0.01 (all shared by people)
V = {"person_se": 0.02, "seed_sd": 0.01, "per_person_seed_var": 0.0, "people": 60, "total_people": 300,
     "seeds": 2, "alpha": 0.05, "on": "validation", "quantity": "macro_f1", "min_effect": 0.02}


def by_name(opts):
    return {o.name: o for o in opts}


def test_kfold_mdes_and_minutes_by_hand():
    o = by_name(options(V, per_model=2.0, have_seeds=2))
    # var = 0.02^2 * 60/300 + 0.01^2 / f; MDE = (t(.975, f-1) + t(.8, f-1)) * sqrt(var)
    assert o["kfold:3"].mde == pytest.approx((4.303 + 1.061) * (0.00008 + 0.0001 / 3) ** 0.5, rel=2e-3)
    assert o["kfold:5"].mde == pytest.approx((2.776 + 0.941) * 0.01, rel=2e-3)
    assert o["kfold:10"].mde == pytest.approx((2.262 + 0.883) * 0.00009 ** 0.5, rel=2e-3)
    # a fold trains on (f-1)/f of the people against 0.8 for the split: 5 folds cost what one split model costs
    assert fold_minutes(2.0, 5) == pytest.approx(2.0) and fold_minutes(2.0, 3) == pytest.approx(2.0 * (2 / 3) / 0.8)
    assert (o["kfold:5"].new_models, o["kfold:5"].minutes) == (10, pytest.approx(20.0))
    # the parent's 5-fold run exists: only the child's folds are trained
    reused = by_name(options(V, per_model=2.0, have_seeds=2, parent_folds=(5,)))["kfold:5"]
    assert (reused.new_models, reused.minutes) == (5, pytest.approx(10.0))
    # seeds on this split: 2 paired seeds (have) spend alpha/2 each look; person noise keeps them far above k-fold
    assert o["2 paired seeds"].new_models == 0 and o["3 paired seeds"].new_models == 2
    assert min(x.mde for x in o.values() if x.kind == "seeds") > 0.06


def test_the_cheapest_design_that_resolves_the_effect_within_the_budget():
    opts = options(V, per_model=2.0, have_seeds=2)
    d, why = choose(opts, effect=0.05, per_side=6)
    assert d.name == "kfold:5" and "cheapest" in why  # kfold:3 detects only 0.057; kfold:10 is over 6 a side
    d, _ = choose(opts, effect=0.05, per_side=10)
    assert d.name == "kfold:5"  # kfold:10 resolves it too, but costs more
    d, why = choose(opts, effect=0.03, per_side=6)
    assert d is None and "none within the budget" in why
    assert choose(opts, effect=0.03, per_side=10)[0].name == "kfold:10"
    assert choose(opts, effect=0.05, per_side=6, minutes=15)[0] is None  # kfold:5 takes about 20 min
    line = what_would(opts, 0.03, V, total_people=300)
    assert line.startswith("kfold:10 would (20 models, about 45 min)") and "GPU" in line


def test_without_an_effect_the_smallest_effect_the_budget_allows():
    opts = options(V, per_model=2.0, have_seeds=2)
    assert choose(opts, per_side=6)[0].name == "kfold:5"
    assert choose(opts, per_side=20)[0].name == "kfold:10"
    assert choose(opts, per_side=6, minutes=5)[0].name == "3 paired seeds"  # one more pair: all 5 minutes allow


def test_one_seed_plans_with_training_noise_assumed_small_and_says_so():
    one = {**V, "seeds": 1, "seed_sd": None}
    d, why = choose(options(one, per_model=1.0), effect=0.05, per_side=6)
    assert d.assumed and d.name == "kfold:3"  # without training noise 3 folds reach 0.05
    assert "assumed small" in plan_line(d, 0.05, why) and "(asked 0.050)" in plan_line(d, 0.05, why)


def test_the_plan_line_says_design_models_minutes_and_the_effect():
    d = Design("kfold", 5, 10, 20.0, 0.0372, False)
    assert plan_line(d, None, "the smallest effect the budget allows") == (
        "decide: plan kfold:5: 5 models a side, 10 to train, about 20 min; decides effects of 0.037 or more: "
        "the smallest effect the budget allows")


def test_futile_when_the_budget_cannot_exclude_0_at_the_largest_plausible_effect_nor_say_no_effect():
    # at 6 seeds, alpha / 30 a look: person part (z(.99917) 3.143 * 0.02)^2, seed part (t(.99917, 5) 7.18 *
    # 0.01 / sqrt 6)^2 -> half-width about 0.068
    near = {**V, "delta": 0.005, "low": -0.03, "high": 0.04}
    assert futile(near, 6)  # the interval cannot shrink below 0.070: +-0.04 never excluded, no-effect band 0.02
    assert not futile({**near, "low": -0.05, "high": 0.09}, 6)  # an effect of 0.09 would still decide
    assert not futile({**near, "min_effect": 0.08}, 6)  # a wide no-effect band can still be reached
    assert not futile({**near, "seed_sd": None}, 6)  # one seed: training noise unknown, nothing is futile yet


# --- calibration of the k-fold design on planted fold tables ----------------------------------------------
# A fold's paired delta varies by the person noise of the people it validates (total / f of them) plus the
# training noise: sigma_f^2 = f_var * n * f / total + g_var, as report.plan states it. The design claims on
# one paired t-test over the folds (stats.fold_test).

SIMS = 1000


def fold_claims(folds, effect, sims=SIMS, seed=0):
    from fastmask.report.stats import fold_test
    rng = np.random.default_rng(seed)
    sd = (V["person_se"] ** 2 * V["people"] * folds / V["total_people"] + V["seed_sd"] ** 2) ** 0.5
    parent = rng.uniform(0.4, 0.6, (sims, folds))  # each fold's own level: the same people validate both
    child = parent + effect + rng.normal(0, sd, (sims, folds))
    words = [fold_test(c, p)["verdict"] for c, p in zip(child, parent)]
    return sum(w in ("supported", "refuted") for w in words), sum(w == "supported" for w in words)


@pytest.mark.parametrize("folds", [3, 5, 10])
def test_kfold_design_a_a_false_claims_stay_under_5_percent(folds):
    from scipy import stats
    claims, _ = fold_claims(folds, 0.0, seed=folds)
    assert claims <= stats.binom.ppf(0.99, SIMS, 0.05), claims  # 5 % false claims fails this 1 % of the time


@pytest.mark.parametrize("folds", [3, 5, 10])
def test_kfold_design_finds_twice_its_stated_effect(folds):
    mde = by_name(options(V, per_model=1.0, have_seeds=2))[f"kfold:{folds}"].mde
    _, found = fold_claims(folds, 2 * mde, seed=100 + folds)
    assert found >= 0.8 * SIMS, found
    _, at_mde = fold_claims(folds, mde, seed=200 + folds)  # and at the stated MDE itself, about 80 % power
    assert 0.7 * SIMS <= at_mde <= 0.9 * SIMS, at_mde

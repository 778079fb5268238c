import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from fastmask.report.verdict import (
    compare,
    fold_scores,
    fold_test,
    judge_deltas,
    paired_bootstrap,
    plan,
    plan_lines,
    sentence,
    spent_alpha,
)
from fastmask.store.run_folder import RunFolder


def preds(n_people=60, acc=0.5, seed=0, seeds=1):
    """valid_preds-shaped frame: 7 photos a person, a share `acc` of people predicted right; with `seeds`, the
    same predictions under each seed value 0..seeds-1 (no training noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_people):
        label = i % 18
        right = rng.random() < acc
        for k in range(7):
            rows.append(dict(path=f"/d/{i:04d}/{k}.jpg", person=f"{i:06d}", label=label,
                             pred=label if right else (label + 1) % 18))
    one = pd.DataFrame(rows)
    return pd.concat([one.assign(seed=s) for s in range(seeds)], ignore_index=True) if seeds > 1 else one


def test_planted_improvement_is_supported():
    v = paired_bootstrap(preds(acc=0.9, seed=1, seeds=2), preds(acc=0.3, seed=1, seeds=2), n=300)
    assert v["verdict"] == "supported" and v["low"] > 0 and v["delta"] > 0.3 and v["seeds"] == 2


def test_planted_drop_is_refuted():
    v = paired_bootstrap(preds(acc=0.3, seed=1, seeds=2), preds(acc=0.9, seed=1, seeds=2), n=300)
    assert v["verdict"] == "refuted"


def test_identical_runs_have_no_effect():
    p = preds(acc=0.6, seeds=2)
    v = paired_bootstrap(p, p.copy(), n=200)
    assert v["verdict"] == "no effect" and v["delta"] == 0 and v["low"] == 0 == v["high"]
    assert "no effect as large as 0.02" in sentence(v)


def test_other_images_cannot_be_compared():
    a, b = preds(), preds()
    b.loc[0, "path"] = "/elsewhere.jpg"
    assert paired_bootstrap(a, b) is None and "cannot compare" in sentence(None)


# --- k folds: per-fold paired deltas, paired t-test ---------------------------------------------------

PARENT_FOLDS = [0.41, 0.38, 0.45, 0.40, 0.43]


def test_folds_planted_improvement_is_supported():
    v = fold_test([f + 0.05 + 0.005 * i for i, f in enumerate(PARENT_FOLDS)], PARENT_FOLDS)
    assert v["verdict"] == "supported" and v["p"] < v["alpha"] and v["low"] > 0 and v["wins"] == 5
    s = sentence(v)
    assert "supported" in s and "5 folds" in s and "p <" in s and "t-test" in s and "sign test" in s


def test_folds_planted_drop_is_refuted():
    v = fold_test([f - 0.04 - 0.003 * i for i, f in enumerate(PARENT_FOLDS)], PARENT_FOLDS)
    assert v["verdict"] == "refuted" and v["high"] < 0 and v["losses"] == 5


def test_folds_identical_are_inconclusive():
    v = fold_test(PARENT_FOLDS, list(PARENT_FOLDS))
    assert v["verdict"] == "inconclusive" and v["delta"] == 0 and v["p"] == 1 and v["sign_p"] == 1


def test_folds_noisy_small_gain_is_inconclusive():
    v = fold_test([0.42, 0.36, 0.47, 0.39, 0.45], PARENT_FOLDS)  # +0.01, -0.02, +0.02, -0.01, +0.02
    assert v["verdict"] == "inconclusive" and v["low"] < 0 < v["high"]


def test_folds_need_matching_counts():
    assert fold_test([0.5, 0.6], [0.5, 0.6, 0.7]) is None and fold_test([0.5], [0.4]) is None


def _run(tmp_path, name, folds=None, csv=None, preds_frame=None):
    d = tmp_path / name
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({"macro_f1": 0.5, **({"folds": folds} if folds else {})}))
    if csv is not None:
        pd.DataFrame({"fold": range(len(csv))[::-1], "macro_f1": csv[::-1]}).to_csv(d / "folds.csv", index=False)
    if preds_frame is not None:
        preds_frame.to_csv(d / "valid_preds.csv", index=False)
    return d


def test_compare_uses_folds_from_metrics_or_folds_csv(tmp_path):
    child = _run(tmp_path, "child", folds=[{"macro_f1": f + 0.06} for f in PARENT_FOLDS],
                 preds_frame=preds(acc=0.3, seed=1))
    parent = _run(tmp_path, "parent", csv=PARENT_FOLDS, preds_frame=preds(acc=0.9, seed=1))
    assert fold_scores(parent) == pytest.approx(PARENT_FOLDS)  # ordered by the fold column
    v = compare(child, parent)
    assert v["method"] == "folds" and v["verdict"] == "supported"


def test_compare_falls_back_to_bootstrap_without_folds(tmp_path):
    child = _run(tmp_path, "child", folds=[0.5, 0.6, 0.7], preds_frame=preds(acc=0.9, seed=1))
    parent = _run(tmp_path, "parent", preds_frame=preds(acc=0.3, seed=1))
    v = compare(child, parent, n=200)
    assert v["method"] == "bootstrap" and v["verdict"] == "unreplicated" and v["low"] > 0  # one seed: no claim
    assert compare(_run(tmp_path, "a"), _run(tmp_path, "b")) is None


def test_folds_are_paired_only_when_they_hold_the_same_people(tmp_path):
    a, b = preds(acc=0.5, seed=1), preds(acc=0.5, seed=1)
    a["fold"] = np.arange(len(a)) // 7 % 5
    b["fold"] = (np.arange(len(b)) // 7 + 1) % 5  # another assignment of people to folds
    child = _run(tmp_path, "child", folds=[f + 0.06 for f in PARENT_FOLDS], preds_frame=a)
    parent = _run(tmp_path, "parent", folds=PARENT_FOLDS, preds_frame=b)
    assert compare(child, parent, n=100)["method"] == "bootstrap"
    b["fold"] = a["fold"]
    b.to_csv(parent / "valid_preds.csv", index=False)
    assert compare(child, parent)["method"] == "folds"
    m = json.loads((child / "metrics.json").read_text())
    m["fold_status"] = {"0": "finished", "1": "failed", "2": "finished", "3": "finished", "4": "finished"}
    assert compare(child, parent, child_metrics=m, n=100)["method"] == "bootstrap"  # a failed fold: no pairing


# --- hand-computed cases: shuffled rows, person-level resampling, effects near the threshold ----------------

def people(n_people, wrong, photos=7):
    """valid_preds-shaped frame: person i has label i % 2 on all 7 photos, and all 7 predicted wrong (the other
    class) when i is in `wrong`, else all right -- photos of a person are perfectly correlated."""
    return pd.DataFrame([dict(path=f"/d/{i:03d}/{k}.jpg", person=f"{i:06d}", label=i % 2,
                              pred=1 - i % 2 if i in wrong else i % 2)
                         for i in range(n_people) for k in range(photos)])


def shuffled(frame, seed=0):
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


def test_rows_are_paired_by_path_not_by_position():
    p = people(40, wrong={0, 3, 8, 11, 20})
    v = paired_bootstrap(p, shuffled(p), n=200)  # the same predictions, the parent's rows in another order
    assert v["delta"] == 0 and v["low"] == 0 and v["high"] == 0 and v["verdict"] == "unreplicated"
    assert v["people"] == 40


def test_small_gain_on_shuffled_rows_is_inconclusive_with_hand_delta():
    # 40 people (20 per class, 140 images per class). Parent wrong on people 0..6 (class 0: 0 2 4 6 -> 28
    # images; class 1: 1 3 5 -> 21), child wrong on 7 8 9 (class 1: 7 9 -> 14 images; class 0: 8 -> 7).
    # parent: F1_0 = 2*112 / (224 + 21 + 28) = 224/273, F1_1 = 2*119 / (238 + 28 + 21) = 238/287
    # child:  F1_0 = 2*133 / (266 + 14 + 7) = 266/287, F1_1 = 2*126 / (252 + 7 + 14) = 252/273
    # delta = (266/287 + 252/273 - 224/273 - 238/287) / 2 = 14/287 + 14/273 = 0.10006
    child, parent = people(40, wrong={7, 8, 9}), people(40, wrong=set(range(7)))
    v = paired_bootstrap(shuffled(child, 1), shuffled(parent, 2), n=1000, seed=0)
    assert v["delta"] == pytest.approx(14 / 287 + 14 / 273, abs=1e-12)
    # Per person the child gains +1 (7 people) or -1 (3): mean m = 0.1, variance 10/40 - 0.1^2 = 0.24.
    # Resampling 40 people: sd of the mean sqrt(0.24/40) = 0.077, 95% interval about 0.10 +- 0.15: spans 0.
    # Resampling the 280 images instead: sd sqrt(0.24/280) = 0.029, interval about [0.04, 0.16].
    assert v["low"] < 0 < v["high"] and v["verdict"] == "unreplicated" and v["level"] == 0.95
    assert v["high"] - v["low"] > 0.2  # about 2 * 1.96 * 0.077 = 0.30; images would give 0.11


def test_interval_width_comes_from_people_not_photos():
    # 60 people, child right on all, parent wrong on 30 (15 per class): F1 is the accuracy here, delta 0.5.
    # Person resampling: sd of the parent's error share sqrt(0.5 * 0.5 / 60) = 0.0645, so the 95% interval is
    # 2 * 1.96 * 0.0645 = 0.253 wide. Resampling the 420 photos: sqrt(0.25 / 420) = 0.024 -> 0.096 wide; a 90%
    # interval over people: 2 * 1.645 * 0.0645 = 0.212; a 99% one: 0.332.
    v = paired_bootstrap(people(60, wrong=set()), shuffled(people(60, wrong=set(range(30)))), n=2000, seed=0)
    assert v["delta"] == pytest.approx(0.5, abs=1e-12)
    assert 0.235 < v["high"] - v["low"] < 0.285  # normal interval on the bootstrap SE
    assert v["people"] == 60 and v["verdict"] == "unreplicated"


def test_classes_predicted_but_never_true_count_in_the_verdict_f1():
    # 20 people; the parent predicts class 5 (in no label) for all photos of people 0 and 1, the child is right.
    # parent: class 0 tp 63 fn 7 -> 126/133, class 1 the same, class 5 fp 14 -> 0: macro (2 * 126/133) / 3
    # = 252/399; child 1. delta = 1 - 252/399 = 7/19 = 0.368 (dropping class 5 would give 1/19 = 0.053).
    parent = people(20, wrong=set())
    parent.loc[parent.person.isin(["000000", "000001"]), "pred"] = 5
    v = paired_bootstrap(people(20, wrong=set()), shuffled(parent), n=200, seed=0)
    assert v["delta"] == pytest.approx(7 / 19, abs=1e-12)


def test_one_person_better_is_not_enough():
    # Child right on person 0 where the parent is wrong, otherwise identical, on 2 seeds (no training noise).
    # One person of 40 carries the whole gain: per person the gain is 1 (once) or 0, sd of the mean
    # sqrt((1/40)(39/40)/40) = 0.0247, about the mean 0.025 itself, so the interval (2.24 SE at 2 seeds) spans 0.
    child, parent = people(40, wrong={5, 6}), people(40, wrong={0, 5, 6})
    two = lambda f: pd.concat([f.assign(seed=0), f.assign(seed=1)], ignore_index=True)
    v = paired_bootstrap(two(child), shuffled(two(parent)), n=1000, seed=0)
    assert v["delta"] > 0 and v["low"] < 0 < v["high"] and v["seed_sd"] == 0
    assert v["verdict"] == "inconclusive"


def test_fold_test_is_paired_with_hand_p_value():
    from scipy import stats
    parent = [0.30, 0.40, 0.50, 0.60, 0.70]  # folds differ a lot in difficulty...
    gain = [0.02, 0.03, 0.02, 0.03, 0.025]  # ...the child gains a steady small amount on each
    child = [p + g for p, g in zip(parent, gain)]
    # Paired: d mean 0.025, deviations -+0.005 (4x) and 0 -> sd = sqrt(4 * 0.005^2 / 4) = 0.005,
    # t = 0.025 / (0.005 / sqrt 5) = 5 sqrt 5 = 11.18 on 4 df.
    t = 5 * 5 ** 0.5
    v = fold_test(child, parent)
    assert v["p"] == pytest.approx(2 * stats.t.sf(t, 4), rel=1e-6)  # 3.7e-4
    half = stats.t.ppf(0.975, 4) * 0.005 / 5 ** 0.5
    assert v["low"] == pytest.approx(0.025 - half, rel=1e-6) and v["high"] == pytest.approx(0.025 + half, rel=1e-6)
    assert v["delta"] == pytest.approx(0.025) and v["verdict"] == "supported"
    # Unpaired, the fold spread (sd 0.16 in each group) would swamp it: t = 0.025 / 0.1 = 0.25, p = 0.8.
    assert v["wins"] == 5 and v["sign_p"] == pytest.approx(2 / 2 ** 5)  # exact sign test, two-sided


# --- the evidence rules (issue 20) ------------------------------------------------------------------------

def rec(name, valid=None, holdout=None, **fields):
    return RunFolder(Path(f"/nonexistent/{name}"), config={"fields": {"seed": 0, "epochs": 3, "lr": 0.005, **fields}},
                     metrics={}, valid=valid, holdout=holdout)


def test_one_paired_seed_never_claims():
    # acc 0.9 against 0.3 on one seed: the interval is far above 0, but training noise is unmeasured
    v = compare(rec("c", preds(acc=0.9, seed=1)), rec("p", preds(acc=0.3, seed=1)), n=200)
    assert v["seeds"] == 1 and v["low"] > 0.2 and v["verdict"] == "unreplicated" and v["seed_sd"] is None
    s = sentence(v, command="fastmask run recipes/x.py --decide 6")
    assert s.startswith("**Unreplicated**") and "one seed cannot claim" in s
    assert "`fastmask run recipes/x.py --decide 6` decides it" in s and f"{v['delta']:+.3f}" in s
    # the same predictions under two seed values: now it may claim
    v2 = compare(rec("c", preds(acc=0.9, seed=1, seeds=2)), rec("p", preds(acc=0.3, seed=1, seeds=2)), n=200)
    assert v2["seeds"] == 2 and v2["verdict"] == "supported"
    json.dumps(v, allow_nan=False), json.dumps(v2, allow_nan=False)  # metrics.json records it
    assert v2["plan"]["mde"] == v2["mde"] and "design" in v2 and "spends" in v2["design"]


def chance_frame(seed, n_people=60, seeds=2, acc=0.0):
    """Labels with the real class mix (5 mask photos, 1 incorrect, 1 no mask per person); predictions drawn
    from the label prior (no information), except a share `acc` of photos predicted right."""
    rng = np.random.default_rng(seed)
    group = rng.choice(6, n_people, p=np.array([549, 410, 83, 732, 817, 109]) / 2700)
    label = (np.tile([0, 0, 0, 0, 0, 1, 2], n_people) * 6 + np.repeat(group, 7))
    frames = []
    for s in range(seeds):
        pred = rng.permutation(label)
        pred = np.where(rng.random(len(label)) < acc, label, pred)
        frames.append(pd.DataFrame({"path": [f"/v/{i}" for i in range(len(label))],
                                    "person": np.repeat(np.arange(n_people), 7).astype(str),
                                    "label": label, "pred": pred, "seed": s}))
    return pd.concat(frames, ignore_index=True)


def test_neither_learned_when_both_are_within_noise_of_chance():
    child, parent = chance_frame(1), chance_frame(2)
    v = compare(rec("c", child), rec("p", parent), n=300)
    assert v["verdict"] == "neither learned" and "epochs" in v["advice"] and "lr" in v["advice"]
    # the chance level, computed independently: scikit-learn's macro F1 of the child's predictions shuffled
    want = np.mean([f1_score(g.label, np.random.default_rng(r).permutation(g.pred.to_numpy()), average="macro",
                             zero_division=0) for r in range(100) for _, g in child.groupby("seed")])
    assert v["chance"]["child"][1] == pytest.approx(want, abs=0.01)
    assert "neither model learned" in sentence(v) and "--set epochs=15" in plan_lines(v)[0]
    # one model that learned (80 % of photos right) is enough for a verdict
    v2 = compare(rec("c", chance_frame(1, acc=0.8)), rec("p", parent), n=300)
    assert v2["verdict"] == "supported" and not v2["neither_learned"]


def test_no_effect_needs_the_interval_inside_min_effect():
    # Hand case for the formula: 2 seeds with deltas 0.005 and 0.005 (no seed spread), bootstrap draws in which
    # both seeds move together by +-0.003: P = var(mean) = V1 = 0.003^2 * 2 (two draws, ddof 1), so the person
    # variance (2 P - V1) / 1 = 1.8e-5 and the seed part is 0. Look 2 of an open design spends 0.05 / 2.
    draws = np.array([[0.003, 0.003], [-0.003, -0.003]])
    v = judge_deltas([0.005, 0.005], draws, min_effect=0.02)
    half = stats.norm.ppf(1 - 0.025 / 2) * math.sqrt(1.8e-5)  # 2.2414 * 0.004243 = 0.00951
    assert v["low"] == pytest.approx(0.005 - half) and v["high"] == pytest.approx(0.005 + half)
    assert v["verdict"] == "no effect" and v["level"] == pytest.approx(1 - 0.025)
    assert judge_deltas([0.005, 0.005], draws, min_effect=0.01)["verdict"] == "inconclusive"  # high 0.0145
    # seed spread: deltas 0.004, 0.006 (sd 0.001414, / sqrt 2 = 0.001) on t with 1 df, added in quadrature
    v = judge_deltas([0.004, 0.006], draws, min_effect=0.02)
    half = math.hypot(stats.norm.ppf(0.9875) * math.sqrt(1.8e-5), stats.t.ppf(0.9875, 1) * 0.001)  # 0.0272
    assert v["high"] - v["low"] == pytest.approx(2 * half) and v["verdict"] == "inconclusive"


def test_two_seeds_that_agree_by_luck_keep_the_per_person_training_noise():
    # Bootstrap draws in which the two seeds move independently by +-0.01: one seed's variance V1 = 4/3 e-4
    # (four draws, ddof 1), the seed mean's P = 2/3 e-4, so the person part (2 P - V1) / 1 = 0 and the per-person
    # training noise D = 2 (V1 - P) = 4/3 e-4. The two deltas agree exactly (spread 0), yet a third seed would
    # move by about sqrt(D): the seed term uses max(s^2, D) on t with 1 df at 0.025.
    draws = np.array([[0.01, 0.01], [0.01, -0.01], [-0.01, 0.01], [-0.01, -0.01]])
    v = judge_deltas([0.05, 0.05], draws)
    half = stats.t.ppf(1 - 0.025 / 2, 1) * math.sqrt(4e-4 / 3 / 2)  # 25.45 * 0.00816 = 0.208
    assert v["person_se"] == pytest.approx(0, abs=1e-12) and v["seed_sd"] == 0
    assert v["high"] - v["low"] == pytest.approx(2 * half) and v["verdict"] == "inconclusive"


def test_each_look_spends_its_share_of_alpha():
    # open-ended: alpha / (k (k - 1)), summing to alpha; capped at M seeds: alpha / (M - 1) at every look
    assert [spent_alpha(k) for k in (2, 3, 4)] == pytest.approx([0.025, 0.05 / 6, 0.05 / 12])
    assert sum(spent_alpha(k) for k in range(2, 100_000)) == pytest.approx(0.05, rel=1e-4)
    assert spent_alpha(3, max_seeds=5) == pytest.approx(0.0125)
    c, p = preds(acc=0.9, seed=1, seeds=3), preds(acc=0.3, seed=1, seeds=3)
    assert compare(rec("c", c), rec("p", p), n=100)["level"] == pytest.approx(1 - 0.05 / 6)
    v = compare(rec("c", c), rec("p", p), n=100, max_seeds=2)  # a design capped at 2 seeds uses the first 2
    assert v["seeds"] == 2 and v["seed_values"] == [0, 1] and v["level"] == pytest.approx(0.95)


def two_class(preds_by_seed, people=20):
    """Every person has two images, labels 0 and 1, predicted `preds_by_seed[seed]` = (pred 0, pred 1)."""
    return pd.DataFrame([{"path": f"{i}{x}", "person": f"{i:03d}", "label": lab, "pred": ps[lab], "seed": seed}
                         for seed, ps in preds_by_seed.items() for i in range(people) for lab, x in ((0, "a"), (1, "b"))])

# per seed, by hand: preds (0, 1) -> macro F1 1; (0, 0) -> 1/3 (class 0: 2/3, class 1: 0); (1, 0) -> 0


def test_pooled_runs_pair_seeds_by_value_and_the_newest_run_wins():
    new = rec("new", two_class({2: (0, 1)}))                  # seed 2: 1.0
    old = rec("old", two_class({2: (1, 0), 0: (0, 0)}))       # seed 2 again (ignored: the newer run has it), seed 0: 1/3
    frame_seed = rec("single", two_class({0: (0, 1)}).drop(columns="seed"), seed=5)  # no seed column: seed field 5
    parent = rec("p", two_class({5: (1, 0), 2: (0, 0), 1: (1, 0), 0: (0, 1)}))  # seed 1 has no child: unpaired
    v = compare([new, old, frame_seed], parent, n=100)
    # pairs: seed 0: 1/3 - 1 = -2/3; seed 2: 1 - 1/3 = +2/3; seed 5: 1 - 0 = +1. By position (the child's seeds
    # 0, 2, 5 against the parent's 0, 1, 2) they would be -2/3, +1, +2/3; the older run's seed 2 would give -1/3
    assert v["seed_values"] == [0, 2, 5]
    assert v["seed_deltas"] == pytest.approx([-2 / 3, 2 / 3, 1.0], abs=1e-9)
    assert v["delta"] == pytest.approx(1 / 3, abs=1e-9)


@pytest.mark.parametrize("task", ["macro_f1", "mask_f1", "gender_f1", "age_f1"])
def test_a_planted_change_in_one_task_is_judged_on_that_task(task):
    # 60 people, 7 photos each; the parent gets the age group of 40 % of photos wrong and 20 % of the genders;
    # the child fixes every age error and half the gender errors; masks are predicted alike (and right)
    rng = np.random.default_rng(3)
    frame = chance_frame(4, seeds=1).drop(columns="seed")
    y = frame.label.to_numpy()
    mask, gender, age = y // 6, (y // 3) % 2, y % 3
    bad_age = np.where(rng.random(len(y)) < 0.4, (age + 1) % 3, age)
    u = rng.random(len(y))
    parent = frame.assign(pred=mask * 6 + np.where(u < 0.2, 1 - gender, gender) * 3 + bad_age)
    child = frame.assign(pred=mask * 6 + np.where(u < 0.1, 1 - gender, gender) * 3 + age)
    two = lambda f: pd.concat([f.assign(seed=0), f.assign(seed=1)], ignore_index=True)
    v = compare(rec("c", two(child)), rec("p", two(parent)), judged_on=task, n=200)
    decode = {"macro_f1": lambda a: a, "mask_f1": lambda a: a // 6, "gender_f1": lambda a: (a // 3) % 2,
              "age_f1": lambda a: a % 3}[task]
    f1 = lambda p: f1_score(decode(y), decode(p.pred.to_numpy()), average="macro", zero_division=0)
    assert v["quantity"] == task and v["delta"] == pytest.approx(f1(child) - f1(parent), abs=1e-12)
    if task == "mask_f1":
        assert v["delta"] == 0 and v["verdict"] == "no effect"
    else:
        assert v["delta"] > 0.05 and v["verdict"] == "supported"
    assert {"mask_f1": "mask F1", "age_f1": "age F1"}.get(task, "F1") in sentence(v)


def test_the_gap_hypothesis_holds_when_the_child_leaks_less():
    # Holdout: 30 people, the same images for both. Child: validation 0.80-ish and holdout about the same (a small
    # gap); parent: validation near perfect (the leak) and holdout worse (a large gap). delta = parent gap - child
    # gap > 0 means the hypothesis (the child's validation is honest) holds.
    def frame(n_people, key, prefix, seed=0):
        r = np.random.default_rng(seed)
        lab = np.repeat(r.integers(0, 6, n_people), 7) + np.tile([0, 0, 0, 0, 0, 6, 12], n_people)
        return pd.DataFrame({key: [f"{prefix}{i}" for i in range(len(lab))],
                             "person": np.repeat([f"{prefix}{j}" for j in range(n_people)], 7), "label": lab})

    def predicted(f, acc, seed):  # a share `acc` of people right on all 7 photos, the rest wrong on all
        right = np.repeat(np.random.default_rng(seed).random(len(f) // 7) < acc, 7)
        return f.assign(pred=np.where(right, f.label, (f.label + 1) % 18))

    hold = frame(30, "ImageID", "h", 1)
    child_hold, parent_hold = predicted(hold, 0.7, 2), predicted(hold, 0.6, 3)
    child_valid, parent_valid = predicted(frame(40, "path", "c", 4), 0.72, 4), predicted(frame(40, "path", "p", 5), 0.98, 5)
    two = lambda f: pd.concat([f.assign(seed=0), f.assign(seed=1)], ignore_index=True)
    c, p = rec("c", two(child_valid), two(child_hold)), rec("p", two(parent_valid), two(parent_hold))
    v = compare(c, p, judged_on="gap", n=300)
    f1 = lambda f: f1_score(f.label, f.pred, average="macro", zero_division=0)
    gap_c, gap_p = abs(f1(child_valid) - f1(child_hold)), abs(f1(parent_valid) - f1(parent_hold))
    assert v["delta"] == pytest.approx(gap_p - gap_c, abs=1e-12) and v["delta"] > 0.1
    assert v["on"] == "holdout" and v["people"] == 30 and v["valid_people"] == [40, 40]
    assert "gap" in sentence(v) and v["verdict"] in ("supported", "inconclusive")
    # the other way round: the parent leaks less, so the hypothesis fails (delta < 0)
    w = compare(p, c, judged_on="gap", n=300)
    assert w["delta"] == pytest.approx(gap_c - gap_p, abs=1e-12)
    # |.|: a child whose validation scores below its holdout has a gap too (not a negative one)
    low = predicted(child_valid, 0.3, 6)
    assert f1(low) < f1(child_hold)
    x = compare(rec("c", two(low), two(child_hold)), p, judged_on="gap", n=100)
    assert x["delta"] == pytest.approx(gap_p - abs(f1(low) - f1(child_hold)), abs=1e-12)


def test_plan_from_measured_noise():
    # person SE 0.033 on 59 people, seed SD 0.02 of which none is per person: person noise alone floors any
    # number of seeds at (1.96 + 0.8416) * 0.033 = 0.0925
    v = {"verdict": "inconclusive", "person_se": 0.033, "seed_sd": 0.02, "per_person_seed_var": 0.0, "seeds": 3,
         "people": 59, "alpha": 0.05, "max_seeds": None, "mde": 0.12, "min_effect": 0.02, "units": "person"}
    p = plan(v, effect=0.02, total_people=300)
    assert p["seeds_needed"] is None and p["seed_floor"] == pytest.approx(2.8016 * 0.033, rel=1e-4)
    lines = plan_lines(v, effect=0.02, total_people=300)
    assert any("Seeds alone cannot get below 0.092: person noise alone gives SE 0.033" in x for x in lines)
    # k-fold on 300 people, 5 folds: person variance * 59/300 + seed variance / 5, t on 4 df at 0.05
    want = (stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) * math.sqrt(0.033 ** 2 * 59 / 300 + 0.02 ** 2 / 5)
    assert p["kfold"][5] == pytest.approx(want)
    # with little person noise, seeds do it: the first k whose MDE at alpha/(k(k-1)) reaches 0.05
    v2 = {**v, "person_se": 0.005}
    def mde(k):
        a = 0.05 / (k * (k - 1))
        return math.hypot((stats.norm.ppf(1 - a / 2) + stats.norm.ppf(0.8)) * 0.005,
                          (stats.t.ppf(1 - a / 2, k - 1) + stats.t.ppf(0.8, k - 1)) * 0.02 / math.sqrt(k))
    assert plan(v2, effect=0.05)["seeds_needed"] == next(k for k in range(2, 100) if mde(k) <= 0.05)
    # people: with 3 seeds, people scale the person variance (59 / N); with seed SD 0.02, t on 2 df at alpha/6
    # (12.0 * 0.0115 = 0.14) is too large for 0.08 however many people; with seed SD 0.005 about 170 people do it
    assert plan(v, effect=0.08)["people_needed"] is None
    assert any("however many people" in x for x in plan_lines(v, effect=0.08))
    n = plan({**v, "seed_sd": 0.005}, effect=0.08)["people_needed"]
    a = 0.05 / 6
    person = lambda n: (stats.norm.ppf(1 - a / 2) + stats.norm.ppf(0.8)) * 0.033 * math.sqrt(59 / n)
    seed = (stats.t.ppf(1 - a / 2, 2) + stats.t.ppf(0.8, 2)) * 0.005 / math.sqrt(3)
    assert math.hypot(person(n), seed) <= 0.08 < math.hypot(person(n * 0.97), seed)


def test_a_person_part_clipped_to_zero_is_said_in_words_not_as_se_0():
    """Three seeds whose per-person seed noise holds all of the bootstrap's spread leave no fixed-person part
    (clipped at 0): the card names the bootstrap SE instead of printing "person SE 0.000"."""
    v = {"verdict": "inconclusive", "delta": -0.022, "low": -0.284, "high": 0.240, "level": 0.99167, "seeds": 3,
         "people": 59, "units": "person", "person_se": 0.0, "bootstrap_se": 0.0165, "seed_sd": 0.0417,
         "training_sd": 0.0417, "min_effect": 0.02, "seed_deltas": [0.025, -0.036, -0.055], "quantity": "macro_f1"}
    text = sentence(v)
    assert "person SE 0.000" not in text and "bootstrap's SE 0.017 over 59 people" in text
    assert "person SE 0.031 from 59 people" in sentence({**v, "person_se": 0.031})

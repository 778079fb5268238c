import json

import numpy as np
import pandas as pd
import pytest

from fastmask.runs.verdict import compare, fold_scores, fold_test, paired_bootstrap, sentence


def preds(n_people=60, acc=0.5, seed=0):
    """valid_preds-shaped frame: 7 photos a person, a share `acc` of people predicted right."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_people):
        label = i % 18
        right = rng.random() < acc
        for k in range(7):
            rows.append(dict(path=f"/d/{i:04d}/{k}.jpg", person=f"{i:06d}", label=label,
                             pred=label if right else (label + 1) % 18))
    return pd.DataFrame(rows)


def test_planted_improvement_is_supported():
    v = paired_bootstrap(preds(acc=0.9, seed=1), preds(acc=0.3, seed=1), n=300)
    assert v["verdict"] == "supported" and v["low"] > 0 and v["delta"] > 0.3


def test_planted_drop_is_refuted():
    assert paired_bootstrap(preds(acc=0.3, seed=1), preds(acc=0.9, seed=1), n=300)["verdict"] == "refuted"


def test_identical_runs_are_inconclusive():
    p = preds(acc=0.6)
    v = paired_bootstrap(p, p.copy(), n=200)
    assert v["verdict"] == "inconclusive" and v["delta"] == 0 and "inconclusive" in sentence(v)


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
    assert v["method"] == "bootstrap" and v["verdict"] == "supported"
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
    assert v["delta"] == 0 and v["low"] == 0 and v["high"] == 0 and v["verdict"] == "inconclusive"
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
    # Resampling the 280 images instead: sd sqrt(0.24/280) = 0.029, interval about [0.04, 0.16]: "supported".
    assert v["low"] < 0 < v["high"] and v["verdict"] == "inconclusive"
    assert v["high"] - v["low"] > 0.2  # about 2 * 1.96 * 0.077 = 0.30; images would give 0.11


def test_interval_width_comes_from_people_not_photos():
    # 60 people, child right on all, parent wrong on 30 (15 per class): F1 is the accuracy here, delta 0.5.
    # Person resampling: sd of the parent's error share sqrt(0.5 * 0.5 / 60) = 0.0645, so the 95% interval is
    # 2 * 1.96 * 0.0645 = 0.253 wide. Resampling the 420 photos: sqrt(0.25 / 420) = 0.024 -> 0.096 wide; a 90%
    # interval over people: 2 * 1.645 * 0.0645 = 0.212; a 99% one: 0.332.
    v = paired_bootstrap(people(60, wrong=set()), shuffled(people(60, wrong=set(range(30)))), n=2000, seed=0)
    assert v["delta"] == pytest.approx(0.5, abs=1e-12)
    assert 0.235 < v["high"] - v["low"] < 0.285  # 20 bootstrap seeds gave 0.247 .. 0.266
    assert v["people"] == 60 and v["verdict"] == "supported"


def test_classes_predicted_but_never_true_count_in_the_verdict_f1():
    # 20 people; the parent predicts class 5 (in no label) for all photos of people 0 and 1, the child is right.
    # parent: class 0 tp 63 fn 7 -> 126/133, class 1 the same, class 5 fp 14 -> 0: macro (2 * 126/133) / 3
    # = 252/399; child 1. delta = 1 - 252/399 = 7/19 = 0.368 (dropping class 5 would give 1/19 = 0.053).
    parent = people(20, wrong=set())
    parent.loc[parent.person.isin(["000000", "000001"]), "pred"] = 5
    v = paired_bootstrap(people(20, wrong=set()), shuffled(parent), n=200, seed=0)
    assert v["delta"] == pytest.approx(7 / 19, abs=1e-12)


def test_one_person_better_is_not_enough():
    # Child right on person 0 where the parent is wrong, otherwise identical. Person 0 is missing from a
    # resample of 40 with chance (39/40)^40 = 0.36 > 0.025, so the lower bound is exactly 0: not supported.
    v = paired_bootstrap(people(40, wrong={5, 6}), shuffled(people(40, wrong={0, 5, 6})), n=1000, seed=0)
    assert v["delta"] > 0 and v["low"] == 0 and v["high"] > 0
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

import json

import numpy as np
import pandas as pd
import pytest

from fastmask.verdict import compare, fold_scores, fold_test, paired_bootstrap, sentence


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

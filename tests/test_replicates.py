"""Seeds on one split, and verdicts that count training noise: seeds pair by value, the interval adds the
spread of the per-seed deltas to the person bootstrap; runs validated on other people are compared on the
holdout."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from fastmask.report.judgement import still_improving
from fastmask.report.verdict import compare, paired_bootstrap, sentence

from conftest import TINY, in_process

REPO = Path(__file__).resolve().parent.parent


def frame(preds_by_seed, people=20, key="path"):
    """Every person has two images, labels 0 and 1; `preds_by_seed` {seed: (pred for label 0, pred for label 1)}
    is the same for every person, so resampling people never moves macro F1: only the seeds can."""
    rows = []
    for seed, (p0, p1) in preds_by_seed.items():
        for i in range(people):
            rows += [{key: f"{i}a", "person": f"{i:03d}", "label": 0, "pred": p0, "seed": seed},
                     {key: f"{i}b", "person": f"{i:03d}", "label": 1, "pred": p1, "seed": seed}]
    return pd.DataFrame(rows)

# Macro F1 over the classes seen, per seed, by hand (labels 0, 1 per person):
#   preds (0, 1): both right                      -> F1 1, 1          -> 1.000
#   preds (0, 0): class 0 tp 1 fp 1 -> 2/3; class 1 -> 0 -> 0.333
#   preds (1, 0): both wrong, each class 0         -> 0.000


def test_seeds_pair_by_seed_not_by_row_order():
    child = frame({0: (0, 1), 1: (0, 0)})          # 1.000, 0.333
    parent = frame({1: (1, 0), 0: (0, 0)})         # seed 1 first in the file: 0.000; seed 0: 0.333
    parent = parent.sample(frac=1, random_state=3)  # rows shuffled too: pair by path, not position
    v = paired_bootstrap(child, parent, n=400)
    # paired by seed: seed 0 -> 1 - 1/3 = 0.667, seed 1 -> 1/3 - 0 = 0.333; crossed seeds (child 0 with parent 1,
    # child 1 with parent 0) would give 1.0 and 0.0: the same mean, twice the spread
    assert v["seed_deltas"] == pytest.approx([2 / 3, 1 / 3], abs=1e-9)
    assert v["delta"] == pytest.approx(0.5, abs=1e-9) and v["seed_sd"] == pytest.approx((1 / 3) / 2 ** 0.5, abs=1e-9)
    assert v["seeds"] == 2 and v["people"] == 20


def test_training_noise_widens_the_interval():
    from scipy import stats
    child = frame({0: (0, 1), 1: (0, 0)})   # 1.000, 0.333
    parent = frame({0: (0, 0), 1: (0, 0)})  # 0.333, 0.333
    v = paired_bootstrap(child, parent, n=400)
    # per seed 0.667 and 0.000; people never move macro F1 here, so the interval is training noise alone:
    # sd of the two deltas sqrt(2) / 3, over sqrt 2 -> 1/3, on t with 1 df at the first look's 0.05 / 2:
    # 1/3 +- 25.45 / 3 -- two seeds that disagree this much say nothing
    half = stats.t.ppf(1 - 0.025 / 2, 1) / 3
    assert v["delta"] == pytest.approx(1 / 3, abs=1e-9) and v["person_se"] == 0
    assert v["low"] == pytest.approx(1 / 3 - half, abs=1e-9) and v["high"] == pytest.approx(1 / 3 + half, abs=1e-9)
    assert v["verdict"] == "inconclusive" and v["se"] == pytest.approx(1 / 3, abs=1e-9)
    # MDE: (t_.9875 + t_.8) on 1 df times 1/3
    assert v["mde"] == pytest.approx((stats.t.ppf(0.9875, 1) + stats.t.ppf(0.8, 1)) / 3, rel=1e-6)


def test_one_seed_matches_a_plain_person_bootstrap_and_sklearn():
    rng = np.random.default_rng(0)
    n = 7 * 30
    child = pd.DataFrame({"path": [f"{i}" for i in range(n)], "person": [f"{i // 7}" for i in range(n)],
                          "label": rng.integers(0, 18, n), "pred": rng.integers(0, 18, n)})
    parent = child.assign(pred=rng.integers(0, 18, n))
    v = paired_bootstrap(child, parent, n=50)
    want = (f1_score(child.label, child.pred, average="macro", zero_division=0)
            - f1_score(child.label, parent.pred, average="macro", zero_division=0))
    assert v["delta"] == pytest.approx(want, abs=1e-12) and v["seeds"] == 1 and v["people"] == 30


def write_run(d, valid=None, hold=None):
    d.mkdir()
    (d / "metrics.json").write_text("{}")
    (d / "config.json").write_text(json.dumps({"fields": {"split": "person"}}))
    if valid is not None:
        valid.to_csv(d / "valid_preds.csv", index=False)
    if hold is not None:
        hold.to_csv(d / "holdout_preds.csv", index=False)
    return d


def test_runs_on_other_validation_people_are_judged_on_the_holdout(tmp_path):
    child_valid = frame({0: (0, 1)}).assign(path=lambda f: "c" + f.path)
    parent_valid = frame({0: (0, 1)}).assign(path=lambda f: "p" + f.path)  # other images: no pairing there
    child_hold = frame({0: (0, 1), 1: (0, 1)}, key="ImageID")
    parent_hold = frame({0: (0, 0), 1: (0, 0)}, key="ImageID")
    c = write_run(tmp_path / "c", child_valid, child_hold)
    p = write_run(tmp_path / "p", parent_valid, parent_hold)
    v = compare(c, p, n=200)
    assert v["on"] == "holdout" and v["units"] == "person" and v["verdict"] == "supported"
    assert v["delta"] == pytest.approx(2 / 3, abs=1e-9)
    assert "on the holdout" in sentence(v)
    # answers without people (a real eval set never has answers; an old twin has no person column):
    # the holdout is resampled by image, and the sentence says so
    c2 = write_run(tmp_path / "c2", child_valid, child_hold.drop(columns="person"))
    p2 = write_run(tmp_path / "p2", parent_valid, parent_hold.drop(columns="person"))
    v2 = compare(c2, p2, n=200)
    assert v2["units"] == "ImageID" and v2["people"] == len(child_hold) // 2 and "images" in sentence(v2)
    # without holdout predictions there is nothing paired to say
    q = write_run(tmp_path / "q", parent_valid)
    assert compare(c, q) is None and "cannot compare" in sentence(None)


def test_the_same_validation_images_are_judged_on_validation(tmp_path):
    c = write_run(tmp_path / "c", frame({0: (0, 1)}), frame({0: (0, 0)}, key="ImageID"))
    p = write_run(tmp_path / "p", frame({0: (0, 0)}), frame({0: (0, 1)}, key="ImageID"))
    v = compare(c, p, n=200)
    assert v["on"] == "validation" and v["delta"] == pytest.approx(2 / 3, abs=1e-9)


@pytest.mark.parametrize("curve,rising", [([0.1, 0.2, 0.3], True), ([0.1, 0.3, 0.3], False),
                                          ([0.1, 0.3, 0.2], False), ([0.3, 0.302], False)])
def test_still_improving_reads_the_last_epoch(curve, rising):
    h = pd.DataFrame({"epoch": range(len(curve)), "macro_f1": curve})
    assert still_improving(h) is rising
    two = pd.concat([h.assign(seed=0), h.assign(seed=1, macro_f1=[x - 0.05 for x in curve])])
    assert still_improving(two) is rising  # the mean curve over seeds


def run_cli(*args):
    return in_process("run", "--no-parent", *args)


def test_replicates_train_seeds_on_one_split(twin, tmp_path):
    p = run_cli("recipes/person_split.py", *TINY, "--set", "patience=none", "--replicates", "2",
                "--data", str(twin), "--runs", str(tmp_path))
    assert p.returncode == 0, p.stderr[-3000:]
    (d,) = tmp_path.iterdir()
    vp = pd.read_csv(d / "valid_preds.csv", dtype={"person": str})
    by_seed = {s: g.sort_values("path") for s, g in vp.groupby("seed")}
    assert sorted(by_seed) == [0, 1]
    assert list(by_seed[0].path) == list(by_seed[1].path)  # one split for both seeds
    f1 = [f1_score(g.label, g.pred, average="macro", zero_division=0) for g in by_seed.values()]
    m = json.loads((d / "metrics.json").read_text())
    assert m["replicates"]["seeds"] == [0, 1]
    assert m["replicates"]["macro_f1"] == pytest.approx(f1, abs=1e-9)
    assert m["macro_f1"] == pytest.approx(np.mean(f1), abs=1e-9)
    assert m["seed_std"] == pytest.approx(abs(f1[0] - f1[1]) / np.sqrt(2), abs=1e-9)  # ddof 1, two values
    assert not np.allclose(by_seed[0].filter(like="p1").to_numpy(), by_seed[1].filter(like="p1").to_numpy())
    hp = pd.read_csv(d / "holdout_preds.csv")
    assert sorted(hp.seed.unique()) == [0, 1]
    assert (d / "model.pkl").is_file() and not list(d.glob("seed*.pkl"))
    assert "2 seeds on one split" in (d / "card.md").read_text()
    assert json.loads((d / "status.json").read_text())["status"] == "finished"


def test_replicates_with_kfold_is_refused_in_one_line(twin, tmp_path):
    p = run_cli("recipes/kfold.py", *TINY, "--replicates", "3", "--data", str(twin), "--runs", str(tmp_path))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "replicates" in p.stderr
    assert not any(tmp_path.iterdir())

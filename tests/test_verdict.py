import numpy as np
import pandas as pd

from fastmask.verdict import paired_bootstrap, sentence


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

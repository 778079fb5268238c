"""What would decide it: from the noise a verdict measured (person noise, training noise between seeds), the
seeds, people or k folds that would resolve a given effect at 80 % power at the error rate the design spends.
Numbers only; `words.plan_lines` says them."""
import math

import numpy as np

from fastmask.report.stats import ALPHA, POWER, half_width, quantile, spent_alpha


def noise(v):
    """The noise verdict `v` measured, as variances of the paired delta: `f_var` (one seed on these people:
    person and training noise together), `d_var` (the per-person part of the training noise) and `g_var` (the
    rest of the training noise, shared by all people); the last two are 0 until two seeds measured them."""
    measured = v.get("seed_sd") is not None
    d_var = (v.get("per_person_seed_var") or 0.0) if measured else 0.0
    g_var = max(v["seed_sd"] ** 2 - d_var, 0.0) if measured else 0.0
    return {"measured": measured, "f_var": v["person_se"] ** 2, "d_var": d_var, "g_var": g_var}


def seed_mde(v, k, people=None):
    """The effect `k` paired seeds on `people` validation people (default: the verdict's) detect at 80 % power,
    at the error rate look k spends, from the noise `v` measured."""
    n, n_people = noise(v), int(v.get("people") or 0)
    r = n_people / people if people else 1.0
    alpha, cap = v.get("alpha", ALPHA), v.get("max_seeds")
    return half_width(n["f_var"] * r, n["d_var"] * r + n["g_var"], k, spent_alpha(k, alpha, cap), POWER)


def plan(v, effect=None, total_people=None, max_k=100):
    """What would resolve `effect` (default: the verdict's min_effect) at 80 % power at the error rate this
    design spends, from the noise verdict `v` measured: a dict with "effect", "mde" (now), "seeds_needed"
    (paired seeds on these people; None when seeds alone cannot), "seed_floor" (the smallest effect any
    number of seeds resolves on these people: person noise alone), "people_needed" (validation people with
    "people_seeds" paired seeds; None when seed noise alone is too large), and with `total_people` (the
    data's people, for a comparison on validation) "kfold" ({folds: MDE}: every person validates once) and
    "kfold_reaches" (the fewest of 3, 5, 10 folds that resolve it, or None). None when `v` measured no noise."""
    if v and v.get("method") == "folds" and v.get("se") is not None:
        k = v["folds"]
        a = v.get("alpha", ALPHA)
        mde = (quantile(1 - a / 2, k - 1) + quantile(POWER, k - 1)) * v["se"]
        return {"effect": effect or v.get("min_effect", 0.02), "mde": mde, "folds": k}
    if not v or "person_se" not in v:
        return None
    e = effect or v.get("min_effect", 0.02)
    alpha, cap = v.get("alpha", ALPHA), v.get("max_seeds")
    k, n_people = max(int(v.get("seeds") or 1), 1), int(v.get("people") or 0)
    n = noise(v)
    measured, f_var, d_var, g_var = n["measured"], n["f_var"], n["d_var"], n["g_var"]

    def mde_at(kk, nn):
        return seed_mde(v, kk, nn)

    out = {"effect": e, "mde": v.get("mde"), "seeds": k, "people": n_people, "seed_measured": measured,
           "person_se": v["person_se"], "seed_sd": v.get("seed_sd"), "max_seeds": cap}
    top = min(cap, max_k) if cap else max_k
    out["seeds_needed"] = (next((kk for kk in range(max(k, 2), top + 1) if mde_at(kk, n_people) <= e), None)
                           if measured and n_people else None)
    out["seed_floor"] = (quantile(1 - alpha / 2) + quantile(POWER)) * v["person_se"]
    kk = max(k, 2)
    out["people_seeds"] = kk
    out["people_needed"] = None
    if n_people:
        grid = np.unique(np.geomspace(2, n_people * 1000, 600).astype(int))
        out["people_needed"] = next((int(nn) for nn in grid if mde_at(kk, nn) <= e), None)
    total = total_people or v.get("total_people")
    on_validation = v.get("on", "validation") == "validation" and v.get("quantity") != "gap"
    if on_validation and total and n_people and total >= n_people:  # k-fold validates people, not the holdout
        out["total_people"] = int(total)
        folds = {}
        for f in (3, 5, 10):
            var = (f_var + d_var) * n_people / total + g_var / f
            folds[f] = (quantile(1 - alpha / 2, f - 1) + quantile(POWER, f - 1)) * math.sqrt(var)
        out["kfold"] = folds
        out["kfold_reaches"] = next((f for f, m in folds.items() if m <= e), None)
    return out

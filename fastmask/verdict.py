"""Did the hypothesis beat its parent? A paired bootstrap over validation *people* of the macro-F1
difference, so one lucky person (7 correlated photos) cannot decide it."""
import numpy as np
import pandas as pd

from .metrics import macro_f1


def paired_bootstrap(child, parent, n=1000, seed=0, level=0.95):
    """{'delta', 'low', 'high', 'p_better', 'people', 'verdict'} from two valid_preds frames
    (path, person, label, pred) over the same images; None when they do not cover the same images."""
    a = child.set_index("path")[["person", "label", "pred"]]
    b = parent.set_index("path")[["pred"]]
    if len(a) != len(b) or not a.index.sort_values().equals(b.index.sort_values()):
        return None
    b = b.loc[a.index]
    y, pa, pb = a["label"].to_numpy(), a["pred"].to_numpy(), b["pred"].to_numpy()
    people = pd.factorize(a["person"])[0]
    rows_of = [np.flatnonzero(people == i) for i in range(people.max() + 1)]
    rng = np.random.default_rng(seed)
    deltas = np.empty(n)
    for k in range(n):
        idx = np.concatenate([rows_of[i] for i in rng.integers(0, len(rows_of), len(rows_of))])
        deltas[k] = macro_f1(y[idx], pa[idx]) - macro_f1(y[idx], pb[idx])
    tail = (1 - level) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    verdict = "supported" if low > 0 else "refuted" if high < 0 else "inconclusive"
    return {"delta": macro_f1(y, pa) - macro_f1(y, pb), "low": float(low), "high": float(high),
            "p_better": float((deltas > 0).mean()), "people": len(rows_of), "n": n, "level": level,
            "verdict": verdict}


def sentence(v):
    if v is None:
        return ("**Verdict: cannot compare** — the parent's run validated on other images "
                "(another split, seed or data), so no paired test is possible.")
    return (f"**Verdict: {v['verdict']}** — macro F1 {v['delta']:+.3f} against the parent; "
            f"{v['level']:.0%} bootstrap interval over {v['people']} validation people "
            f"[{v['low']:+.3f}, {v['high']:+.3f}] ({v['n']} resamples; supported when the whole interval is "
            f"above 0, refuted when below); the child was better in {v['p_better']:.0%} of resamples.")

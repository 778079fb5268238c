"""Did the hypothesis beat its parent?

One split: a paired bootstrap over validation *people* of the macro-F1 difference, so one lucky person
(7 correlated photos) cannot decide it. K folds: the per-fold paired differences, judged by a paired t-test
(the sign test beside it as a second opinion). Both give a dict with `verdict` in supported / refuted /
inconclusive, `delta`, an interval `low`..`high` and the evidence behind it; `sentence` writes it out."""
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import macro_f1

ALPHA = 0.05


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
    return {"method": "bootstrap", "delta": macro_f1(y, pa) - macro_f1(y, pb), "low": float(low),
            "high": float(high), "p_better": float((deltas > 0).mean()), "people": len(rows_of), "n": n,
            "level": level, "verdict": verdict}


def fold_test(child, parent, alpha=ALPHA):
    """Paired test over k folds: `child` and `parent` are per-fold macro F1 lists, fold i against fold i
    (the same people validate both). Decided by a two-sided paired t-test at `alpha`: supported when the
    mean difference is above 0 with p < alpha, refuted when below; the exact sign test is reported too.
    None when the fold counts differ or there are fewer than 2 folds."""
    from scipy import stats
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
            "sign_p": sign_p, "verdict": verdict}


def fold_scores(run_dir, metrics=None):
    """Per-fold validation macro F1 of a run, or None: `metrics.json["folds"]` (numbers, or dicts with
    `macro_f1`), else `folds.csv` (a `macro_f1` column, ordered by `fold` when there is one)."""
    run_dir = Path(run_dir)
    if metrics is None:
        from .record import read_json
        metrics = read_json(run_dir / "metrics.json", {})
    folds = metrics.get("folds")
    if isinstance(folds, list) and folds:
        try:
            return [float(f["macro_f1"] if isinstance(f, dict) else f) for f in folds]
        except (KeyError, TypeError, ValueError):
            return None
    path = run_dir / "folds.csv"
    if path.is_file():
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError):
            return None
        if "macro_f1" in df:
            if "fold" in df:
                df = df.sort_values("fold")
            return [float(x) for x in df["macro_f1"]]
    return None


def _complete(metrics):
    """False when some folds of a k-fold run failed (their scores are missing from `folds`)."""
    st = (metrics or {}).get("fold_status")
    return not isinstance(st, dict) or all(v == "finished" for v in st.values())


def same_folds(child_dir, parent_dir):
    """Whether the two runs' fold i validated the same people: by the `fold` column of their valid_preds
    when both have one, else by equal split and seed fields in their config.json."""
    from .record import read_json
    cols = ["path", "fold"]
    try:
        a = pd.read_csv(Path(child_dir) / "valid_preds.csv", usecols=lambda c: c in cols)
        b = pd.read_csv(Path(parent_dir) / "valid_preds.csv", usecols=lambda c: c in cols)
    except (OSError, ValueError):
        a = b = None
    if a is not None and "fold" in a and "fold" in b:
        return len(a) == len(b) and a.set_index("path")["fold"].sort_index().equals(b.set_index("path")["fold"].sort_index())
    fa = (read_json(Path(child_dir) / "config.json", {}) or {}).get("fields") or {}
    fb = (read_json(Path(parent_dir) / "config.json", {}) or {}).get("fields") or {}
    return all(fa.get(k) == fb.get(k) for k in ("split", "seed"))


def compare(child_dir, parent_dir, child_metrics=None, n=1000, seed=0):
    """The verdict of run `child_dir` against run `parent_dir`: by folds when both ran the same complete
    folds, else by the paired bootstrap over their valid_preds.csv; None when neither is possible."""
    from .record import read_json
    child_dir, parent_dir = Path(child_dir), Path(parent_dir)
    if child_metrics is None:
        child_metrics = read_json(child_dir / "metrics.json", {}) or {}
    parent_metrics = read_json(parent_dir / "metrics.json", {}) or {}
    cf, pf = fold_scores(child_dir, child_metrics), fold_scores(parent_dir, parent_metrics)
    if (cf and pf and len(cf) == len(pf) and _complete(child_metrics) and _complete(parent_metrics)
            and same_folds(child_dir, parent_dir)):
        v = fold_test(cf, pf)
        if v is not None:
            return v
    mine, theirs = child_dir / "valid_preds.csv", parent_dir / "valid_preds.csv"
    if not (mine.is_file() and theirs.is_file()):
        return None
    return paired_bootstrap(pd.read_csv(mine, dtype={"person": str}), pd.read_csv(theirs, dtype={"person": str}),
                            n=n, seed=seed)


def sentence(v):
    if v is None or "delta" not in v:
        return ("**Verdict: cannot compare** — the parent's run validated on other images "
                "(another split, seed or data), so no paired test is possible.")
    if v.get("method") == "folds":
        deltas = ", ".join(f"{x:+.3f}" for x in v["deltas"])
        return (f"**Verdict: {v['verdict']}** — mean macro F1 {v['delta']:+.3f} against the parent over "
                f"{v['folds']} folds (per fold: {deltas}); paired t-test p = {v['p']:.3g}, "
                f"{v['level']:.0%} interval [{v['low']:+.3f}, {v['high']:+.3f}] (supported when p < {v['alpha']:g} "
                f"and the mean is above 0, refuted when p < {v['alpha']:g} and below); the child won "
                f"{v['wins']} of {v['folds']} folds and lost {v['losses']} (sign test p = {v['sign_p']:.3g}).")
    return (f"**Verdict: {v['verdict']}** — macro F1 {v['delta']:+.3f} against the parent; "
            f"{v['level']:.0%} bootstrap interval over {v['people']} validation people "
            f"[{v['low']:+.3f}, {v['high']:+.3f}] ({v['n']} resamples; supported when the whole interval is "
            f"above 0, refuted when below); the child was better in {v['p_better']:.0%} of resamples.")

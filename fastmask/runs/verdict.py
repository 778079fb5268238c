"""Did the hypothesis beat its parent?

One split: a paired bootstrap of the macro-F1 difference over seeds (training noise) and validation
*people* (so one lucky person's 7 correlated photos cannot decide it); when the runs validated on other
people (a random split against a person split), the same test on the holdout predictions. K folds: the per-fold paired differences, judged by a paired t-test
(the sign test beside it as a second opinion). Both give a dict with `verdict` in supported / refuted /
inconclusive, `delta`, an interval `low`..`high` and the evidence behind it; `sentence` writes it out."""
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from fastmask.labels import N_CLASSES
from fastmask.runs.folder import read_json
from fastmask.runs.index import finished, parent_of
from fastmask.runs.records import RunRecord, read_run

ALPHA = 0.05


def _counts(y, p, groups, n_groups):
    """Per group, per class: true positives, false positives, false negatives, as (n_groups, 3, 18)."""
    out = np.zeros((n_groups, 3, N_CLASSES))
    hit = y == p
    np.add.at(out, (groups[hit], 0, y[hit]), 1)
    np.add.at(out, (groups[~hit], 1, p[~hit]), 1)
    np.add.at(out, (groups[~hit], 2, y[~hit]), 1)
    return out


def _macro_f1(c):
    """Macro F1 from summed counts (..., 3, 18): classes seen in labels or predictions, zero_division 0,
    as `metrics.macro_f1` (scikit-learn's f1_score, average="macro") computes it."""
    tp, fp, fn = c[..., 0, :], c[..., 1, :], c[..., 2, :]
    seen = (tp + fp + fn) > 0
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=seen)
    return f1.sum(-1) / np.maximum(seen.sum(-1), 1)


def _by_seed(frame):
    return [frame] if "seed" not in frame else [g for _, g in sorted(frame.groupby("seed"), key=lambda x: x[0])]


def paired_bootstrap(child, parent, n=1000, seed=0, level=0.95, key="path", group="person"):
    """The macro-F1 difference child - parent with a two-level paired bootstrap: resample the seeds
    (training noise), then the people (7 correlated photos each), and compare both runs on the same
    draw. `child`/`parent` are prediction frames (`key`, `group`, label, pred and, for replicates, a
    `seed` column); seeds pair in order (seed i of the child with seed i of the parent). None when the
    runs did not predict the same images. A dict with the verdict (supported when the whole interval is
    above 0, refuted when below), the interval, the bootstrap standard error and the smallest effect it
    can detect (80 % power at the two-sided level)."""
    from scipy import stats  # here: the board and compare tables import this module and test nothing
    pa, pb = _by_seed(child), _by_seed(parent)
    k = min(len(pa), len(pb))
    if k == 0:
        return None
    units = pd.factorize(pd.concat([f[group] for f in pa[:k]]).astype(str))[1]
    code = {u: i for i, u in enumerate(units)}
    ca, cb = np.zeros((k, len(units), 3, N_CLASSES)), np.zeros((k, len(units), 3, N_CLASSES))
    for i in range(k):
        a, b = pa[i].set_index(key), pb[i].set_index(key)
        if len(a) != len(b) or not a.index.sort_values().equals(b.index.sort_values()):
            return None
        b = b.loc[a.index]
        g = (a.index.to_series() if group == key else a[group]).astype(str).map(code).to_numpy()
        y = a["label"].to_numpy(int)
        ca[i] = _counts(y, a["pred"].to_numpy(int), g, len(units))
        cb[i] = _counts(y, b["pred"].to_numpy(int), g, len(units))
    rng = np.random.default_rng(seed)
    deltas = np.empty(n)
    for r in range(n):
        s = rng.integers(0, k, k)
        m = np.bincount(rng.integers(0, len(units), len(units)), minlength=len(units))
        ta, tb = np.tensordot(m, ca[s], axes=(0, 1)), np.tensordot(m, cb[s], axes=(0, 1))
        deltas[r] = float(np.mean(_macro_f1(ta) - _macro_f1(tb)))
    tail = (1 - level) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    verdict = "supported" if low > 0 else "refuted" if high < 0 else "inconclusive"
    se = float(deltas.std(ddof=1))
    per_seed = _macro_f1(ca.sum(1)) - _macro_f1(cb.sum(1))
    mde = float((stats.norm.ppf(1 - tail) + stats.norm.ppf(0.8)) * se)
    return {"method": "bootstrap", "delta": float(per_seed.mean()), "low": float(low), "high": float(high),
            "p_better": float((deltas > 0).mean()), "people": len(units), "units": group, "seeds": k, "n": n,
            "level": level, "se": se, "mde": mde, "seed_deltas": [float(x) for x in per_seed],
            "verdict": verdict}


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


def same_folds(child, parent):
    """Whether the two runs' fold i validated the same people: by the `fold` column of their validation
    predictions when both have one, else by equal split and split_seed fields."""
    a, b = child.valid, parent.valid
    if a is not None and b is not None and {"path", "fold"} <= set(a) and {"path", "fold"} <= set(b):
        return len(a) == len(b) and a.set_index("path")["fold"].sort_index().equals(b.set_index("path")["fold"].sort_index())
    fa, fb = child.config.get("fields") or {}, parent.config.get("fields") or {}
    return all(fa.get(k, 0) == fb.get(k, 0) for k in ("split", "split_seed"))


def compare(child, parent, child_metrics=None, n=1000, seed=0):
    """The verdict of run `child` against run `parent` (RunRecords, or run folders to read): by folds when
    both ran the same complete folds, else by the paired bootstrap over their validation predictions,
    else over their holdout predictions; None when neither is possible."""
    child, parent = _record(child), _record(parent)
    child_metrics = child.metrics if child_metrics is None else child_metrics
    cf, pf = fold_scores(child.dir, child_metrics), fold_scores(parent.dir, parent.metrics)
    if (cf and pf and len(cf) == len(pf) and _complete(child_metrics) and _complete(parent.metrics)
            and same_folds(child, parent)):
        v = fold_test(cf, pf)
        if v is not None:
            return v
    for attr, key, on in (("valid", "path", "validation"), ("holdout", "ImageID", "holdout")):
        a, b = getattr(child, attr), getattr(parent, attr)
        if a is None or b is None:
            continue
        # the holdout is grouped by person where the answers name them (the twin's do), else by image
        group = "person" if "person" in a and "person" in b else key
        v = paired_bootstrap(a, b, n=n, seed=seed, key=key, group=group)
        if v is not None:
            return {**v, "on": on}
    return None


def _record(run):
    return run if isinstance(run, RunRecord) else read_run(run)


@dataclass
class Judgement:
    """This run against its parent's comparable run: what the card says and metrics.json records."""
    parent: Optional[RunRecord] = None
    verdict: Optional[dict] = None               # compare()'s dict; None when no paired test was possible
    rising: list = field(default_factory=list)   # which of the two were still improving at their last epoch
    other_fingerprints: list = field(default_factory=list)  # no parent run: the data of the parent's other runs

    @property
    def entry(self):
        """metrics.json's "verdict": the verdict with the parent run's folder name; None without a parent run."""
        if self.parent is None:
            return None
        return {**(self.verdict or {"verdict": "cannot compare"}), "parent_run": self.parent.name,
                **({"provisional": True} if self.rising and self.verdict else {})}


def judge(this, runs_dir):
    """The Judgement of RunRecord `this` against the newest comparable run of its parent in `runs_dir`."""
    cfg = this.config
    par = parent_of(cfg, runs_dir)
    if par is None:
        other = [e for e in finished(runs_dir, name=cfg["parent"])
                 if e.config.get("data_fingerprint") != cfg.get("data_fingerprint")] if cfg.get("parent") else []
        return Judgement(other_fingerprints=[str(e.config.get("data_fingerprint")) for e in other])
    parent = read_run(par)
    try:
        v = compare(this, parent)
    except Exception as e:  # noqa: BLE001  (an older or damaged parent run must not cost this run its card)
        warnings.warn(f"verdict against {par.name}: {type(e).__name__}: {e}")
        v = None
    rising = [who for who, h in (("this run", this.history), ("the parent's run", parent.history)) if still_improving(h)]
    return Judgement(parent, v, rising)


def still_improving(history, tol=0.005):
    """True when validation macro F1 was still rising at the last epoch (the mean curve over folds or
    seeds): the best epoch is the last and it beats every earlier one by more than `tol`."""
    if history is None or "macro_f1" not in history or len(history) < 2:
        return False
    groups = [c for c in ("fold", "seed") if c in history]
    curve = (history.groupby("epoch")["macro_f1"].mean() if groups and "epoch" in history
             else history["macro_f1"]).to_numpy(float)
    return bool(len(curve) >= 2 and curve[-1] > curve[:-1].max() + tol)


def sentence(v, provisional=False):
    if v is None or "delta" not in v:
        return ("**Verdict: cannot compare** — the runs validated on other images (another split, seed or "
                "data) and have no shared holdout predictions, so no paired test is possible.")
    tail = (" *Provisional*: a model was still improving at its last epoch, so this verdict holds for "
            "this training budget only." if provisional else "")
    if v.get("method") == "folds":
        deltas = ", ".join(f"{x:+.3f}" for x in v["deltas"])
        return (f"**Verdict: {v['verdict']}** — mean macro F1 {v['delta']:+.3f} against the parent over "
                f"{v['folds']} folds (per fold: {deltas}); paired t-test p = {v['p']:.3g}, "
                f"{v['level']:.0%} interval [{v['low']:+.3f}, {v['high']:+.3f}] (supported when p < {v['alpha']:g} "
                f"and the mean is above 0, refuted when p < {v['alpha']:g} and below); the child won "
                f"{v['wins']} of {v['folds']} folds and lost {v['losses']} (sign test p = {v['sign_p']:.3g})." + tail)
    on = v.get("on", "validation")
    where = ("on the holdout, since the runs validated on different images" if on == "holdout"
             else "on validation")
    units = "people" if v.get("units", "person") == "person" else "images"
    seeds = v.get("seeds", 1)
    resample = (f"{seeds} paired seeds, then {v['people']} {units}" if seeds > 1
                else f"{v['people']} {units} (one seed: training noise is not in this interval; "
                     f"`--replicates 3` measures it)")
    out = (f"**Verdict: {v['verdict']}** — macro F1 {v['delta']:+.3f} against the parent {where}; "
           f"{v['level']:.0%} bootstrap interval [{v['low']:+.3f}, {v['high']:+.3f}] from {v['n']} resamples of "
           f"{resample} (supported when the whole interval is above 0, refuted when below); "
           f"the child was better in {v['p_better']:.0%} of resamples.")
    if "mde" in v:
        out += (f" The smallest effect this setup detects (80 % power) is about {v['mde']:.3f} "
                f"(bootstrap standard error {v['se']:.3f}).")
    return out + tail

"""Did the hypothesis beat its parent?

The evidence is paired: seed s of the child against seed s of the parent, on the same validation people
(else the same holdout people). For each paired seed the judged quantity (validation macro F1, one task's
F1, or the validation-holdout gap) gives a delta; their mean is the estimate. Its noise has two parts: person
noise (a bootstrap over the validation people, 7 correlated photos each, resampled jointly for every seed and
both runs; the part that more seeds cannot average away) on a normal quantile, and training noise (the
spread of the per-seed deltas, which two or three seeds measure badly, floored at the per-person part of it
that the bootstrap measures) on a t quantile with k - 1 degrees of freedom; their half-widths add in
quadrature (`judge_deltas`). tests/test_calibration.py and bench/calibration.py measure the false-claim and
detection rates of the whole procedure.

Sequential: `--decide` looks after every added seed pair and users re-judge whenever, so each look spends
part of the error rate. A look is indexed by the number of paired seeds k (the same data always gives the
same verdict), and look k spends alpha / (k (k - 1)) (these sum to alpha over k = 2, 3, ...: valid however
many seeds come), or alpha / (M - 1) when the design caps the seeds at M (`max_seeds`, the recipe's
`decide`; only the first M seeds by value then count). A union bound over the looks: the chance that any
look claims a wrong direction, or "no effect" when the effect is at least min_effect, stays below alpha.

Rules: one paired seed never claims ("unreplicated"); when both models are within noise of a chance-level
predictor nothing is claimed ("neither learned"); otherwise "supported" when the interval is above 0,
"refuted" when below, "no effect" when it lies inside +-min_effect, else "inconclusive". K folds on the
same people: the per-fold paired differences, judged by a paired t-test (`fold_test`). `plan` says what would
resolve a given effect; `sentence` writes the card's verdict paragraph."""
import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.errors import FastmaskError
from fastmask.labels import N_CLASSES
from fastmask.learn.metrics import f1_of_counts as _macro_f1, group_counts as _counts
from fastmask.store.folder import FOLD_SCORES
from fastmask.store.run_folder import RunFolder

ALPHA = 0.05
POWER = 0.8
VERDICTS = ("supported", "refuted", "no effect", "inconclusive", "unreplicated", "neither learned")
# judged_on -> (words for a sentence, classes of the quantity, class ids from 18-class ids)
TASKS = {"macro_f1": ("macro F1", N_CLASSES, lambda y: y),
         "mask_f1": ("mask F1", 3, lambda y: y // 6),
         "gender_f1": ("gender F1", 2, lambda y: (y // 3) % 2),
         "age_f1": ("age F1", 3, lambda y: y % 3)}
QUANTITIES = (*TASKS, "gap")
CHANCE_Z = 2.0       # "within noise of chance": less than this many of the model's own standard errors above it
CHANCE_DRAWS = 20    # permutations of the predictions against the labels for the chance-level macro F1


def _stats():
    from scipy import stats  # here: the board and compare tables import this module and test nothing
    return stats


# --- counts and F1 ------------------------------------------------------------------------------------

def _resample(counts, w):
    """Counts summed under bootstrap weights: `counts` (k, units, 3, C), `w` (B, units) -> (B, k, 3, C)."""
    k, u, _, c = counts.shape
    return (w @ counts.transpose(1, 0, 2, 3).reshape(u, -1)).reshape(len(w), k, 3, c)


def _weights(rng, units, n):
    return rng.multinomial(units, np.full(units, 1 / units), size=n).astype(float)


# --- seeds: pooled over runs, paired by value ----------------------------------------------------------

def _seed_of(run):
    s = (run.config.get("fields") or {}).get("seed", 0)
    return int(s) if isinstance(s, (int, float)) else 0


def _seeds(runs):
    """{seed: (valid rows, holdout rows)} over `runs` (newest first): a seed is the frames' `seed` value, else
    the run's seed field; when two runs hold a seed, the first in the list gives both its frames."""
    out = {}
    for r in runs:
        frames = {}
        for i, f in enumerate((r.valid, r.holdout)):
            if f is None or not len(f):
                continue
            groups = f.groupby("seed") if "seed" in f else [(_seed_of(r), f)]
            for s, g in groups:
                frames.setdefault(int(s), [None, None])[i] = g
        for s, pair in frames.items():
            out.setdefault(s, tuple(pair))
    return out


def _paired_seeds(child, parent, max_seeds=None):
    common = sorted(set(child) & set(parent))
    return common[:max_seeds] if max_seeds else common


# --- the paired bootstrap engine -------------------------------------------------------------------------

class _Table:
    """One seed's predictions on shared units: labels, the child's and parent's preds, unit codes."""

    def __init__(self, y, pc, pp, units):
        self.y, self.pc, self.pp, self.units = y, pc, pp, units


def _align(a, b, key):
    """(labels, child preds, parent preds in the child's row order) when frames `a` and `b` predicted exactly
    the same `key`s (each once), else None."""
    if a is None or b is None or len(a) != len(b) or not len(a):
        return None
    ka, kb = pd.Index(a[key].astype(str)), pd.Index(b[key].astype(str))
    if not (ka.is_unique and kb.is_unique):
        return None
    pos = kb.get_indexer(ka)
    if (pos < 0).any():
        return None
    return a["label"].to_numpy(int), a["pred"].to_numpy(int), b["pred"].to_numpy(int)[pos]


def _units(frames, group, key):
    col = key if group is None else group
    return pd.Index(pd.unique(pd.concat([f[col].astype(str) for f in frames])))


def _codes(frame, col, units):
    return units.get_indexer(frame[col].astype(str))


def _paired_tables(cf, pf, key, group):
    """Per paired seed, the aligned predictions on units shared by all seeds; None when some pair predicted
    other images."""
    aligned = [_align(a, b, key) for a, b in zip(cf, pf)]
    if any(x is None for x in aligned):
        return None
    code = _units(cf, group, key)
    tables = []
    col = key if group is None else group
    for (y, pc, pp), a in zip(aligned, cf):
        tables.append(_Table(y, pc, pp, _codes(a, col, code)))
    return tables, len(code)


def _task_counts(tables, n_units, judged_on, side):
    _, n_cls, enc = TASKS[judged_on]
    return np.stack([_counts(enc(t.y), enc(getattr(t, side)), t.units, n_units, n_cls) for t in tables])


def _score_draws(counts, w):
    """Observed (k,) and bootstrap (B, k) macro F1 per seed from counts (k, units, 3, C) and weights (B, units)."""
    return _macro_f1(counts.sum(1)), _macro_f1(_resample(counts, w))


def _own_counts(frames):
    """Each frame's own 18-class counts per person (per image without a person column), (k, units, 3, 18)."""
    col = "person" if all("person" in f for f in frames) else "path" if all("path" in f for f in frames) else "ImageID"
    return _person_counts(frames, _units(frames, col, col), col)


def chance_f1(frames, draws=CHANCE_DRAWS, seed=0):
    """Mean macro F1 of a chance-level predictor on these frames: each model's own predictions permuted
    against the labels (the same class shares, no information), `draws` permutations over all seeds."""
    rng = np.random.default_rng(seed)
    each = max(1, -(-draws // len(frames)))
    out = []
    for f in frames:
        y, p = f["label"].to_numpy(int), f["pred"].to_numpy(int)
        perm = np.argsort(rng.random((each, len(p))), axis=1)
        c = _counts(np.tile(y, each), p[perm].ravel(), np.repeat(np.arange(each), len(y)), each)
        out.append(_macro_f1(c).mean())
    return float(np.mean(out))


def learned(frames, n=200, seed=0):
    """(mean macro F1 over seeds, chance-level macro F1, the score's person-bootstrap SE) of one model's
    prediction frames (one per seed)."""
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return None
    counts = _own_counts(frames)
    obs, draws = _score_draws(counts, _weights(np.random.default_rng(seed), counts.shape[1], n))
    return float(obs.mean()), chance_f1(frames, seed=seed), float(draws.mean(1).std(ddof=1))


# --- the verdict from per-seed deltas -------------------------------------------------------------------

def spent_alpha(k, alpha=ALPHA, max_seeds=None):
    """The error rate look k (k paired seeds) may spend: alpha / (max_seeds - 1) for a design capped at
    max_seeds, else alpha / (k (k - 1)), which sums to alpha over k = 2, 3, ... (one seed never claims)."""
    if k < 2:
        return alpha
    if max_seeds and max_seeds >= 2:
        return alpha / (max_seeds - 1)
    return alpha / (k * (k - 1))


_NOISE = ("The interval adds person noise (a bootstrap over the validation people, normal quantile) and training "
          "noise (the spread of the per-seed deltas, at least the per-person part the bootstrap measures, t quantile "
          "on k - 1 degrees of freedom) in quadrature.")


def design_text(alpha=ALPHA, max_seeds=None):
    if max_seeds and max_seeds >= 2:
        return (f"Sequential over paired seeds (looks at 2..{max_seeds} seeds): each look spends "
                f"{alpha:g}/{max_seeds - 1} = {alpha / (max_seeds - 1):.3g} of the error rate (a union bound, so "
                f"however many of the {max_seeds - 1} looks are taken, a false claim stays below {alpha:g}). " + _NOISE)
    return (f"Sequential over paired seeds, for any number of looks: the look at k seeds spends {alpha:g}/(k(k-1)) "
            f"of the error rate ({alpha / 2:.3g} at 2 seeds, {alpha / 6:.3g} at 3), which sums to {alpha:g}, so "
            f"re-judging as seeds come in keeps a false claim below {alpha:g}. " + _NOISE)


@functools.lru_cache(maxsize=4096)  # plan() searches seeds and people: thousands of scalar ppf calls, few distinct
def _quantile(p, df=math.inf):
    st = _stats()
    return float(st.norm.ppf(p) if not math.isfinite(df) else st.t.ppf(p, df))


def _half(person_var, seed_var, k, a, power=None):
    """Half-width of the interval (or, with `power`, the MDE): the person part on a normal quantile, the seed
    part (seed_var / k, estimated from k seeds) on a t quantile with k - 1 degrees of freedom, added in
    quadrature (conservative: neither part's uncertainty borrows the other's degrees of freedom)."""
    qp = _quantile(1 - a / 2) + (_quantile(power) if power else 0)
    out = (qp * math.sqrt(max(person_var, 0.0))) ** 2
    if k > 1 and seed_var > 0:
        qs = _quantile(1 - a / 2, k - 1) + (_quantile(power, k - 1) if power else 0)
        out += (qs * math.sqrt(seed_var / k)) ** 2
    return math.sqrt(out)


def judge_deltas(seed_deltas, draws, *, min_effect=0.02, alpha=ALPHA, max_seeds=None):
    """The verdict's figures from the per-seed deltas (k,) and their bootstrap draws over people (B, k),
    every seed resampled on the same people: delta, interval, noise, MDE and the verdict word (before the
    chance-level rule).

    Noise: the bootstrap variance of the seed-mean delta is P = F + D / k and that of one seed's delta
    V1 = F + D, where F is the person noise seeds cannot average away (this sample of people favours one
    recipe) and D the per-person part of training noise; so F = (k P - V1) / (k - 1). The between-seed
    variance s^2 of the deltas holds all training noise (D and any shift that moves every person), so it is
    at least D. The interval: delta +- sqrt((z F^0.5)^2 + (t_(k-1) max(s^2, D)^0.5 / k^0.5)^2) at the error
    rate this look spends."""
    d = np.asarray(seed_deltas, float)
    draws = np.asarray(draws, float).reshape(-1, len(d))
    k = len(d)
    delta = float(d.mean())
    boot = float(draws.mean(1).var(ddof=1)) if len(draws) > 1 else 0.0
    one = float(draws.var(0, ddof=1).mean()) if len(draws) > 1 else 0.0
    if k > 1:
        person_var = max((k * boot - one) / (k - 1), 0.0)
        per_person_seed_var = max(k * (one - boot) / (k - 1), 0.0)
        seed_sd = float(d.std(ddof=1))
    else:
        person_var, per_person_seed_var, seed_sd = boot, None, None
    # the per-person part of training noise must show in the spread of the seeds: a spread below it (two
    # seeds that agree by luck) is floored there, since D comes from every person and s^2 from k - 1 df
    seed_var = max(seed_sd ** 2, per_person_seed_var) if seed_sd is not None else 0.0
    se = math.sqrt(person_var + seed_var / k)
    a = spent_alpha(k, alpha, max_seeds)
    half = _half(person_var, seed_var, k, a)
    low, high = delta - half, delta + half
    if k < 2:
        verdict = "unreplicated"
    elif low > 0:
        verdict = "supported"
    elif high < 0:
        verdict = "refuted"
    elif -min_effect < low and high < min_effect:
        verdict = "no effect"
    else:
        verdict = "inconclusive"
    p_better = float(_stats().norm.cdf(delta / se)) if se > 0 else 1.0 if delta > 0 else 0.0 if delta < 0 else 0.5
    # one seed: the MDE of the first look that may claim (2 seeds) from person noise alone
    mde = _half(person_var, seed_var, k, a if k > 1 else spent_alpha(2, alpha, max_seeds), POWER)
    return {"verdict": verdict, "delta": delta, "low": low, "high": high, "level": 1 - a, "alpha": alpha,
            "alpha_spent": a, "seeds": k, "se": se, "person_se": math.sqrt(person_var), "seed_sd": seed_sd,
            "training_sd": math.sqrt(seed_var) if seed_sd is not None else None,
            "bootstrap_se": math.sqrt(boot), "per_person_seed_var": per_person_seed_var, "mde": mde,
            "p_better": p_better, "min_effect": min_effect, "max_seeds": max_seeds or None,
            "seed_deltas": [float(x) for x in d]}


# --- one method: paired images (validation or holdout), or the gap ---------------------------------------

def paired_bootstrap(child, parent, n=1000, seed=0, key="path", group="person", *, judged_on="macro_f1",
                     min_effect=0.02, alpha=ALPHA, max_seeds=None):
    """The verdict on prediction frames `child` and `parent` (`key`, `group`, label, pred and, for several
    seeds, a `seed` column; seeds pair by value). `group=None` resamples images. None when some paired
    seed did not predict the same images on both sides, or no seed is on both."""
    c, p = _frame_seeds(child), _frame_seeds(parent)
    seeds = _paired_seeds(c, p, max_seeds)
    if not seeds:
        return None
    v = _paired_images([c[s] for s in seeds], [p[s] for s in seeds], key, group, judged_on, n, seed,
                       min_effect, alpha, max_seeds)
    if v is None:
        return None
    v.pop("_own")
    return {**v, "seed_values": seeds, "quantity": judged_on, "design": design_text(alpha, max_seeds)}


def _frame_seeds(frame):
    return {int(s): g for s, g in frame.groupby("seed")} if "seed" in frame else {0: frame}


def _paired_images(cf, pf, key, group, judged_on, n, seed, min_effect, alpha, max_seeds):
    if group is not None and not all(group in f for f in [*cf, *pf]):
        group = None
    made = _paired_tables(cf, pf, key, group)
    if made is None:
        return None
    tables, n_units = made
    w = _weights(np.random.default_rng(seed), n_units, n)
    oc, bc = _score_draws(_task_counts(tables, n_units, judged_on, "pc"), w)
    op, bp = _score_draws(_task_counts(tables, n_units, judged_on, "pp"), w)
    v = judge_deltas(oc - op, bc - bp, min_effect=min_effect, alpha=alpha, max_seeds=max_seeds)
    if judged_on != "macro_f1":  # the chance-level check reads 18-class macro F1
        oc, bc = _score_draws(_task_counts(tables, n_units, "macro_f1", "pc"), w)
        op, bp = _score_draws(_task_counts(tables, n_units, "macro_f1", "pp"), w)
    own = {"child": (float(oc.mean()), float(bc.mean(1).std(ddof=1))),
           "parent": (float(op.mean()), float(bp.mean(1).std(ddof=1)))}
    return {**v, "method": "bootstrap", "people": n_units, "units": group or key, "n": n, "_own": own}


def _person_counts(frames, code, col):
    return np.stack([_counts(f["label"].to_numpy(int), f["pred"].to_numpy(int), _codes(f, col, code), len(code))
                     for f in frames])


def _gap(cv, ch, pv, ph, n, seed, min_effect, alpha, max_seeds):
    """delta = parent's gap - child's gap, gap = |validation macro F1 - holdout macro F1| per seed. The
    holdout images are shared (resampled paired by person); each run's validation people are resampled on
    their own (jointly when both validated the same people)."""
    made = _paired_tables(ch, ph, "ImageID", "person" if all("person" in f for f in [*ch, *ph]) else None)
    if made is None or any(f is None or not len(f) for f in [*cv, *pv]):
        return None
    tables, n_hold = made
    rng = np.random.default_rng(seed)
    wh = _weights(rng, n_hold, n)
    hc = _score_draws(_task_counts(tables, n_hold, "macro_f1", "pc"), wh)
    hp = _score_draws(_task_counts(tables, n_hold, "macro_f1", "pp"), wh)
    col = "person" if all("person" in f for f in [*cv, *pv]) else "path"
    code_c, code_p = _units(cv, col, col), _units(pv, col, col)
    same = set(code_c) == set(code_p)
    if same:
        code_p = code_c
    wc = _weights(rng, len(code_c), n)
    wp = wc if same else _weights(rng, len(code_p), n)
    vc = _score_draws(_person_counts(cv, code_c, col), wc)
    vp = _score_draws(_person_counts(pv, code_p, col), wp)
    gap_c = [np.abs(v - h) for v, h in zip(vc, hc)]
    gap_p = [np.abs(v - h) for v, h in zip(vp, hp)]
    v = judge_deltas(gap_p[0] - gap_c[0], gap_p[1] - gap_c[1], min_effect=min_effect, alpha=alpha,
                     max_seeds=max_seeds)
    return {**v, "method": "bootstrap", "people": n_hold, "units": "person" if col == "person" else "ImageID",
            "valid_people": [len(code_c), len(code_p)], "n": n,
            "gaps": {"child": [float(x) for x in gap_c[0]], "parent": [float(x) for x in gap_p[0]]}}


# --- k folds --------------------------------------------------------------------------------------------

def fold_test(child, parent, alpha=ALPHA):
    """Paired test over k folds: `child` and `parent` are per-fold macro F1 lists, fold i against fold i
    (the same people validate both). Decided by a two-sided paired t-test at `alpha`: supported when the
    mean difference is above 0 with p < alpha, refuted when below; the exact sign test is reported too.
    None when the fold counts differ or there are fewer than 2 folds."""
    stats = _stats()
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
            "sign_p": sign_p, "verdict": verdict, "se": sd / math.sqrt(k),
            "design": f"One paired t-test over the {k} folds at {alpha:g} (k-fold runs are judged once, not "
                      "sequentially)."}


def fold_scores(run_dir, metrics=None):
    """Per-fold validation macro F1 of a run, or None: `metrics.json["folds"]` (numbers, or dicts with
    `macro_f1`), else `folds.csv` (a `macro_f1` column, ordered by `fold` when there is one)."""
    run_dir = Path(run_dir)
    if metrics is None:
        metrics = RunFolder(run_dir).metrics
    folds = metrics.get("folds")
    if isinstance(folds, list) and folds:
        try:
            return [float(f["macro_f1"] if isinstance(f, dict) else f) for f in folds]
        except (KeyError, TypeError, ValueError):
            return None
    path = run_dir / FOLD_SCORES
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


def _task_fold_scores(valid, judged_on):
    """Per-fold F1 of one task from a k-fold run's validation predictions (a `fold` column), or None."""
    if valid is None or "fold" not in valid:
        return None
    _, n_cls, enc = TASKS[judged_on]
    out = []
    for _, g in sorted(valid.groupby("fold"), key=lambda x: x[0]):
        y, p = enc(g["label"].to_numpy(int)), enc(g["pred"].to_numpy(int))
        out.append(float(_macro_f1(_counts(y, p, np.zeros(len(y), int), 1, n_cls)[0])))
    return out


def _complete(metrics):
    """False when some folds of a k-fold run failed (their scores are missing from `folds`)."""
    st = (metrics or {}).get("fold_status")
    return not isinstance(st, dict) or all(v == "finished" for v in st.values())


def same_folds(child, parent):
    """Whether the two runs' fold i validated the same people: by the `fold` column of their validation
    predictions when both have one, else by equal split and split_seed fields."""
    a, b = child.valid, parent.valid
    if a is not None and b is not None and {"path", "fold"} <= set(a) and {"path", "fold"} <= set(b):
        a = a.drop_duplicates("path") if "seed" in a else a
        b = b.drop_duplicates("path") if "seed" in b else b
        fold = lambda f: f.set_index("path")["fold"].sort_index()  # noqa: E731
        return len(a) == len(b) and fold(a).equals(fold(b))
    fa, fb = child.config.get("fields") or {}, parent.config.get("fields") or {}
    return all(fa.get(k, 0) == fb.get(k, 0) for k in ("split", "split_seed"))


def _by_folds(child, parent, child_metrics, judged_on, alpha):
    if judged_on == "gap":
        return None
    if judged_on == "macro_f1":
        cf, pf = fold_scores(child.dir, child_metrics), fold_scores(parent.dir, parent.metrics)
    else:
        cf, pf = _task_fold_scores(child.valid, judged_on), _task_fold_scores(parent.valid, judged_on)
        if not (fold_scores(child.dir, child_metrics) and fold_scores(parent.dir, parent.metrics)):
            cf = None
    if (cf and pf and len(cf) == len(pf) and _complete(child_metrics) and _complete(parent.metrics)
            and same_folds(child, parent)):
        return fold_test(cf, pf, alpha)
    return None


# --- compare: the one entry point -------------------------------------------------------------------------

def compare(child, parent, child_metrics=None, *, judged_on="macro_f1", min_effect=0.02, max_seeds=None,
            alpha=ALPHA, n=1000, seed=0):
    """The verdict of `child` against `parent`: each a RunFolder, a run folder, or a list of RunFolders (every
    comparable run of that setup, newest first, pooled seed by seed). Seeds pair by value; with `max_seeds`
    (the design's cap) only the first `max_seeds` paired seeds count. By folds when both newest runs ran the
    same complete folds, else paired over their validation predictions, else over their holdout
    predictions grouped by person; `judged_on="gap"` needs validation and holdout predictions of both.
    None when no paired test is possible. See the module docstring for the rules and the design."""
    if judged_on not in QUANTITIES:
        raise FastmaskError(f"judged_on {judged_on!r}: choose one of {', '.join(QUANTITIES)}")
    kids, pars = _records(child), _records(parent)
    if not kids or not pars:
        return None
    max_seeds = int(max_seeds) if max_seeds and max_seeds >= 2 else None
    common = {"quantity": judged_on, "min_effect": min_effect, "judged_on": judged_on}
    child_metrics = kids[0].metrics if child_metrics is None else child_metrics
    v = _by_folds(kids[0], pars[0], child_metrics, judged_on, alpha)
    if v is not None:
        v.update(common, **_chance(_listed(kids[0].valid), _listed(pars[0].valid), min(n, 200), seed))
        if v.get("neither_learned"):
            v.update(verdict="neither learned", advice=advice(kids[0].config))
        v["plan"] = plan(v)
        return v
    cs, ps = _seeds(kids), _seeds(pars)
    seeds = _paired_seeds(cs, ps, max_seeds)
    if not seeds:
        return None
    cv, ch = [cs[s][0] for s in seeds], [cs[s][1] for s in seeds]
    pv, ph = [ps[s][0] for s in seeds], [ps[s][1] for s in seeds]
    v = None
    if judged_on == "gap":
        if not any(f is None for f in [*ch, *ph]):
            v = _gap(cv, ch, pv, ph, n, seed, min_effect, alpha, max_seeds)
            if v is not None:
                v["on"] = "holdout"
    else:
        for frames, key, on in (((cv, pv), "path", "validation"), ((ch, ph), "ImageID", "holdout")):
            a, b = frames
            if any(f is None for f in [*a, *b]):
                continue
            # the holdout is grouped by person where the answers name them (the twin's do), else by image
            v = _paired_images(a, b, key, "person", judged_on, n, seed, min_effect, alpha, max_seeds)
            if v is not None:
                v["on"] = on
                break
    if v is None:
        return None
    v.update(common, seed_values=seeds, design=design_text(alpha, max_seeds))
    if v.get("on") == "validation":
        fields = kids[0].config.get("fields") or {}
        frac = fields.get("valid_pct")
        if isinstance(frac, (int, float)) and 0 < frac < 1 and fields.get("split") == "person":
            v["total_people"] = int(round(v["people"] / frac))
    valid_c = [f for f in cv if f is not None] or ch
    valid_p = [f for f in pv if f is not None] or ph
    own = v.pop("_own", None) if v.get("on") == "validation" else None
    v.pop("_own", None)
    chance = _chance(valid_c, valid_p, min(n, 200), seed, own)
    v.update(chance)
    if chance.get("neither_learned"):
        v["verdict"] = "neither learned"
        v["advice"] = advice(kids[0].config)
    v["plan"] = plan(v)
    return v


def _chance(child_frames, parent_frames, n, seed, own=None):
    """The chance-level rule: each model's validation macro F1 (mean over seeds), the chance level (its own
    predictions shuffled against the labels) and the score's person-bootstrap SE; `own` gives the first and
    last when the paired bootstrap already measured them on these frames."""
    if not child_frames or not parent_frames or any(f is None for f in [*child_frames, *parent_frames]):
        return {}
    figures = {}
    for who, frames in (("child", child_frames), ("parent", parent_frames)):
        if own is not None:
            figures[who] = [own[who][0], chance_f1(frames, seed=seed), own[who][1]]
        else:
            got = learned(frames, n, seed)
            if got is None:
                return {}
            figures[who] = list(got)
    near = [score - chance <= CHANCE_Z * se for score, chance, se in figures.values()]
    return {"chance": figures, "neither_learned": bool(all(near))}


def advice(config):
    f = (config or {}).get("fields") or {}
    ep, lr = f.get("epochs"), f.get("lr")
    more = f"`--set epochs={max(2 * ep, 15)}`" if isinstance(ep, int) else "more `epochs`"
    other = "`--set lr=find`" if lr != "find" else "a fixed `lr` such as `--set lr=1e-3`"
    return (f"Train longer ({more}" + (f"; it was {ep}" if isinstance(ep, int) else "") + f") or try another "
            f"learning rate ({other}" + (f"; it was {lr}" if lr is not None else "")
            + ") before judging the hypothesis.")


def _listed(frame):
    return None if frame is None else [frame]


def _records(runs):
    if isinstance(runs, (list, tuple)):
        return [_record(r) for r in runs]
    return [_record(runs)]


def _record(run):
    return run if isinstance(run, RunFolder) else RunFolder(run)


# --- the plan: what would resolve an effect ---------------------------------------------------------------

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
        mde = (_quantile(1 - a / 2, k - 1) + _quantile(POWER, k - 1)) * v["se"]
        return {"effect": effect or v.get("min_effect", 0.02), "mde": mde, "folds": k}
    if not v or "person_se" not in v:
        return None
    e = effect or v.get("min_effect", 0.02)
    alpha, cap = v.get("alpha", ALPHA), v.get("max_seeds")
    k, n_people = max(int(v.get("seeds") or 1), 1), int(v.get("people") or 0)
    measured = v.get("seed_sd") is not None
    f_var = v["person_se"] ** 2                      # one seed: person and training noise together
    d_var = (v.get("per_person_seed_var") or 0.0) if measured else 0.0
    g_var = max(v["seed_sd"] ** 2 - d_var, 0.0) if measured else 0.0

    def mde_at(kk, nn):
        r = n_people / nn
        return _half(f_var * r, d_var * r + g_var, kk, spent_alpha(kk, alpha, cap), POWER)

    out = {"effect": e, "mde": v.get("mde"), "seeds": k, "people": n_people, "seed_measured": measured,
           "person_se": v["person_se"], "seed_sd": v.get("seed_sd"), "max_seeds": cap}
    top = min(cap, max_k) if cap else max_k
    out["seeds_needed"] = (next((kk for kk in range(max(k, 2), top + 1) if mde_at(kk, n_people) <= e), None)
                           if measured and n_people else None)
    out["seed_floor"] = (_quantile(1 - alpha / 2) + _quantile(POWER)) * v["person_se"]
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
            folds[f] = (_quantile(1 - alpha / 2, f - 1) + _quantile(POWER, f - 1)) * math.sqrt(var)
        out["kfold"] = folds
        out["kfold_reaches"] = next((f for f, m in folds.items() if m <= e), None)
    return out


def plan_lines(v, effect=None, total_people=None):
    """The plan in plain sentences: the card's "what would decide it" and `fastmask plan`."""
    if v and v.get("verdict") == "neither learned":
        return [v.get("advice") or advice({}), "More seeds or people cannot help until the models learn."]
    p = plan(v, effect, total_people)
    if p is None:
        return []
    e = p["effect"]
    if "folds" in p:
        return [f"These {p['folds']} folds detect about {p['mde']:.3f} (80 % power at {v.get('alpha', ALPHA):g}); "
                + (f"resolving {e:.3f} needs more folds (more people per model) or a larger data set."
                   if p["mde"] > e else f"that resolves {e:.3f}.")]
    units = "validation people" if v.get("units", "person") == "person" else "holdout images"
    if v.get("units", "person") == "person" and v.get("on") == "holdout":
        units = "holdout people"
    out = []
    seeds = f"{p['seeds']} paired seed{'s' if p['seeds'] > 1 else ''}"
    if p["mde"] is not None:
        verb = "detects" if p["seeds"] == 1 else "detect"
        out.append(f"To resolve {e:.3f} at 80 % power: {seeds} on {p['people']} {units} {verb} about {p['mde']:.3f}"
                   + ("." if p["seed_measured"] else " even before training noise is counted."))
    if not p["seed_measured"]:
        out.append(f"One seed cannot tell person noise from training noise (together: SE {p['person_se']:.3f}); "
                   f"a second paired seed measures the training noise, and only then can more seeds be planned.")
    elif p["seeds_needed"] is not None:
        out.append(f"Seeds: about {p['seeds_needed']} paired seeds on these {p['people']} {units} would resolve "
                   f"{e:.3f}.")
    elif p["seed_floor"] > e:
        out.append(f"Seeds alone cannot get below {p['seed_floor']:.3f}: person noise alone gives SE "
                   f"{p['person_se']:.3f} with {p['people']} {units}.")
    else:
        out.append(f"Seeds: more than {p['max_seeds'] or 100} paired seeds would be needed on these {units}.")
    if p["people_needed"] is not None:
        out.append(f"People: about {p['people_needed']} {units} with {p['people_seeds']} paired seeds would resolve "
                   f"{e:.3f}"
                   + ("" if p["seed_measured"] else ", if training noise is small") + ".")
    else:
        out.append(f"People: with {p['people_seeds']} paired seeds, training noise alone (SD {p['seed_sd'] or 0:.3f} a "
                   f"seed) is too large for {e:.3f} however many people validate; add seeds as well.")
    if p.get("kfold"):
        kf = ", ".join(f"kfold:{f} about {m:.3f}" for f, m in p["kfold"].items())
        reach = (f"kfold:{p['kfold_reaches']} would resolve {e:.3f}" if p["kfold_reaches"]
                 else f"none of them resolves {e:.3f} on this data")
        out.append(f"k-fold on all {p['total_people']} people (each validates once; one paired t-test over the folds): "
                   f"{kf}; {reach}" + ("" if p["seed_measured"] else " (if training noise is small)") + ".")
    return out


# --- the card's verdict paragraph -------------------------------------------------------------------------

def quantity_words(judged_on):
    if judged_on == "gap":
        return "the validation-holdout gap"
    return TASKS.get(judged_on or "macro_f1", ("macro F1",))[0]


def sentence(v, provisional=False, command=None):
    if v is None or "delta" not in v:
        return ("**Verdict: cannot compare** — the runs validated on other images (another split, seed or "
                "data) and have no shared holdout predictions, so no paired test is possible.")
    tail = (" *Provisional*: a model was still improving at its last epoch, so this verdict holds for "
            "this training budget only." if provisional else "")
    q = quantity_words(v.get("quantity"))
    on = v.get("on", "validation")
    gap = v.get("quantity") == "gap"
    where = ("" if gap else "on the holdout, since the runs validated on different images" if on == "holdout"
             else "on validation")
    units = "people" if v.get("units", "person") == "person" else "images"
    what = (f"the gap |validation - holdout macro F1| {'shrank' if v['delta'] >= 0 else 'grew'} by "
            f"{abs(v['delta']):.3f} against the parent's (delta {v['delta']:+.3f}: positive is a smaller gap)"
            if gap else f"{q} {v['delta']:+.3f} against the parent {where}".rstrip())
    if v["verdict"] == "neither learned":
        ch = v.get("chance") or {}
        c, p = ch.get("child", [math.nan] * 3), ch.get("parent", [math.nan] * 3)
        return (f"**Verdict: none — neither model learned.** Validation macro F1 {c[0]:.3f} (the child) and "
                f"{p[0]:.3f} (the parent) are within noise of a chance-level predictor ({c[1]:.3f} and {p[1]:.3f}: "
                f"the same predictions shuffled against the labels; person-bootstrap SE {c[2]:.3f} and "
                f"{p[2]:.3f}), so the difference ({what}) says nothing about the hypothesis. "
                f"{v.get('advice') or ''}".rstrip() + tail)
    if v.get("method") == "folds":
        deltas = ", ".join(f"{x:+.3f}" for x in v["deltas"])
        return (f"**Verdict: {v['verdict']}** — mean {q} {v['delta']:+.3f} against the parent over "
                f"{v['folds']} folds (per fold: {deltas}); paired t-test p = {v['p']:.3g}, "
                f"{v['level']:.0%} interval [{v['low']:+.3f}, {v['high']:+.3f}] (supported when p < {v['alpha']:g} "
                f"and the mean is above 0, refuted when p < {v['alpha']:g} and below); the child won "
                f"{v['wins']} of {v['folds']} folds and lost {v['losses']} (sign test p = {v['sign_p']:.3g})." + tail)
    interval = f"[{v['low']:+.3f}, {v['high']:+.3f}]"
    k = v.get("seeds", 1)
    if v["verdict"] == "unreplicated":
        decides = (f" `{command}` decides it." if command else
                   " Paired seeds decide it (`--decide`).")
        return (f"**Unreplicated** — {what}, from one seed of each; {v['level']:.0%} interval {interval} over "
                f"{v['people']} {units}, but one seed cannot claim: training noise (another seed can move {q} "
                f"by as much) is not in it." + decides + tail)
    if v["person_se"] < 5e-4 and v.get("bootstrap_se"):  # the fixed-person part estimated at 0 (clipped)
        person = (f"no person noise beyond the seeds' own: the person bootstrap's SE {v['bootstrap_se']:.3f} over "
                  f"{v['people']} {units} is all seed-to-seed")
    else:
        person = f"person SE {v['person_se']:.3f} from {v['people']} {units}"
    noise = f"{person}, seed SD {v['seed_sd']:.3f} over {k} paired seeds"
    if (v.get("training_sd") or 0) > v["seed_sd"] + 5e-4:
        noise += f" (counted as {v['training_sd']:.3f}: the per-person part of training noise alone is that large)"
    rule = (f"supported when the whole interval is above 0, refuted when below, no effect when it lies inside "
            f"±{v['min_effect']:g}")
    word = (f"no effect as large as {v['min_effect']:g}" if v["verdict"] == "no effect" else v["verdict"])
    per_seed = ", ".join(f"{x:+.3f}" for x in v.get("seed_deltas", []))
    out = (f"**Verdict: {word}** — {what}, mean of {k} paired seeds (per seed: {per_seed}); "
           f"{v['level']:.1%} interval {interval} ({noise}; {rule}).")
    if v["verdict"] == "supported" and v["high"] < v["min_effect"]:
        out += f" The gain is real but may be smaller than {v['min_effect']:g}."
    if v["verdict"] == "refuted" and v["low"] > -v["min_effect"]:
        out += f" The loss is real but may be smaller than {v['min_effect']:g}."
    if v.get("mde") is not None:
        out += f" The smallest effect this detects (80 % power) is about {v['mde']:.3f}."
    if v["verdict"] == "inconclusive" and command:
        out += f" `{command}` adds paired seeds until it decides."
    return out + tail

"""The paired bootstrap on prediction frames (no files): seed s of the child against seed s of the parent on the
same images, the people (7 correlated photos each) resampled jointly for every seed and both runs, giving the
per-seed deltas and their draws that `stats.judge_deltas` turns into a verdict; the validation-holdout gap the
same way (`gap_bootstrap`); and each model's own score against a chance-level predictor (`learned`)."""
import numpy as np
import pandas as pd

from fastmask.learn.metrics import bootstrap_weights, f1_of_counts, group_counts
from fastmask.report.stats import ALPHA, TASKS, judge_deltas, score_draws
from fastmask.report.words import design_text

CHANCE_DRAWS = 20    # permutations of the predictions against the labels for the chance-level macro F1


# --- seeds pair by value ----------------------------------------------------------------------------------

def paired_seeds(child, parent, max_seeds=None):
    """The seed values both `child` and `parent` ({seed: ...}) hold, ascending; the first `max_seeds` of them with a cap."""
    common = sorted(set(child) & set(parent))
    return common[:max_seeds] if max_seeds else common


def _frame_seeds(frame):
    return {int(s): g for s, g in frame.groupby("seed")} if "seed" in frame else {0: frame}


# --- aligning the two runs' predictions -------------------------------------------------------------------

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
    return np.stack([group_counts(enc(t.y), enc(getattr(t, side)), t.units, n_units, n_cls) for t in tables])


def _person_counts(frames, code, col):
    return np.stack([group_counts(f["label"].to_numpy(int), f["pred"].to_numpy(int), _codes(f, col, code), len(code))
                     for f in frames])


def _own_counts(frames):
    """Each frame's own 18-class counts per person (per image without a person column), (k, units, 3, 18)."""
    col = "person" if all("person" in f for f in frames) else "path" if all("path" in f for f in frames) else "ImageID"
    return _person_counts(frames, _units(frames, col, col), col)


# --- one model against chance ---------------------------------------------------------------------------

def chance_f1(frames, draws=CHANCE_DRAWS, seed=0):
    """Mean macro F1 of a chance-level predictor on these frames: each model's own predictions permuted
    against the labels (the same class shares, no information), `draws` permutations over all seeds."""
    rng = np.random.default_rng(seed)
    each = max(1, -(-draws // len(frames)))
    out = []
    for f in frames:
        y, p = f["label"].to_numpy(int), f["pred"].to_numpy(int)
        perm = np.argsort(rng.random((each, len(p))), axis=1)
        c = group_counts(np.tile(y, each), p[perm].ravel(), np.repeat(np.arange(each), len(y)), each)
        out.append(f1_of_counts(c).mean())
    return float(np.mean(out))


def learned(frames, n=200, seed=0):
    """(mean macro F1 over seeds, chance-level macro F1, the score's person-bootstrap SE) of one model's
    prediction frames (one per seed)."""
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return None
    counts = _own_counts(frames)
    obs, draws = score_draws(counts, bootstrap_weights(np.random.default_rng(seed), counts.shape[1], n))
    return float(obs.mean()), chance_f1(frames, seed=seed), float(draws.mean(1).std(ddof=1))


# --- paired images (validation or holdout), or the gap ---------------------------------------------------

def paired_bootstrap(child, parent, n=1000, seed=0, key="path", group="person", *, judged_on="macro_f1",
                     min_effect=0.02, alpha=ALPHA, max_seeds=None):
    """The verdict on prediction frames `child` and `parent` (`key`, `group`, label, pred and, for several
    seeds, a `seed` column; seeds pair by value). `group=None` resamples images. None when some paired
    seed did not predict the same images on both sides, or no seed is on both."""
    c, p = _frame_seeds(child), _frame_seeds(parent)
    seeds = paired_seeds(c, p, max_seeds)
    if not seeds:
        return None
    v = paired_images([c[s] for s in seeds], [p[s] for s in seeds], key, group, judged_on, n, seed,
                      min_effect, alpha, max_seeds)
    if v is None:
        return None
    v.pop("_own")
    return {**v, "seed_values": seeds, "quantity": judged_on, "design": design_text(alpha, max_seeds)}


def paired_images(cf, pf, key, group, judged_on, n, seed, min_effect, alpha, max_seeds):
    """The verdict's figures from the paired seeds' frames `cf` and `pf` (child's, parent's; seed i against
    seed i), with each model's own macro F1 and its SE under `_own` for the chance-level rule; None when some
    pair predicted other images."""
    if group is not None and not all(group in f for f in [*cf, *pf]):
        group = None
    made = _paired_tables(cf, pf, key, group)
    if made is None:
        return None
    tables, n_units = made
    w = bootstrap_weights(np.random.default_rng(seed), n_units, n)
    oc, bc = score_draws(_task_counts(tables, n_units, judged_on, "pc"), w)
    op, bp = score_draws(_task_counts(tables, n_units, judged_on, "pp"), w)
    v = judge_deltas(oc - op, bc - bp, min_effect=min_effect, alpha=alpha, max_seeds=max_seeds)
    if judged_on != "macro_f1":  # the chance-level check reads 18-class macro F1
        oc, bc = score_draws(_task_counts(tables, n_units, "macro_f1", "pc"), w)
        op, bp = score_draws(_task_counts(tables, n_units, "macro_f1", "pp"), w)
    own = {"child": (float(oc.mean()), float(bc.mean(1).std(ddof=1))),
           "parent": (float(op.mean()), float(bp.mean(1).std(ddof=1)))}
    return {**v, "method": "bootstrap", "people": n_units, "units": group or key, "n": n, "_own": own}


def gap_bootstrap(cv, ch, pv, ph, n, seed, min_effect, alpha, max_seeds):
    """delta = parent's gap - child's gap, gap = |validation macro F1 - holdout macro F1| per seed. The
    holdout images are shared (resampled paired by person); each run's validation people are resampled on
    their own (jointly when both validated the same people)."""
    made = _paired_tables(ch, ph, "ImageID", "person" if all("person" in f for f in [*ch, *ph]) else None)
    if made is None or any(f is None or not len(f) for f in [*cv, *pv]):
        return None
    tables, n_hold = made
    rng = np.random.default_rng(seed)
    wh = bootstrap_weights(rng, n_hold, n)
    hc = score_draws(_task_counts(tables, n_hold, "macro_f1", "pc"), wh)
    hp = score_draws(_task_counts(tables, n_hold, "macro_f1", "pp"), wh)
    col = "person" if all("person" in f for f in [*cv, *pv]) else "path"
    code_c, code_p = _units(cv, col, col), _units(pv, col, col)
    same = set(code_c) == set(code_p)
    if same:
        code_p = code_c
    wc = bootstrap_weights(rng, len(code_c), n)
    wp = wc if same else bootstrap_weights(rng, len(code_p), n)
    vc = score_draws(_person_counts(cv, code_c, col), wc)
    vp = score_draws(_person_counts(pv, code_p, col), wp)
    gap_c = [np.abs(v - h) for v, h in zip(vc, hc)]
    gap_p = [np.abs(v - h) for v, h in zip(vp, hp)]
    v = judge_deltas(gap_p[0] - gap_c[0], gap_p[1] - gap_c[1], min_effect=min_effect, alpha=alpha,
                     max_seeds=max_seeds)
    return {**v, "method": "bootstrap", "people": n_hold, "units": "person" if col == "person" else "ImageID",
            "valid_people": [len(code_c), len(code_p)], "n": n,
            "gaps": {"child": [float(x) for x in gap_c[0]], "parent": [float(x) for x in gap_p[0]]}}

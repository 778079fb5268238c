"""Did the hypothesis beat its parent? `compare` chooses the method and gives the verdict.

The evidence is paired: seed s of the child against seed s of the parent, on the same validation people
(else the same holdout people). For each paired seed the judged quantity (validation macro F1, one task's
F1, or the validation-holdout gap) gives a delta; their mean is the estimate, judged with person and
training noise at the error rate this look spends (`stats`: the noise model and the sequential design;
`bootstrap`: the paired bootstrap on prediction frames). tests/test_calibration.py and bench/calibration.py
measure the false-claim and detection rates of the whole procedure.

Rules: one paired seed never claims ("unreplicated"); when both models are within noise of a chance-level
predictor nothing is claimed ("neither learned"); otherwise "supported" when the interval is above 0,
"refuted" when below, "no effect" when it lies inside +-min_effect, else "inconclusive". K folds on the
same people: the per-fold paired differences, judged by a paired t-test (`stats.fold_test`). `plan.plan`
says what would resolve a given effect; `words.sentence` writes the card's verdict paragraph."""
import numpy as np

from fastmask.errors import FastmaskError
from fastmask.learn.metrics import f1_of_counts, group_counts
from fastmask.report.bootstrap import (  # noqa: F401  (paired_bootstrap: tests import it from here)
    chance_f1,
    gap_bootstrap,
    learned,
    paired_bootstrap,
    paired_images,
    paired_seeds,
)
from fastmask.report.plan import plan
from fastmask.report.stats import ALPHA, TASKS, fold_test, judge_deltas, spent_alpha  # noqa: F401  (tests: the last two)
from fastmask.report.words import advice, design_text, plan_lines, sentence  # noqa: F401  (tests, judgement: the last two)
from fastmask.store.run_folder import RunFolder

VERDICTS = ("supported", "refuted", "no effect", "inconclusive", "unreplicated", "neither learned")
QUANTITIES = (*TASKS, "gap")
CHANCE_Z = 2.0       # "within noise of chance": less than this many of the model's own standard errors above it


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


# --- k folds --------------------------------------------------------------------------------------------

def fold_scores(run):
    """Per-fold validation macro F1 of a run folder (a path or RunFolder), or None: `RunFolder.fold_scores`."""
    return _record(run).fold_scores


def _task_fold_scores(valid, judged_on):
    """Per-fold F1 of one task from a k-fold run's validation predictions (a `fold` column), or None."""
    if valid is None or "fold" not in valid:
        return None
    _, n_cls, enc = TASKS[judged_on]
    out = []
    for _, g in sorted(valid.groupby("fold"), key=lambda x: x[0]):
        y, p = enc(g["label"].to_numpy(int)), enc(g["pred"].to_numpy(int))
        out.append(float(f1_of_counts(group_counts(y, p, np.zeros(len(y), int), 1, n_cls)[0])))
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


def _by_folds(child, parent, judged_on, alpha):
    if judged_on == "gap":
        return None
    if judged_on == "macro_f1":
        cf, pf = child.fold_scores, parent.fold_scores
    else:
        cf, pf = _task_fold_scores(child.valid, judged_on), _task_fold_scores(parent.valid, judged_on)
        if not (child.fold_scores and parent.fold_scores):
            cf = None
    if (cf and pf and len(cf) == len(pf) and _complete(child.metrics) and _complete(parent.metrics)
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
    if child_metrics is not None:  # the child's figures as given, not as its metrics.json holds them
        kids[0] = kids[0].but(metrics=child_metrics)
    v = _by_folds(kids[0], pars[0], judged_on, alpha)
    if v is not None:
        v.update(common, **_chance(_listed(kids[0].valid), _listed(pars[0].valid), min(n, 200), seed))
        if v.get("neither_learned"):
            v.update(verdict="neither learned", advice=advice(kids[0].config))
        v["plan"] = plan(v)
        return v
    cs, ps = _seeds(kids), _seeds(pars)
    seeds = paired_seeds(cs, ps, max_seeds)
    if not seeds:
        return None
    cv, ch = [cs[s][0] for s in seeds], [cs[s][1] for s in seeds]
    pv, ph = [ps[s][0] for s in seeds], [ps[s][1] for s in seeds]
    v = None
    if judged_on == "gap":
        if not any(f is None for f in [*ch, *ph]):
            v = gap_bootstrap(cv, ch, pv, ph, n, seed, min_effect, alpha, max_seeds)
            if v is not None:
                v["on"] = "holdout"
    else:
        for frames, key, on in (((cv, pv), "path", "validation"), ((ch, ph), "ImageID", "holdout")):
            a, b = frames
            if any(f is None for f in [*a, *b]):
                continue
            # the holdout is grouped by person where the answers name them (the twin's do), else by image
            v = paired_images(a, b, key, "person", judged_on, n, seed, min_effect, alpha, max_seeds)
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


def _listed(frame):
    return None if frame is None else [frame]


def _records(runs):
    if isinstance(runs, (list, tuple)):
        return [_record(r) for r in runs]
    return [_record(runs)]


def _record(run):
    return run if isinstance(run, RunFolder) else RunFolder(run)

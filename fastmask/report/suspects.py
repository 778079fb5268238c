"""Suspect labels: training images whose given label the out-of-fold models confidently disagree with.

Each training image's OOF probabilities come from a model that never saw that person, so a low
probability for the given label is evidence against the label (or a hard image). `rank` orders
images by that probability, lowest first; `suspects.csv` keeps those whose OOF prediction differs
from the given label. On a synthetic twin, `noise.csv` says which files were mislabelled, and
`precision` scores the ranking: the share of truly noisy files among the top N, N being the number
of noisy files (chance: N / images).

    python -m fastmask.suspects RUN_DIR      # re-score a k-fold run's oof.csv"""
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.errors import FastmaskError
from fastmask.io import atomic_write
from fastmask.labels import describe
from fastmask.report.folds import probs_of
from fastmask.store.folder import METRICS, OOF, SUSPECTS, write_json
from fastmask.store.run_folder import RunFolder

NOISE = "noise.csv"


def rank(oof):
    """All OOF rows ranked by the probability of the given label (ascending; ties: the more confident
    other prediction first), with the predicted label and both in words."""
    probs = probs_of(oof)
    label = oof["label"].to_numpy().astype(int)
    pred = probs.argmax(1)
    p_given = probs[np.arange(len(probs)), label]
    p_pred = probs[np.arange(len(probs)), pred]
    out = pd.DataFrame({
        "path": oof["path"].to_numpy(), "person": oof["person"].to_numpy(),
        "label": label, "given": [describe(x) for x in label],
        "pred": pred, "predicted": [describe(x) for x in pred],
        "p_given": p_given.round(5), "p_pred": p_pred.round(5),
        **({"fold": oof["fold"].to_numpy()} if "fold" in oof else {})})
    order = np.lexsort((-p_pred, p_given))
    return out.iloc[order].reset_index(drop=True)


def suspects(oof):
    """Ranked rows whose OOF prediction is not the given label (suspects.csv), with `rank` from 1."""
    r = rank(oof)
    s = r[r["pred"] != r["label"]].reset_index(drop=True)
    s.insert(0, "rank", np.arange(1, len(s) + 1))
    return s


def _key(path):
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def noise_log(data_root):
    """{'folder/file'} of the files a twin's noise.csv says are mislabelled, or None (no log: real data)."""
    root = Path(data_root)
    # the twin root holds noise.csv beside train/; a run may also name the train folder itself
    for cand in (root / NOISE, *([root.parent / NOISE] if (root / "train.csv").is_file() else [])):
        if cand.is_file():
            try:
                log = pd.read_csv(cand, dtype=str)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
                raise FastmaskError(f"{cand}: not a readable noise log ({e})") from None
            missing = {"folder", "file"} - set(log.columns)
            if missing:
                raise FastmaskError(f"{cand}: missing column(s) {', '.join(sorted(missing))}")
            return {f"{a}/{b}" for a, b in zip(log["folder"], log["file"])}
    return None


def precision(ranked, noisy):
    """(precision at N, N, chance) of a ranking against the set of noisy 'folder/file' keys; N counts
    the noisy files among the ranked rows. None when none of them is there."""
    keys = [_key(p) for p in ranked["path"]]
    n = sum(k in noisy for k in keys)
    if n == 0:
        return None
    hits = sum(k in noisy for k in keys[:n])
    return hits / n, n, n / len(keys)


def record(oof, out_path, data_root=None):
    """Write suspects.csv; returns metrics {suspects, suspect_precision, suspect_noisy, suspect_chance}
    (the last three only when a noise log is found)."""
    s = suspects(oof)
    atomic_write(out_path, s.to_csv(index=False))
    m = {"suspects": int(len(s))}
    noisy = noise_log(data_root) if data_root is not None else None
    if noisy is not None:
        got = precision(rank(oof), noisy)
        if got is not None:
            m.update(suspect_precision=float(got[0]), suspect_noisy=int(got[1]), suspect_chance=float(got[2]))
    return m


def line(m):
    if "suspect_precision" not in m:
        return f"suspects: {m['suspects']} images whose OOF prediction disagrees with the label (suspects.csv)"
    return (f"suspects: precision at {m['suspect_noisy']} (the noisy files in noise.csv) "
            f"{m['suspect_precision']:.3f}, chance {m['suspect_chance']:.3f}; {m['suspects']} in suspects.csv")


def rescore(run_dir):
    """Re-rank a k-fold run's oof.csv into suspects.csv and its metrics.json; returns the figures."""
    d = Path(run_dir)
    oof_path = d / OOF
    if not oof_path.is_file():
        raise FastmaskError(f"{oof_path}: file not found (only k-fold runs have one)")
    oof = pd.read_csv(oof_path, dtype={"person": str})
    run = RunFolder(d)
    m = record(oof, d / SUSPECTS, run.config.get("data"))
    if run.metrics:  # a missing or unreadable metrics.json is not replaced by the suspects' figures alone
        write_json(d / METRICS, {**run.metrics, **m})
    return m

"""Several models' probability tables -> one class per image: the soft vote (weighted mean probabilities) or
the hard vote (weighted majority of argmaxes, ties to the soft vote). Numbers in, numbers out: no files."""
import numpy as np

from fastmask.errors import FastmaskError


def soft_vote(tables, weights=None):
    """Weighted mean of probability tables (n, classes)."""
    tables = np.stack([np.asarray(t, dtype=np.float64) for t in tables])
    w = np.ones(len(tables)) if weights is None else np.asarray(weights, dtype=np.float64)
    return np.tensordot(w / w.sum(), tables, axes=1)


def hard_vote(tables, weights=None):
    """Class positions by (weighted) majority of each table's argmax; ties go to the class with the
    higher soft vote."""
    tables = np.stack([np.asarray(t, dtype=np.float64) for t in tables])
    w = np.ones(len(tables)) if weights is None else np.asarray(weights, dtype=np.float64)
    votes = np.zeros(tables.shape[1:])
    rows = np.arange(tables.shape[1])
    for t, wi in zip(tables, w):
        np.add.at(votes, (rows, t.argmax(1)), wi)
    soft = soft_vote(tables, w)
    top = votes == votes.max(1, keepdims=True)
    return np.where(top, soft, -np.inf).argmax(1)


def vote(tables, weights=None, how="soft"):
    """Class positions from several probability tables: "soft" (mean probabilities) or "hard"."""
    if how == "soft":
        return soft_vote(tables, weights).argmax(1)
    if how == "hard":
        return hard_vote(tables, weights)
    raise FastmaskError(f"--vote: {how!r} is not soft or hard")

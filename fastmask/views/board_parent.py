"""Each board row against its parent run: the verdict's delta or why there is none, whether the two figures
can be set side by side at all, and the per-class F1 deltas the page's compare panel draws for a child and its
parent."""
from pathlib import Path

from fastmask.choices import parse_split
from fastmask.report import explain
from fastmask.report.verdict import same_folds
from fastmask.store.folder import VALID_PREDS, finite_number


def _kfold(split):
    try:
        return parse_split(split).n_folds is not None
    except (TypeError, ValueError):
        return False


def not_comparable(r):
    """Why run `r`'s macro F1 cannot be set against its parent run's, or None when it can. The verdict's
    rule (verdict.same_folds): only the same split and split seed validate the same people; a k-fold run's
    out-of-fold F1 against one split's is a difference of two different measurements, not an effect."""
    up = r.get("up")
    if up is None or finite_number(r.get("delta")):
        return None  # no parent run, or the verdict's paired test found common ground (folds or holdout)
    a, b = r["fields"].get("split"), up["fields"].get("split")
    if _kfold(a) != _kfold(b):
        kinds = ("k-fold", "single split") if _kfold(a) else ("single split", "k-fold")
        return f"not comparable: {kinds[0]} vs {kinds[1]} ({a} vs {b})"
    if not same_folds(r["record"], up["record"]):
        return "not comparable: validated on other people (split or split_seed differ)"
    if r["verdict"] == "cannot compare":
        return "not comparable: the runs validated on other images"
    return None


def delta(r):
    """The verdict's delta against the parent (the quantity it judges, on the evidence it pooled), or None
    when there is no verdict: the board shows no figure the card does not."""
    return r["delta"] if finite_number(r.get("delta")) else None


def verdict_word(r):
    """The verdict as its card says it, else why there is none (for a queued job: what it waits for)."""
    if r.get("waits"):
        return r["waits"]
    if r.get("verdict"):
        return r["verdict"]
    if not r["parent"]:
        return "—"
    if not_comparable(r):
        return "not comparable"
    if r["status"] == "finished" or not r.get("up"):
        return "no parent run"
    return ""


_CHARTS = {}  # (both valid_preds files, their mtimes and sizes) -> the chart: --watch redraws bootstrap once
_CHARTS_KEPT = 256


def class_chart(r):
    """Per-class validation F1 of run `r` minus its parent run's (`up`), with person-bootstrap intervals
    (explain.class_deltas on the two runs' predictions paired by image): [{"cls", "name", "child", "parent",
    "delta", "low", "high", "support"}] for the classes with validation images, or None without a parent run,
    when the two did not validate the same people, or when either has no readable valid_preds.csv."""
    up = r.get("up")
    if up is None or r.get("entry") is None or up.get("entry") is None or not_comparable(r):
        return None
    paths = [Path(x["dir"]) / VALID_PREDS for x in (r, up)]
    try:
        key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    except OSError:  # no predictions (a failed or running run): no chart
        return None
    if key not in _CHARTS:
        if len(_CHARTS) >= _CHARTS_KEPT:
            _CHARTS.clear()
        _CHARTS[key] = _class_rows(r["entry"].valid, up["entry"].valid)
    return _CHARTS[key]


def _class_rows(child, parent):
    if child is None or parent is None:
        return None
    try:
        deltas = explain.class_deltas(explain.paired_rows(child, parent))
    except (KeyError, ValueError, TypeError, IndexError):  # a hand-edited or foreign valid_preds.csv
        return None
    return [{"cls": d.cls, "name": d.name, "support": d.support,
             **{k: round(getattr(d, k), 4) for k in ("child", "parent", "delta", "low", "high")}}
            for d in deltas] or None

"""One run folder read back: the one reader every view, the verdict, search and tracking go through.

Each file is read once, when first asked for; a file that is missing or unreadable reads as {} (JSON) or
None (CSV). The session builds the same object in memory for the run it is recording (`known` values are
never read from disk), so the verdict and the card see this run's records before they are written."""
from pathlib import Path

import pandas as pd

from fastmask.store.folder import (
    CONFIG,
    FOLD_SCORES,
    HISTORY,
    HOLDOUT_PREDS,
    METRICS,
    STATUS,
    VALID_PREDS,
    effective_status,
    read_json,
)

_JSON = {"config": CONFIG, "metrics": METRICS, "status_json": STATUS}
_CSV = {"history": HISTORY,      # per epoch (a fold or seed column for several models)
        "valid": VALID_PREDS,    # path, person, label, pred, p0..p17, seed[, fold]
        "holdout": HOLDOUT_PREDS,  # ImageID, label, pred, seed[, person]
        "fold_table": FOLD_SCORES}  # fold, macro_f1: read only when metrics.json has no "folds"
FIELDS = (*_JSON, *_CSV, "minutes")


class RunFolder:
    """A run folder: `dir`, its `config`, `metrics`, `status_json`, `history`, `valid` and `holdout`
    predictions and `minutes`, each read lazily unless given as a keyword."""

    def __init__(self, dir, **known):
        unknown = set(known) - set(FIELDS)
        if unknown:
            raise TypeError(f"RunFolder: unknown field(s) {sorted(unknown)}")
        self.dir = Path(dir)
        self._known = known

    def _get(self, key):
        if key not in self._known:
            self._known[key] = self._read(key)
        return self._known[key]

    def _read(self, key):
        if key in _JSON:
            return read_json(self.dir / _JSON[key], {}) or {}
        if key in _CSV:
            return _csv(self.dir / _CSV[key])
        return self.status_json.get("minutes")

    config = property(lambda self: self._get("config"))
    metrics = property(lambda self: self._get("metrics"))
    status_json = property(lambda self: self._get("status_json"))
    history = property(lambda self: self._get("history"))
    valid = property(lambda self: self._get("valid"))
    holdout = property(lambda self: self._get("holdout"))
    minutes = property(lambda self: self._get("minutes"))
    fold_table = property(lambda self: self._get("fold_table"))

    @property
    def fold_scores(self):
        """Per-fold validation macro F1, or None: metrics.json's `folds` (`fold_scores_in`), else folds.csv's
        `macro_f1` column (ordered by its `fold` column when there is one)."""
        if _listed(self.metrics):
            return fold_scores_in(self.metrics)
        df = self.fold_table
        if df is None or "macro_f1" not in df:
            return None
        if "fold" in df:
            df = df.sort_values("fold")
        return [float(x) for x in df["macro_f1"]]

    @property
    def name(self):
        """The folder's name (`<UTC stamp>-<recipe>`)."""
        return self.dir.name

    @property
    def recipe(self):
        """The recipe's name in config.json, or None."""
        return self.config.get("name")

    @property
    def status(self):
        """The recorded status, or "lost" for a "running" run whose process is gone ("?" when unreadable)."""
        return effective_status(self.status_json)

    def but(self, **changes):
        """The same run with some records replaced (the others shared, read or not)."""
        return RunFolder(self.dir, **{**self._known, **changes})

    # A RunFolder stands where a path to the folder did: Path(run), os.fspath(run), run / "card.md".
    def __fspath__(self):
        return str(self.dir)

    def __truediv__(self, name):
        return self.dir / name

    def __repr__(self):
        return f"RunFolder({str(self.dir)!r})"


def is_run(d):
    """Whether folder `d` is a run folder: one holding config.json or status.json (not mlflow artifacts or
    a stray folder)."""
    return (Path(d) / CONFIG).is_file() or (Path(d) / STATUS).is_file()


def fold_scores_in(metrics):
    """Per-fold validation macro F1 from a metrics dict's `folds` (numbers, or dicts with `macro_f1`), or
    None (no folds, or folds of another shape). Reads no file: a headline from metrics alone uses it."""
    if not _listed(metrics):
        return None
    try:
        return [float(f["macro_f1"] if isinstance(f, dict) else f) for f in metrics["folds"]]
    except (KeyError, TypeError, ValueError):
        return None


def _listed(metrics):
    folds = (metrics or {}).get("folds")
    return isinstance(folds, list) and bool(folds)


def _csv(path):
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, dtype={"person": str, "ImageID": str})
    except (OSError, ValueError):
        return None

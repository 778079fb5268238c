"""One run folder read back: the one reader every view, the verdict, search and tracking go through.

Each file is read once, when first asked for; a file that is missing or unreadable reads as {} (JSON) or
None (CSV). The session builds the same object in memory for the run it is recording (`known` values are
never read from disk), so the verdict and the card see this run's records before they are written."""
from pathlib import Path

import pandas as pd

from fastmask.store.folder import CONFIG, HISTORY, HOLDOUT_PREDS, METRICS, STATUS, VALID_PREDS, effective_status, read_json

_JSON = {"config": CONFIG, "metrics": METRICS, "status_json": STATUS}
_CSV = {"history": HISTORY,      # per epoch (a fold or seed column for several models)
        "valid": VALID_PREDS,    # path, person, label, pred, p0..p17, seed[, fold]
        "holdout": HOLDOUT_PREDS}  # ImageID, label, pred, seed[, person]
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


def _csv(path):
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, dtype={"person": str, "ImageID": str})
    except (OSError, ValueError):
        return None

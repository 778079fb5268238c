"""A run's records as data, read once: what the verdict and the card read of a run (this run's, built in
memory by the session; its parent's, read from its folder)."""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from fastmask.store.folder import CONFIG, HISTORY, HOLDOUT_PREDS, METRICS, STATUS, VALID_PREDS, read_json


@dataclass
class RunRecord:
    dir: Path
    config: dict
    metrics: dict
    history: Optional[pd.DataFrame] = None   # per epoch (a fold or seed column for several models)
    valid: Optional[pd.DataFrame] = None     # valid_preds.csv: path, person, label, pred, p0..p17, seed[, fold]
    holdout: Optional[pd.DataFrame] = None   # holdout_preds.csv: ImageID, label, pred, seed[, person]
    minutes: Optional[float] = None

    @property
    def name(self):
        return self.dir.name


def read_run(run_dir) -> RunRecord:
    """A finished run folder's records; a file that is missing or unreadable reads as None (or {})."""
    d = Path(run_dir)
    return RunRecord(d, read_json(d / CONFIG, {}) or {}, read_json(d / METRICS, {}) or {},
                     _csv(d / HISTORY), _csv(d / VALID_PREDS), _csv(d / HOLDOUT_PREDS),
                     (read_json(d / STATUS, {}) or {}).get("minutes"))


def _csv(path):
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, dtype={"person": str, "ImageID": str})
    except (OSError, ValueError):
        return None

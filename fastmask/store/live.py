"""What a running run has written so far: its history file(s), one row per finished epoch, as fastai's CSVLogger
appends them (a line written whole and flushed as each epoch ends). The board's live figures and the queue's
progress lines read them here, so both take the same file and the same columns.

A single model logs to history.csv; several folds or seeds log to history_<part>.csv each until the run ends,
when history.csv becomes their merge (a fold or seed column): while part files exist, they are what trains.

Light on purpose (the standard library only): the queue polls it every few seconds."""
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fastmask.store.folder import HISTORY

PART_GLOB = "history_*.csv"
GROUPS = ("fold", "seed")  # a merged history's column: not a file being written epoch by epoch
FIGURES = ("macro_f1", "valid_loss")


def history_files(run_dir):
    """[(part, path)] of the history files a run writes epoch by epoch, the one written last at the end: its
    history_<part>.csv files ("fold2", "seed1"), oldest first by modification time, else [(None, history.csv)]
    when there is one, else []."""
    run_dir = Path(run_dir)
    try:
        parts = sorted((p.stat().st_mtime, p.name, p) for p in run_dir.glob(PART_GLOB))
    except OSError:  # one went away while looked at: the next poll sees the next one
        parts = []
    if parts:
        return [(p.stem[len("history_"):], p) for _, _, p in parts]
    path = run_dir / HISTORY
    return [(None, path)] if path.is_file() else []


def epochs(path):
    """The rows of history file `path` (dicts by column name), one per finished epoch; [] when it is missing,
    unreadable, or a merged history (a fold or seed column: its rows are no single model's epochs). A last line
    cut short while written has fewer cells than the header and is left for the next read."""
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if None not in r.values()]
            names = reader.fieldnames or []
    except (OSError, csv.Error):  # csv.Error: a NUL byte, say, in a file cut short by a crash
        return []
    return [] if any(g in names for g in GROUPS) else rows


def number(row, key):
    """Column `key` of a history row as a finite float, or None (missing, empty, text, NaN)."""
    try:
        v = float(row.get(key))
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass
class Live:
    """How far a running run got: the model training now (None for a single model, "fold2" or "seed1" for one
    of several), the epochs it finished, and its last finished epoch's validation macro F1 and loss."""
    part: Optional[str]
    done: int
    macro_f1: Optional[float] = None
    valid_loss: Optional[float] = None


def latest(run_dir):
    """Live figures of the history file written last, or None when the run has written none yet."""
    files = history_files(run_dir)
    if not files:
        return None
    part, path = files[-1]
    rows = epochs(path)
    last = rows[-1] if rows else {}
    return Live(part, len(rows), *(number(last, k) for k in FIGURES))

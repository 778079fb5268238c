"""The figures a run is shown by, in one table: the card's result table and `fastmask compare` (and the board's
compare panel) read the same names, labels and formats from here, so the two cannot drift apart."""
from dataclasses import dataclass

from fastmask.labels import TASKS


@dataclass(frozen=True)
class Figure:
    key: str                 # its key in the flattened metrics (`values`)
    label: str
    spec: str = ".3f"        # format spec; "d" for counts
    better: bool = True      # a higher value is better (a count of epochs or minutes is neither)
    compared: bool = True    # `fastmask compare` shows it (minutes and the kept epoch are the card's only)


FIGURES = (Figure("macro_f1", "validation macro F1"), Figure("accuracy", "validation accuracy"),
           *(Figure(f"{t}_f1", f"validation {t} F1") for t in TASKS),
           Figure("cv_mean", "k-fold mean macro F1"),
           Figure("holdout_macro_f1", "holdout macro F1"), Figure("holdout_accuracy", "holdout accuracy"),
           *(Figure(f"holdout_{t}_f1", f"holdout {t} F1") for t in TASKS),
           Figure("epochs_run", "epochs run", "d", better=False),
           Figure("kept_epoch", "kept epoch (the latest not credibly below the best validation macro F1; counted from 1)",
                  "d", better=False, compared=False),
           Figure("minutes", "minutes", ".1f", better=False, compared=False))
BY_KEY = {f.key: f for f in FIGURES}
COMPARED = tuple(f for f in FIGURES if f.compared)


def values(metrics, figures=FIGURES):
    """{key: value or None} of `figures` as metrics.json holds them; per-task holdout F1 sit under its
    holdout_task_f1. The k-fold mean and the minutes are the caller's to fill in (each view has its rule)."""
    out = {f.key: metrics.get(f.key) for f in figures}
    for t in TASKS:
        if f"holdout_{t}_f1" in out:
            out[f"holdout_{t}_f1"] = (metrics.get("holdout_task_f1") or {}).get(t)
    return out

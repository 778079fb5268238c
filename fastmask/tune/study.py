"""The optuna side of a search: the storage every worker shares, the pruner, and the loop one worker runs until
the study holds its trials (counted over every worker), each trial failing alone on bad input."""
import random
import re
import sys
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from fastmask.errors import FastmaskError, one_line
from fastmask.tune.space import changes_text

MONITOR = "macro_f1"
METRIC_NAME = f"valid {MONITOR}"  # the study's objective, as optuna-dashboard labels it
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # what `trials` counts
MAX_FAILS = 3  # this many failed trials in a row stop a worker


def open_storage(url, runs_dir):
    """An optuna storage and its label (no password: it goes into run folders and recipe docstrings).
    None -> RUNS/search.db; a URL -> RDBStorage; a .db/.sqlite file -> sqlite; another file -> journal."""
    if url is None or "://" not in url and Path(url).suffix in (".db", ".sqlite", ".sqlite3"):
        path = Path(url or Path(runs_dir) / "search.db")
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path.resolve()}"
    label = re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)
    try:
        if "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(url)), label
        kw = {"engine_kwargs": {"connect_args": {"timeout": 60}}} if url.startswith("sqlite") else {}
        for attempt in range(6):  # workers started together race to create the tables: the losers retry
            try:  # a killed worker's trial turns FAIL after 3 minutes without a heartbeat: it stops counting
                with warnings.catch_warnings(action="ignore", category=optuna.exceptions.ExperimentalWarning):
                    return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180, **kw), label
            except Exception:  # noqa: BLE001
                if attempt == 5:
                    raise
                time.sleep(random.uniform(0.2, 0.5) * (attempt + 1))
    except Exception as e:  # noqa: BLE001  (bad URL, missing driver, unreachable server)
        raise FastmaskError(f"--storage {label}: {one_line(e)}") from None


def make_pruner(name, epochs=None):
    if not isinstance(name, str):
        return name
    if name not in ("median", "hyperband", "none"):
        raise FastmaskError(f"--pruner {name}: expected median, hyperband or none")
    return {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),  # 1st epoch: noise
            "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs or "auto"),
            "none": optuna.pruners.NopPruner}[name]()


def drive(study, objective, n_trials):
    """Run `objective` trials until `study` holds `n_trials` counted ones over every worker on its storage;
    returns how many this worker ran. Two workers may both see room for the last trial: the one with N
    counted trials ahead of its own marks it FAIL (user attr surplus) and stops. A FastmaskError fails
    one trial (user attr error); MAX_FAILS in a row stop the worker."""
    def counted(below=float("inf")):
        return sum(t.number < below for t in study.get_trials(deepcopy=False, states=COUNTED))
    ran, fails = [], []

    def guarded(trial):
        if counted(trial.number) >= n_trials:
            trial.set_user_attr("surplus", True)
            study.stop()
            raise FastmaskError(f"the study already holds {n_trials} trials")
        ran.append(trial.number)
        try:
            return objective(trial)
        except FastmaskError as e:
            trial.set_user_attr("error", str(e)[:500])
            raise

    def after(study_, t):
        if t.user_attrs.get("surplus"):
            return
        if t.state != TrialState.FAIL:
            fails.clear()
            value = "-" if t.value is None else f"{t.value:.3f}"
            return print(f"search: trial {t.number} {t.state.name.lower()}: {MONITOR} {value} "
                         f"({changes_text(t.params)}) {t.user_attrs.get('run', '')}")
        fails.append(t.user_attrs.get("error"))
        print(f"fastmask: warning: trial {t.number} failed: {fails[-1]}", file=sys.stderr)
        if len(fails) >= MAX_FAILS:
            study_.stop()

    if counted() < n_trials:
        study.optimize(guarded, catch=(FastmaskError,), gc_after_trial=False,
                       callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=COUNTED), after])
    if len(fails) >= MAX_FAILS:
        raise FastmaskError(f"{len(fails)} trials in a row failed; the last: {fails[-1]}")
    return len(ran)

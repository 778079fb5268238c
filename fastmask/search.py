"""python -m fastmask.search RECIPE.py --trials N [--storage URL] [--study NAME] [--data DIR] [--runs DIR] [--set k=v ...]

Searches the recipe's search space with optuna; every trial is a recorded run, the best becomes a recipe.

The space lives in the recipe file, beside `recipe`, as {field: spec}:

    search = {"lr": ("log", 1e-4, 1e-2),            # float on a log scale (int bounds: an int)
              "wd": ("float", 0.0, 0.1),            # ("float", low, high[, step])
              "epochs": ("int", 4, 12, 2),          # ("int", low, high[, step])
              "cutmix": [None, "box", "halves"],    # a list: categorical; any value the field takes,
              "size": ["64,48", (128, 96)]}         #   text as --set writes it, or an object
              # or any optuna distribution: "lr": FloatDistribution(1e-4, 1e-2, log=True)

Each trial is `recipe.but(**values)`, trained and recorded by `run.train_and_record` into a normal run
folder named `<recipe>-trial<N>` whose card states the trial's values as the change against the searched
recipe. optuna-integration's fastai pruning callback reports validation macro F1 every epoch; a pruned
trial stops like early stopping and keeps a full run folder marked "pruned". The objective is the
validation macro F1 of the run's best epoch (pooled out of fold for k-fold recipes); holdout figures
are recorded but never searched on.

Before the trials the searched recipe itself is trained once (unless a finished run of it on the same
data already exists, or --no-baseline), so every trial's card has a verdict against it. After them the
best trial is written as a recipe whose parent is the searched one (default: `<study>_best.py` beside the
searched recipe; the runs folder when that folder is not writable).

`--trials N` is the study's total of complete, pruned and running trials, shared by every worker that
opens the same study: start the same command on several machines (or one per GPU) against one
`--storage` and they split the N trials; run it again with a larger N to extend a study. The default
storage is `RUNS/search.db` (sqlite); `--storage` takes any SQLAlchemy URL (postgresql://...,
mysql://...), a `.db` file, or any other file name for optuna's JournalStorage (a file on a shared disk).
"""
import argparse
import ast
import contextlib
import math
import os
import shlex
import socket
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .errors import FastmaskError  # noqa: E402

MONITOR = "macro_f1"
KINDS = ("log", "float", "int")
SPEC_HELP = ('use [choices], ("log", low, high), ("float", low, high[, step]), ("int", low, high[, step]) '
             "or an optuna distribution")
MAX_FAILS = 3  # this many failed trials in a row stop a worker


# --- the search space -----------------------------------------------------------------------------

@dataclass
class Dim:
    """One searched recipe field: a numeric range or a list of choices (recipe values)."""
    field: str
    kind: str                       # "choice", "float" or "int"
    low: Any = None
    high: Any = None
    step: Any = None
    log: bool = False
    choices: list = dataclass_field(default_factory=list)

    def labels(self):
        """What optuna stores for each choice: the value itself when optuna can store it, else its --set text."""
        if all(_storable(c) for c in self.choices):
            return list(self.choices)
        return [c if _storable(c) else (set_text(c) or f"#{i} {type(c).__name__}") for i, c in enumerate(self.choices)]

    def suggest(self, trial):
        """This field's value for `trial`. Floats keep 4 significant digits, so a trial, its run and the
        best recipe all hold the same number."""
        if self.kind == "choice":
            labels = self.labels()
            return self.choices[labels.index(trial.suggest_categorical(self.field, labels))]
        if self.kind == "int":
            return trial.suggest_int(self.field, self.low, self.high, step=self.step or 1, log=self.log)
        return self.snap(trial.suggest_float(self.field, self.low, self.high, step=self.step, log=self.log))

    def snap(self, v):
        """A float as trials train it: 4 significant digits, kept inside the range."""
        return v if self.step else min(max(float(f"{v:.4g}"), self.low), self.high)

    def value_of(self, param):
        """The recipe value a stored trial parameter stands for, checked against this space and the
        recipe field; FastmaskError when it is neither, since a shared storage is anyone's to write."""
        from .recipe import coerce
        if self.kind == "choice":
            i = next((i for i, x in enumerate(self.labels()) if type(x) is type(param) and x == param), None)
            if i is None:
                raise FastmaskError(f"{self.field}={param!r} is not one of the searched choices")
            return self.choices[i]
        ok = (isinstance(param, int) if self.kind == "int" else _number(param)) and not isinstance(param, bool)
        if not (ok and self.low <= param <= self.high):
            raise FastmaskError(f"{self.field}={param!r} is outside the searched {self.kind} range "
                                f"[{self.low}, {self.high}]")
        if self.kind == "int" and self.step and (param - self.low) % self.step:
            raise FastmaskError(f"{self.field}={param!r} is off the searched step {self.step}")
        return coerce(self.field, param if self.kind == "int" else self.snap(float(param)))

    def source(self, value):
        """`value` as Python source for a recipe file: a literal, or `space[field][i]` for an object."""
        if _literal(value):
            return repr(value)
        return f"space[{self.field!r}][{next(i for i, c in enumerate(self.choices) if c is value)}]"

    def describe(self):
        if self.kind == "choice":
            return f"{self.field} in {[set_text(c) or type(c).__name__ for c in self.choices]}"
        return f"{self.field} {self.kind}{' log' if self.log else ''} [{self.low}, {self.high}]"


def parse_space(space, where="recipe"):
    """The `search` spec of a recipe as a list of Dim; bad input raises FastmaskError naming `where` and the field."""
    if not space:
        raise FastmaskError(f"{where}: no search space; add e.g. `search = {{\"lr\": (\"log\", 1e-4, 1e-2), "
                            f"\"cutmix\": [None, \"halves\"]}}` beside `recipe`")
    if not isinstance(space, dict):
        raise FastmaskError(f"{where}: search must be a dict {{field: spec}}, not {type(space).__name__}")
    try:
        return [_dim(str(k), spec) for k, spec in space.items()]
    except FastmaskError as e:
        raise FastmaskError(f"{where}: search space: {e}") from None


def _dim(name, spec):
    from .recipe import check_name, coerce
    check_name(name)
    dist = _from_optuna(name, spec)
    if dist is not None:
        spec = dist
    if isinstance(spec, list):
        if not spec:
            raise FastmaskError(f"{name}: an empty list of choices")
        choices = [coerce(name, c) for c in spec]
        d = Dim(name, "choice", choices=choices)
        labels = d.labels()
        if len({repr(x) for x in labels}) < len(labels):
            raise FastmaskError(f"{name}: {spec!r} repeats a choice")
        return d
    bad = FastmaskError(f"{name}: {spec!r} is not a search spec; {SPEC_HELP}")
    if not (isinstance(spec, tuple) and len(spec) in (3, 4) and spec[0] in KINDS):
        raise bad
    kind, low, high, step = (*spec, None)[:4]
    if not all(_number(x) for x in (low, high)) or (step is not None and not _number(step)):
        raise bad
    if not low < high:
        raise FastmaskError(f"{name}: {spec!r}: low must be below high")
    if kind == "log" and (low <= 0 or step is not None):
        raise FastmaskError(f"{name}: {spec!r}: a log range needs 0 < low and no step")
    if step is not None and step <= 0:
        raise FastmaskError(f"{name}: {spec!r}: step must be positive")
    is_int = kind == "int" or (kind == "log" and isinstance(low, int) and isinstance(high, int))
    if kind == "int" and not all(isinstance(x, int) for x in (low, high, step or 1)):
        raise FastmaskError(f"{name}: {spec!r}: an int range needs int bounds and step")
    for x in (low, high):
        coerce(name, x)  # the field takes numbers of this kind ("recipe field epochs: 0.5 is not a valid int")
    if is_int:
        return Dim(name, "int", int(low), int(high), step, log=kind == "log")
    return Dim(name, "float", float(low), float(high), step, log=kind == "log")


def _from_optuna(name, spec):
    """An optuna distribution as the equivalent tuple/list spec (None for anything else)."""
    if type(spec).__module__.split(".")[0] != "optuna":
        return None
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    if isinstance(spec, CategoricalDistribution):
        return list(spec.choices)
    if isinstance(spec, FloatDistribution):
        return ("log" if spec.log else "float", spec.low, spec.high) + ((spec.step,) if spec.step is not None else ())
    if isinstance(spec, IntDistribution):
        return ("log" if spec.log else "int", spec.low, spec.high) + ((spec.step,) if spec.step != 1 else ())
    raise FastmaskError(f"{name}: {spec!r} is not a search spec; {SPEC_HELP}")


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _storable(v):
    return v is None or isinstance(v, (bool, int, float, str))


def _literal(v):
    try:
        return ast.literal_eval(repr(v)) == v
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def set_text(v):
    """`v` as `--set` text (None when --set cannot say it, e.g. an A.Compose)."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (tuple, list)) and all(_number(x) for x in v):
        return ",".join(repr(x) for x in v)
    if isinstance(v, dict) and all(_number(x) for x in v.values()):
        return ",".join(f"{k}:{w}" for k, w in v.items())
    return None


# --- recipe files ---------------------------------------------------------------------------------

def module_of(recipe_file):
    """How a recipe file imports `recipe_file` (load_recipe's naming): recipes.<stem> inside recipes/, else <stem>."""
    p = Path(recipe_file)
    return f"recipes.{p.stem}" if p.parent.name == "recipes" else p.stem


def recipe_text(base, sources, doc):
    """A child recipe file of `base`: the docstring, the parent import, `recipe = parent.but(...)`.
    `sources` must be source text this package made from checked values (Dim.source), never stored text."""
    # the docstring may quote a study name from a shared storage: nothing in it may end the string
    doc = "".join(c if c.isprintable() or c == "\n" else " " for c in doc)
    doc = "\n".join(textwrap.fill(par, 100) for par in doc.replace("\\", "/").replace('"""', "'''").split("\n"))
    space = any(s.startswith("space[") for s in sources.values())
    imp = f"from {module_of(base.file)} import recipe as parent" + (", search as space" if space else "")
    args = ", ".join(f"{k}={s}" for k, s in sources.items())
    return f'"""{doc}"""\n{imp}\n\nrecipe = parent.but({args})\n'


def changes_text(sources):
    return ", ".join(f"{k}={s}" for k, s in sources.items())


def trial_recipe(base, values, number, file):
    """The recipe a trial trains: `base.but(**values)`, named <base>-trial<N>, recorded from `file`."""
    r = base.but(**values)
    r.name, r.file = f"{base.name}-trial{number}", str(file)
    return r


# --- optuna ---------------------------------------------------------------------------------------

def _optuna():
    try:
        import optuna
        import optuna_integration  # noqa: F401
    except ImportError as e:
        raise FastmaskError(f"searching needs optuna and optuna-integration ({e.name} is missing); "
                            "pip install 'fastmask[search]'") from None
    return optuna


_PRUNE = None


def pruning_callback(trial, on_epoch=None):
    """optuna-integration's FastAIPruningCallback on validation macro F1, adapted for recorded runs."""
    global _PRUNE
    if _PRUNE is None:
        from fastai.callback.core import CancelFitException
        from fastai.callback.tracker import SaveModelCallback, TrackerCallback
        from optuna_integration import FastAIPruningCallback

        class PruneOnMacroF1(FastAIPruningCallback):
            """FastAIPruningCallback with two changes. A pruned trial stops fit like early stopping
            (CancelFitException, so SaveModelCallback restores the best epoch and the run is recorded,
            marked "pruned" through `run_status`) instead of raising TrialPruned out of fit, which would
            lose the run; the objective raises TrialPruned once the run is recorded. And steps count
            epochs across fits, so each fold of a k-fold recipe reports its own steps. It runs after
            SaveModelCallback (order 61), so a pruned epoch that was the best so far is saved first."""
            order = SaveModelCallback.order + 1

            def __init__(self, trial, monitor=MONITOR, on_epoch=None):
                super().__init__(trial, monitor=monitor)
                self.on_epoch, self.steps, self.run_status, self.pruned_at = on_epoch, 0, None, None

            def after_epoch(self):
                TrackerCallback.after_epoch(self)
                step, self.steps = self.steps, self.steps + 1
                self.trial.report(float(self.recorder.final_record[self.idx]), step=step)
                if self.on_epoch is not None:
                    self.on_epoch()
                if self.trial.should_prune():
                    self.run_status, self.pruned_at = "pruned", step
                    raise CancelFitException()

            def after_fit(self):
                TrackerCallback.after_fit(self)

        _PRUNE = PruneOnMacroF1
    return _PRUNE(trial, on_epoch=on_epoch)


def open_storage(url, runs_dir):
    """An optuna storage: None -> RUNS/search.db; a URL -> RDBStorage; a .db/.sqlite file -> sqlite;
    any other file -> JournalStorage. Returns (storage, label without password)."""
    optuna = _optuna()
    if url is None:
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(Path(runs_dir) / 'search.db').resolve()}"
    elif "://" not in url and Path(url).suffix in (".db", ".sqlite", ".sqlite3"):
        url = f"sqlite:///{Path(url).resolve()}"
    label = redact(url)
    try:
        if "://" not in url:
            from optuna.storages.journal import JournalFileBackend, JournalStorage
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(url))), f"journal file {label}"
        import random
        import time
        import warnings

        from sqlalchemy.exc import SQLAlchemyError
        kw = {"engine_kwargs": {"connect_args": {"timeout": 60}}} if url.startswith("sqlite") else {}
        for attempt in range(6):  # workers started together race to create the tables: the losers retry
            try:
                with warnings.catch_warnings():  # heartbeats are "experimental" in optuna
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    # a killed worker's trial turns FAIL after 3 minutes without a heartbeat, so it stops counting
                    return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180, **kw), label
            except SQLAlchemyError:
                if attempt == 5:
                    raise
                time.sleep(random.uniform(0.2, 0.5) * (attempt + 1))
    except FastmaskError:
        raise
    except Exception as e:  # noqa: BLE001  (bad URL, missing driver, unreachable server)
        first = (str(e).strip().splitlines() or [""])[0]
        raise FastmaskError(f"--storage {label}: {type(e).__name__}: {first}") from None


def redact(url):
    """A storage URL without its password (it goes into run folders and recipe docstrings)."""
    import re
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def make_pruner(name, epochs=None):
    optuna = _optuna()
    if name == "median":  # the first epoch of fit_one_cycle is too noisy to judge
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs or "auto")
    if name == "none":
        return optuna.pruners.NopPruner()
    raise FastmaskError(f"--pruner {name}: expected median, hyperband or none")


def counted_states():
    from optuna.trial import TrialState
    return (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


class Surplus(Exception):
    """A trial asked for after the study already held its N trials (two workers asked at once)."""


def drive(study, objective, n_trials, callbacks=(), catch=(FastmaskError,)):
    """Run `objective` trials in `study` until it holds `n_trials` complete, pruned or running ones, counted
    over every worker sharing its storage. Returns how many trials this worker ran. A worker that lost a race
    for the last trial (its trial number is beyond the first N) marks that trial FAIL (user attr surplus)
    and stops; `catch`-ed errors fail one trial and go on, MAX_FAILS in a row stop the worker."""
    optuna = _optuna()
    states = counted_states()
    if len(study.get_trials(deepcopy=False, states=states)) >= n_trials:
        return 0
    ran, fails, last = [0], [0], [None]

    def guarded(trial):
        ahead = [t for t in study.get_trials(deepcopy=False, states=states) if t.number < trial.number]
        if len(ahead) >= n_trials:
            trial.set_user_attr("surplus", True)
            study.stop()
            raise Surplus(f"the study already holds {n_trials} trials")
        ran[0] += 1
        try:
            return objective(trial)
        except catch as e:
            trial.set_user_attr("error", str(e)[:500])
            raise

    def guard(study_, frozen):
        if frozen.state == optuna.trial.TrialState.FAIL and not frozen.user_attrs.get("surplus"):
            fails[0] += 1
            last[0] = frozen.user_attrs.get("error") or frozen.system_attrs.get("fail_reason")
            print(f"fastmask: warning: trial {frozen.number} failed: {last[0]}", file=sys.stderr)
            if fails[0] >= MAX_FAILS:
                study_.stop()
        elif frozen.state != optuna.trial.TrialState.FAIL:
            fails[0] = 0

    study.optimize(guarded, catch=(Surplus, *catch), gc_after_trial=False,
                   callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=states), guard, *callbacks])
    if fails[0] >= MAX_FAILS:
        raise FastmaskError(f"{fails[0]} trials in a row failed; the last: {last[0]}")
    return ran[0]


# --- progress -------------------------------------------------------------------------------------

def best_trial(study):
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def table(study, dims, parent_value=None, limit=20):
    """A rich Table of the study's trials (the last `limit`), the best starred."""
    from optuna.trial import TrialState
    from rich.table import Table
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    best = best_trial(study)
    n = {s: sum(t.state == s for t in trials) for s in TrialState}
    caption = (f"{n[TrialState.COMPLETE]} complete, {n[TrialState.PRUNED]} pruned, {n[TrialState.FAIL]} failed, "
               f"{n[TrialState.RUNNING]} running")
    if best is not None:
        caption += f"; best #{best.number}: {best.value:.3f}"
    if parent_value is not None:
        caption += f"; the searched recipe itself: {parent_value:.3f}"
    t = Table(title=f"search study {study.study_name}  (validation {MONITOR})", caption=caption)
    for c in ("#", "state", MONITOR, *[d.field for d in dims], "epochs", "run"):
        t.add_column(c, justify="right" if c in ("#", MONITOR, "epochs") else "left")
    style = {TrialState.COMPLETE: "green", TrialState.PRUNED: "yellow", TrialState.FAIL: "red",
             TrialState.RUNNING: "cyan"}
    for tr in trials[-limit:]:
        iv = tr.intermediate_values
        value = tr.value if tr.state == TrialState.COMPLETE else (iv[max(iv)] if iv else None)
        shown = tr.user_attrs.get("shown") or {}
        params = [shown.get(d.field, _short(tr.params.get(d.field, ""))) for d in dims]
        star = "★ " if best is not None and tr.number == best.number else ""
        t.add_row(f"{star}{tr.number}", f"[{style.get(tr.state, '')}]{tr.state.name.lower()}[/]",
                  "" if value is None else f"{value:.3f}", *params, str(len(iv)),
                  Path(tr.user_attrs.get("run", "")).name.split("-", 1)[0])
    return t


def _short(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@contextlib.contextmanager
def live_table(render, enabled=True):
    """A rich Live display of `render()` (refresh() redraws it); prints go above it. Off: refresh is a no-op."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.live import Live
    with Live(render(), console=Console(), auto_refresh=False, redirect_stdout=True, redirect_stderr=True) as live:
        def refresh():
            live.update(render(), refresh=True)
        yield refresh


def quiet():
    """A callback silencing the Recorder's per-epoch print (fastai prints raw lists without a progress bar)."""
    from fastai.callback.core import Callback

    class Quiet(Callback):
        order = -20  # before the Recorder prints the metric names

        def before_fit(self):
            self.saved, self.learn.logger = self.learn.logger, lambda *a, **k: None

        def after_fit(self):
            self.learn.logger = self.saved

    return Quiet()


@contextlib.contextmanager
def no_progress_bars():
    """fastai's per-batch progress bars off while the table shows progress (restored after)."""
    from fastai.callback.progress import ProgressCallback
    from fastai.learner import defaults
    saved = defaults.callbacks
    defaults.callbacks = [c for c in saved if c is not ProgressCallback]
    try:
        yield
    finally:
        defaults.callbacks = saved


# --- the search -----------------------------------------------------------------------------------

@dataclass
class Result:
    study: Any
    best: Optional[Path]            # the best recipe file written (None without a complete trial)
    parent_run: Optional[Path]      # the searched recipe's own run
    ran: int = 0                    # trials this worker ran


def baseline(base, data, runs_dir, overrides, train=True):
    """The searched recipe's own newest finished run on the same data and fields; trained when missing."""
    from .data import fingerprint
    from .record import finished_runs, read_json
    from .run import train_and_record
    fields = base.config()["fields"]
    for d in finished_runs(runs_dir, name=base.name, fingerprint=fingerprint(data.train)):
        if read_json(d / "config.json", {}).get("fields") == fields:
            return d
    if not train:
        return None
    print(f"search: training {base.name} itself first, so every trial's card has a verdict against it")
    return train_and_record(base, data, runs_dir, overrides=overrides)


def search(recipe_file, trials, *, sets=(), data=None, runs_dir="runs", storage=None, study_name=None,
           pruner="median", sampler=None, seed=None, best_path=None, train_baseline=True, skip_bad=False,
           progress=None):
    """Search `recipe_file`'s space for `trials` trials (the study's total); see the module docstring.

    `sets`: "key=value" overrides as with --set; `pruner`: "median", "hyperband", "none" or an optuna
    pruner; `sampler`: an optuna sampler (default TPE, seeded with `seed`); `progress`: the live table
    (default: when stdout is a terminal). Returns a Result."""
    from .distributed import is_distributed
    from .recipe import load_recipe, parse_sets

    if is_distributed():
        raise FastmaskError("search trains each trial in one process: start one worker per GPU "
                            "(CUDA_VISIBLE_DEVICES=i python -m fastmask.search ...) against one --storage")
    if not isinstance(trials, int) or trials < 1:
        raise FastmaskError(f"--trials {trials}: expected a whole number >= 1")
    overrides = parse_sets(list(sets))
    base = load_recipe(recipe_file, overrides)
    dims = parse_space(base.search, where=str(recipe_file))
    both = sorted(set(overrides) & {d.field for d in dims})
    if both:
        raise FastmaskError(f"--set {both[0]}: the field is searched by {recipe_file}; drop one of the two")
    optuna = _optuna()
    from .kfold import n_folds
    from .model import check_arch
    from .train import load_data
    for arch in {base.arch, *[c for d in dims if d.field == "arch" for c in d.choices]}:
        check_arch(arch)
    n_folds(base)
    if data is not None and not Path(data).exists():
        raise FastmaskError(f"--data {data}: no such folder")
    study_name = study_name or base.name
    store, label = open_storage(storage, runs_dir)
    if isinstance(pruner, str):
        pruner = make_pruner(pruner, base.epochs * (n_folds(base) or 1))
    try:
        sampler = sampler or optuna.samplers.TPESampler(seed=seed, constant_liar=True)  # liar: workers spread out
        study = optuna.create_study(storage=store, study_name=study_name, direction="maximize", load_if_exists=True,
                                    sampler=sampler, pruner=pruner)
    except ValueError as e:  # an existing study of that name that minimizes, or has several objectives
        raise FastmaskError(f"--study {study_name} on {label}: {e}") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the table and our own lines say what happened
    print(f"search: study {study_name} on {label}: {len(dims)} fields ({'; '.join(d.describe() for d in dims)}), "
          f"{trials} trials in all")
    data_obj = load_data(data, skip_bad=skip_bad)
    parent_run = baseline(base, data_obj, runs_dir, overrides, train=train_baseline)
    parent_value = _metric(parent_run)
    reproduce = _command("fastmask.run", recipe_file, sets, data, runs_dir)
    searched = _command("fastmask.search", recipe_file, sets, data, runs_dir,
                        extra=["--trials", str(trials), "--study", study_name, *(["--storage", redact(storage)] if storage else [])])
    progress = sys.stdout.isatty() if progress is None else progress
    refresh = [lambda: None]
    objective = make_objective(base, dims, data_obj, runs_dir, overrides, sets, reproduce, searched, label,
                               lambda: refresh[0]())
    best_args = (study, base, dims, best_path, runs_dir, parent_run, parent_value, searched, sets)
    try:
        with no_progress_bars(), live_table(lambda: table(study, dims, parent_value), progress) as r:
            refresh[0] = r
            ran = drive(study, objective, trials, callbacks=[lambda s, t: refresh[0]()])
    except BaseException:  # Ctrl-C, or too many failed trials: the best so far is still written
        with contextlib.suppress(Exception):
            write_best(*best_args)
        raise
    best = write_best(*best_args)
    if not progress:
        from rich.console import Console
        Console().print(table(study, dims, parent_value))
    return Result(study, best, parent_run, ran)


def make_objective(base, dims, data, runs_dir, overrides, sets, reproduce, searched, label, refresh):
    """The optuna objective: one recorded run per trial; its validation macro F1, or TrialPruned."""
    import optuna

    from .record import environment, read_json
    from .recipe import _plain
    from .run import train_and_record

    def objective(trial):
        values = {d.field: d.suggest(trial) for d in dims}
        # the recipe file's change: the values that differ from the searched recipe's own
        sources = changed_sources(base, dims, values)
        trial.set_user_attr("shown", {k: _short(v) if _storable(v) else (set_text(v) or type(v).__name__)
                                      for k, v in values.items()})
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        name = trial.study.study_name
        doc = (f"Trial {trial.number} of search study '{name}': {changes_text(sources) or 'no change'} "
               f"{'raise' if sources else 'repeats'} validation macro F1 over {base.name}.")
        sets_here = [f"{k}={t}" for k, v in values.items() if (t := set_text(v)) is not None]
        info = {"search": {"study": name, "trial": trial.number, "storage": label,
                           "params": {k: _plain(v) for k, v in values.items()}, "command": searched},
                "environment": {**environment(),  # the command that retrains this trial's fields
                                "command": reproduce + "".join(f" --set {shlex.quote(s)}" for s in sets_here)}}
        cb = pruning_callback(trial, on_epoch=refresh)
        with tempfile.TemporaryDirectory(prefix="fastmask-trial-") as tmp:
            f = Path(tmp) / "recipe.py"
            f.write_text(recipe_text(base, sources, doc))
            r = trial_recipe(base, values, trial.number, f)
            r.hypothesis = doc
            refresh()
            try:
                d = train_and_record(r, data, runs_dir, overrides=overrides, cbs=[cb, quiet()], info=info)
            except BaseException:
                found = _run_of(runs_dir, name, trial.number)
                if found:
                    trial.set_user_attr("run", str(found))
                raise
        trial.set_user_attr("run", str(d))
        m = read_json(d / "metrics.json", {}) or {}
        if isinstance(m.get("holdout_macro_f1"), (int, float)):
            trial.set_user_attr("holdout_macro_f1", m["holdout_macro_f1"])
        if cb.run_status == "pruned":
            raise optuna.TrialPruned(f"pruned after epoch {cb.pruned_at + 1}")
        return float(m[MONITOR])

    return objective


def _run_of(runs_dir, study_name, number):
    """The run folder of trial `number` of `study_name` (for trials that raised), or None."""
    from .record import read_json
    for d in sorted(Path(runs_dir).glob("*/"), reverse=True):
        s = (read_json(d / "config.json", {}) or {}).get("search") or {}
        if s.get("study") == study_name and s.get("trial") == number:
            return d
    return None


def _metric(run_dir):
    from .record import read_json
    v = (read_json(Path(run_dir) / "metrics.json", {}) or {}).get(MONITOR) if run_dir else None
    return float(v) if isinstance(v, (int, float)) else None


def _command(module, recipe_file, sets, data, runs_dir, extra=()):
    parts = [Path(sys.executable).name, "-m", module, str(recipe_file), *extra]
    for s in sets:
        parts += ["--set", s]
    if data is not None:
        parts += ["--data", str(data)]
    if str(runs_dir) != "runs":
        parts += ["--runs", str(runs_dir)]
    return " ".join(shlex.quote(p) for p in parts)


def checked_best(study, dims):
    """The best complete trial whose parameters are values of the searched space, and those values as
    {field: recipe value}; (None, None) without one. A trial whose parameters are not (a changed space,
    or someone writing to a shared storage) is passed over with one warning line."""
    from optuna.trial import TrialState
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if isinstance(t.value, (int, float)) and math.isfinite(t.value)]
    for t in sorted(done, key=lambda t: (-t.value, t.number)):
        try:
            return t, {d.field: d.value_of(t.params[d.field]) for d in dims if d.field in t.params}
        except FastmaskError as e:
            print(f"fastmask: warning: search: trial {t.number} is not a point of the searched space "
                  f"({e}); the best recipe passes it over", file=sys.stderr)
    return None, None


def changed_sources(base, dims, values):
    """{field: source text} for the values that differ from `base`'s own, made here from typed values."""
    from .recipe import _plain
    return {d.field: d.source(values[d.field]) for d in dims
            if d.field in values and _plain(values[d.field]) != _plain(getattr(base, d.field))}


def write_best(study, base, dims, path, runs_dir, parent_run, parent_value, searched, sets):
    """The best complete trial as a recipe file whose parent is `base`; returns its path (None without one).

    Default path: `<study>_best.py` beside the searched recipe, or in the runs folder when that folder is
    not writable (copy it into recipes/ to run it from there)."""
    from optuna.trial import TrialState

    from .record import atomic_write
    best, values = checked_best(study, dims)
    if best is None:
        print("search: no complete trial of the searched space yet, so no best recipe")
        return None
    sources = changed_sources(base, dims, values)
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    n_done = sum(t.state == TrialState.COMPLETE for t in trials)
    n_pruned = sum(t.state == TrialState.PRUNED for t in trials)
    against = (f" against {parent_value:.3f} for {base.name} itself (run {Path(parent_run).name})"
               if parent_value is not None else "")
    claim = (f"{changes_text(sources)} raise" if sources else f"Nothing searched beats {base.name}'s own values: "
             f"they score best") + f" validation macro F1 over {base.name}"
    doc = (f"{claim}: the best of {len(trials)} trials "
           f"({n_done} complete, {n_pruned} pruned) of search study '{study.study_name}', trial {best.number} "
           f"scoring {best.value:.3f}{against}."
           f"\n\nSearched with: {searched}"
           + (f"\nRun it with the search's settings: python -m fastmask.run RECIPE.py "
              + " ".join(f"--set {shlex.quote(s)}" for s in sets) if sets else "")
           + "\nValidation picked these values, so the verdict against the parent on the same split is "
             "optimistic: judge it on holdout macro F1 or another seed.")
    ident = "".join(c if c.isalnum() or c == "_" else "_" for c in study.study_name)
    path = Path(path) if path else Path(base.file).parent / f"{ident}_best.py"
    if base.file and path.resolve() == Path(base.file).resolve():
        raise FastmaskError(f"--best {path}: that is the searched recipe itself")
    try:
        atomic_write(path, recipe_text(base, sources, doc.replace("RECIPE.py", str(path))))
    except OSError as e:
        fallback = Path(runs_dir) / path.name
        print(f"search: {path.parent} is not writable ({e.strerror}); the best recipe goes to {fallback} "
              f"(copy it into {path.parent.name or 'recipes'}/ to run it)")
        path = fallback
        atomic_write(path, recipe_text(base, sources, doc.replace("RECIPE.py", str(path))))
    print(f"search: best trial {best.number} ({MONITOR} {best.value:.3f}"
          + (f" vs {parent_value:.3f} for {base.name}" if parent_value is not None else "")
          + f"): {changes_text(sources) or 'no change'} -> {path}")
    return path


# --- CLI ------------------------------------------------------------------------------------------

def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m fastmask.search", description=__doc__.splitlines()[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[4:]))
    ap.add_argument("recipe", help="a recipe file with a `search` space, e.g. recipes/search_lr_cutmix.py")
    ap.add_argument("--trials", type=int, required=True, help="trials in the study in all (shared by its workers)")
    ap.add_argument("--storage", help="optuna storage: a SQLAlchemy URL, a .db file, or a journal file "
                                      "(default: RUNS/search.db)")
    ap.add_argument("--study", help="study name (default: the recipe's name)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe field for every trial and the baseline (repeatable)")
    ap.add_argument("--data", help="folder holding train/ and eval/ (default: the synthetic twin under data/)")
    ap.add_argument("--runs", default="runs", help="runs folder (default: runs/)")
    ap.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"),
                    help="optuna pruner (default: median, from the 6th trial, never at the first epoch)")
    ap.add_argument("--seed", type=int, help="TPE sampler seed (give each worker its own, or none)")
    ap.add_argument("--best", help="where to write the best recipe (default: <study>_best.py beside RECIPE)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="do not train the searched recipe itself first (its cards then lack a verdict)")
    ap.add_argument("--skip-bad", action="store_true", help="skip unreadable images and bad folders")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap.parse_args(argv)


def main(argv):
    args = parse(argv)
    res = search(args.recipe, args.trials, sets=args.sets, data=args.data, runs_dir=args.runs, storage=args.storage,
                 study_name=args.study, pruner=args.pruner, seed=args.seed, best_path=args.best,
                 train_baseline=not args.no_baseline, skip_bad=args.skip_bad)
    if res.ran == 0:
        print(f"search: study {res.study.study_name} already holds {args.trials} trials; "
              "ask for more with a larger --trials")
    return 0


if __name__ == "__main__":
    from .errors import cli
    sys.exit(cli(main)())

"""Hyperparameter search: optuna trials that are recorded runs, pruned on validation macro F1, the best
written as a recipe. The space is a function beside `recipe` in the recipe file, written as optuna
writes one, returning {recipe field: value}:

    def space(trial):
        return dict(lr=trial.suggest_float("lr", 1e-3, 2e-2, log=True),
                    cutmix=trial.suggest_categorical("cutmix", [None, "box", "halves"]))

Each trial trains `recipe.but(**space(trial))` into a run folder `<recipe>-trial<N>` and scores its
validation macro F1. The best trial's values are the space replayed on its stored parameters, checked,
and written as literals: text read from a shared storage never reaches a recipe file.

The reference every trial's card is judged against is a finished run on the same data with exactly the
searched recipe's fields: its own, or an ancestor's that it leaves unchanged (`recipe = parent.but()`), so
an identical run is never trained twice. A trial that changes nothing reuses that run too."""
import ast
import contextlib
import os
import random
import re
import shlex
import sys
import tempfile
import textwrap
import time
import warnings
from collections import namedtuple
from pathlib import Path

from fastmask import console
from fastmask.errors import FastmaskError

try:
    import optuna
except ImportError:
    raise FastmaskError("searching needs optuna: pip install -c constraints.txt -e '.[search]'") from None
from fastai.callback.core import Callback, CancelFitException
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FixedTrial, TrialState, create_trial

from fastmask.data.load import load_data
from fastmask.io import atomic_write
from fastmask.learn.build import preflight
from fastmask.learn.distributed import is_distributed
from fastmask.learn.progress import Quiet
from fastmask.learn.tracker import KeepBest
from fastmask.recipe import _plain, coerce, load_recipe, parse_sets
from fastmask.report.folds import n_folds
from fastmask.runs.session import train_and_record
from fastmask.store.folder import environment
from fastmask.store.index import entries, finished
from fastmask.store.run_folder import RunFolder

MONITOR = "macro_f1"
METRIC_NAME = f"valid {MONITOR}"  # the study's objective, as optuna-dashboard labels it
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # what `trials` counts
MAX_FAILS = 3  # this many failed trials in a row stop a worker
Result = namedtuple("Result", "study best parent_run ran")  # best: the recipe file written, or None


def search(recipe_file, trials, *, sets=(), data=None, runs_dir="runs", storage=None, study_name=None,
           pruner="median", sampler=None, seed=None, best_path=None, train_baseline=True, skip_bad=False):
    """Search `recipe_file`'s space until its study holds `trials` complete, pruned or running trials,
    counted over every worker on `storage` (None: RUNS/search.db; a SQLAlchemy URL, a .db file, or a
    journal file). The searched recipe is trained first unless a finished run with its fields exists
    (`reference`), so every trial's card has a verdict. `pruner`: median, hyperband, none or an optuna
    pruner. Leaves optuna's logging as it finds it: the command quiets it."""
    if is_distributed():
        raise FastmaskError("search trains each trial in one process: start one worker per GPU "
                            "(CUDA_VISIBLE_DEVICES=i python -m fastmask.search ...) against one --storage")
    if not isinstance(trials, int) or trials < 1:
        raise FastmaskError(f"--trials {trials}: expected a whole number >= 1")
    overrides = parse_sets(list(sets))
    base = load_recipe(recipe_file, overrides)
    space = base.space
    sample = check_space(space, base, recipe_file)
    if both := sorted(set(overrides) & set(sample)):
        raise FastmaskError(f"--set {both[0]}: the field is searched by {recipe_file}; drop one of the two")
    if data is not None and not Path(data).exists():
        raise FastmaskError(f"--data {data}: no such folder")
    study_name, pruner = study_name or base.name, make_pruner(pruner, base.epochs * (n_folds(base) or 1))
    store, label = open_storage(storage, runs_dir)
    try:  # constant_liar: workers sampling at the same time spread out
        study = optuna.create_study(storage=store, study_name=study_name, direction="maximize", load_if_exists=True,
                                    sampler=sampler or optuna.samplers.TPESampler(seed=seed, constant_liar=True),
                                    pruner=pruner)
    except ValueError as e:  # an existing study of that name that minimizes, or has several objectives
        raise FastmaskError(f"--study {study_name} on {label}: {e}") from None
    if study.metric_names != [METRIC_NAME]:
        with warnings.catch_warnings(action="ignore", category=optuna.exceptions.ExperimentalWarning):
            study.set_metric_names([METRIC_NAME])
    print(f"search: study {study_name} on {label}, searching {', '.join(sample)}; {trials} trials in all")
    loaded = load_data(data, skip_bad=skip_bad)
    data = loaded.root  # the commands it prints name the data folder (the default twin too): the same from any folder
    parent_run = baseline(base, loaded, runs_dir, overrides, train=train_baseline,
                          reproduce=lambda r: command("fastmask.run", recipe_file if r is base else shown(r.file),
                                                      sets, data, runs_dir))
    home = home_of(base, parent_run)
    searched = command("fastmask.search", recipe_file, sets, data, runs_dir, ["--trials", str(trials), "--study",
                       study_name, *(["--storage", label] if storage else [])])
    objective = make_objective(base, space, loaded, runs_dir, overrides, label, searched,
                               command("fastmask.run", recipe_file, sets, data, runs_dir), home=home)

    def best():
        return write_best(study, base, space, best_path, runs_dir, parent_run, searched, sets, data=data, home=home)
    try:
        ran = drive(study, objective, trials)
    except BaseException:  # Ctrl-C, or too many failed trials: the best so far is still written
        with contextlib.suppress(Exception):
            best()
        raise
    return Result(study, best(), parent_run, ran)


# --- the space ------------------------------------------------------------------------------------

def check_space(space, recipe, where):
    """The space's values on one trial of a throwaway study, checked: it runs and returns {field: value}
    the recipe takes, and a suggestion passed through unchanged is valid at every end of its range (each
    choice, low, high). FastmaskError naming `where` otherwise."""
    if not callable(space):
        raise FastmaskError(f'{where}: no search space; add `def space(trial): return dict(lr=trial.suggest_float('
                            f'"lr", 1e-3, 2e-2, log=True))` beside `recipe`')
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    try:
        values = values_of(space, trial)
        for name, dist in trial.distributions.items():
            if name in values and type(values[name]) is type(trial.params[name]) and values[name] == trial.params[name]:
                for end in dist.choices if hasattr(dist, "choices") else (dist.low, dist.high):
                    preflight(recipe.but(**{**values, name: end}))
        preflight(recipe.but(**values))
    except FastmaskError as e:
        raise FastmaskError(f"{where}: space: {e}") from None
    return values


def values_of(space, trial):
    """`space(trial)` as {field: recipe value}; what it raises, or a value its field refuses: FastmaskError."""
    try:
        values = space(trial)
    except Exception as e:  # noqa: BLE001  (the recipe author's code)
        raise FastmaskError(f"space(trial) raised {type(e).__name__}: {e}") from None
    if not isinstance(values, dict):
        raise FastmaskError(f"space(trial) returned {type(values).__name__}, not a dict {{field: value}}")
    return {k: coerce(k, v) for k, v in values.items()}


def replay(space, params):
    """The values a trial with stored `params` trained: the space run again on them. A shared storage is
    anyone's to write: each parameter must be a plain value inside the distribution the space asks for."""
    fixed = FixedTrial(params)
    with warnings.catch_warnings(action="ignore"):  # FixedTrial only warns on a value out of range
        values = values_of(space, fixed)
    try:  # create_trial refuses a value out of its distribution
        create_trial(params={k: params[k] for k in fixed.distributions}, distributions=fixed.distributions, value=0)
    except ValueError as e:
        raise FastmaskError(str(e)) from None
    if not literal(params):
        raise FastmaskError(f"{params!r} are not plain values")
    return values


def literal(v):
    try:
        return ast.literal_eval(repr(v)) == v
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def changes(base, values):
    return {k: v for k, v in values.items() if _plain(v) != _plain(getattr(base, k))}


def changes_text(values):
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}" if literal(v)
                     else f"{k}=<{type(v).__name__}>" for k, v in values.items())


# --- trials as recorded runs ----------------------------------------------------------------------

class PruneOnMacroF1(Callback):
    """Reports validation macro F1 to `trial` after every epoch (steps count on across k-fold fits). When
    optuna's pruner says so, fit stops as early stopping stops it, so the run is recorded, marked "pruned"
    (the run session reads `run_status`); the objective then raises optuna.TrialPruned."""
    order = KeepBest.order + 1  # a pruned epoch that was the best is kept

    def __init__(self, trial):
        self.trial, self.step, self.run_status = trial, 0, None

    def after_epoch(self):
        self.trial.report(float(self.recorder.log[self.recorder.metric_names.index(MONITOR)]), self.step)
        self.step += 1
        if self.trial.should_prune():
            self.run_status = "pruned"
            raise CancelFitException()


def make_objective(base, space, data, runs_dir, overrides, label, searched, reproduce, home=None):
    """The optuna objective: one recorded run per trial; its validation macro F1, or TrialPruned. A trial
    is a child of `home` (`base`, or the ancestor with its fields whose run is the reference), so its card
    is judged against the reference run. A trial that changes nothing reuses the reference run's score
    instead of training the same run again."""
    home, fp = home or base, data.fingerprint

    def objective(trial):
        values = values_of(space, trial)
        changed, study = changes(base, values), trial.study.study_name
        same = None if changed else next((e for e in reference_runs(base, fp, runs_dir)
                                          if isinstance(e.metrics.get(MONITOR), (int, float))), None)
        if same is not None:
            trial.set_user_attr("run", str(same.dir))
            trial.set_user_attr("reused", True)
            return float(same.metrics[MONITOR])
        over = base.name if home is base else f"{home.name} (searched as {base.name})"
        doc = (f"Trial {trial.number} of search study '{study}': {changes_text(changed) or 'no change'} "
               f"{'raise' if changed else 'repeats'} validation macro F1 over {over}.")
        again = "".join(f" --set {shlex.quote(f'{k}={set_text(v)}')}" for k, v in values.items() if literal(v))
        info = {"search": {"study": study, "trial": trial.number, "storage": label, "params": trial.params,
                           "command": searched},
                "environment": {**environment(), "command": reproduce + again}}  # retrains this trial's fields
        prune = PruneOnMacroF1(trial)
        with tempfile.TemporaryDirectory(prefix="fastmask-trial-") as tmp:
            f = Path(tmp) / "recipe.py"
            f.write_text(recipe_text(base, changed, doc, trial.params, home=home))
            r = home.but(**values)
            r.name, r.file, r.hypothesis = f"{base.name}-trial{trial.number}", str(f), doc
            try:
                d = train_and_record(r, data, runs_dir, overrides=overrides, cbs=[prune, Quiet()], info=info)
            finally:  # a failed or interrupted trial has its run folder too
                if found := next((e.dir for e in reversed(entries(runs_dir))
                                  if e.config.get("search", {}).get("trial") == trial.number
                                  and e.config["search"].get("study") == study), None):
                    trial.set_user_attr("run", str(found))
        if prune.run_status == "pruned":
            raise optuna.TrialPruned(f"pruned after epoch {prune.step}")
        return float(d.metrics[MONITOR])
    return objective


def set_text(v):
    """A literal value as `--set` text."""
    if isinstance(v, dict):
        return ",".join(f"{k}:{w}" for k, w in v.items())
    return ("none" if v is None else ",".join(map(str, v)) if isinstance(v, (tuple, list))
            else str(v).lower() if isinstance(v, bool) else str(v))


def unchanged(base):
    """`base` and the ancestors with exactly its fields, nearest first: `recipe = parent.but()` searches
    its parent as it is, so a run of any of them is a run of `base`."""
    chain, fields = [base], base.config()["fields"]
    while chain[-1].parent is not None and chain[-1].parent.config()["fields"] == fields:
        chain.append(chain[-1].parent)
    return chain


def reference_runs(base, fp, runs_dir):
    """Finished runs on data `fp` with exactly `base`'s resolved fields, of `base` or an unchanged
    ancestor: the searched recipe's own first, then the nearest ancestor's; newest first within each."""
    names = [r.name for r in unchanged(base)]
    runs = [e for e in finished(runs_dir, None, fp, base.config()["fields"]) if e.recipe in names]
    return sorted(runs, key=lambda e: names.index(e.recipe))


def home_of(base, run):
    """The recipe of `base`'s unchanged chain whose run `run` is (trials and the best recipe are its
    children, so their cards find that run); `base` without one."""
    name = RunFolder(run).recipe if run else None
    return next((r for r in unchanged(base) if r.name == name), base)


def baseline(base, data, runs_dir, overrides, train=True, reproduce=None):
    """The reference run: the newest finished run on the same data with the searched recipe's fields (its
    own, or an unchanged ancestor's: reused, never trained again). When missing (and `train`), the oldest
    unchanged ancestor is trained (`base` itself unless `recipe = parent.but()`): its card then compares
    a real change against its own parent, never an identical run. `reproduce(recipe)`: its run command."""
    runs = reference_runs(base, data.fingerprint, runs_dir)
    if runs:
        print(f"search: reference run {runs[0].dir} ({runs[0].recipe}, the same fields and data): not trained again")
    if runs or not train:
        return runs[0].dir if runs else None
    r = unchanged(base)[-1]
    print(f"search: training {r.name}{f' ({base.name} leaves it unchanged)' if r is not base else ' itself'} first, "
          "so every trial's card has a verdict against it")
    info = {"environment": {**environment(), "command": reproduce(r)}} if reproduce else None
    return train_and_record(r, data, runs_dir, overrides=overrides, info=info)


def shown(path):
    """`path` relative to the working folder when inside it, as a command line shows it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def command(module, recipe_file, sets, data, runs_dir, extra=()):
    """The command line a user pastes to do it again, from any folder: this interpreter by its full path, the
    recipe file, --data and --runs absolute."""
    parts = [str(Path(recipe_file).resolve()), *extra, *[x for s in sets for x in ("--set", s)]]
    parts += (["--data", str(Path(data).resolve())] if data is not None else []) + ["--runs", str(Path(runs_dir).resolve())]
    return console.command_line(*parts, module=module)


# --- optuna: storage, pruner, the trial loop ------------------------------------------------------

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
        raise FastmaskError(f"--storage {label}: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}") from None


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


# --- the best recipe ------------------------------------------------------------------------------

def module_of(r):
    p = Path(r.file)
    return f"{'recipes.' if p.parent.name == 'recipes' else ''}{p.stem}"


def recipe_text(base, changed, doc, params, home=None):
    """A child recipe file of `home` (default `base`, the searched recipe; else an ancestor with its fields):
    docstring, parent import, `recipe = parent.but(...)` with `changed` as literals (a value no literal
    says: the searched recipe's space replayed on `params`, checked literals)."""
    home = home or base
    # the docstring may quote a study name from a shared storage: nothing in it may end the string
    doc = "".join(c if c.isprintable() or c == "\n" else " " for c in doc).replace("\\", "/").replace('"""', "'''")
    # an indented line is a command: kept whole, for copy and paste
    doc = "\n".join(par if par.startswith("    ") else textwrap.fill(par, 100) for par in doc.split("\n"))
    replayed = f"space(FixedTrial({params!r}))"
    args = {k: repr(v) if literal(v) else f"{replayed}[{k!r}]" for k, v in changed.items()}
    imp = f"from {module_of(home)} import recipe as parent"
    if any(replayed in a for a in args.values()):
        imp = (f"from optuna.trial import FixedTrial\n{imp}"
               + (", space" if module_of(home) == module_of(base) else f"\nfrom {module_of(base)} import space"))
    return f'"""{doc}"""\n{imp}\n\nrecipe = parent.but({", ".join(f"{k}={a}" for k, a in args.items())})\n'


def checked_best(study, space):
    """The best complete trial that replays as a point of the space, and its values; (None, None) without
    one. A trial that does not (a changed space, or a stranger's write) is passed over with one warning."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value == t.value]
    for t in sorted(done, key=lambda t: (-t.value, t.number)):
        try:
            return t, replay(space, t.params)
        except FastmaskError as e:
            print(f"fastmask: warning: search: trial {t.number} is not a point of the searched space "
                  f"({e}); the best recipe passes it over", file=sys.stderr)
    return None, None


def write_best(study, base, space, path, runs_dir, parent_run, searched, sets, data=None, home=None):
    """The best complete trial as a child recipe of `home` (default `base`; see make_objective); returns its
    path (None without one). Default: `<study>_best.py` beside the searched recipe, or in the runs folder
    when that folder is not writable. Its docstring and the last line printed say how to run it with the
    search's --set, --data and --runs."""
    home = home or base
    best, values = checked_best(study, space)
    if best is None:
        print("search: no complete trial of the searched space yet, so no best recipe")
        return None
    changed, trials = changes(base, values), [t for t in study.trials if not t.user_attrs.get("surplus")]
    n = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    own = RunFolder(parent_run).metrics.get(MONITOR) if parent_run else None
    over = base.name if home is base else f"{home.name} (searched as {base.name}, which leaves it unchanged)"
    # the claim follows the figures: a best trial that scores no higher than the reference run raises nothing
    losing = isinstance(own, (int, float)) and best.value <= own
    if not changed:
        claim = f"Nothing searched beats {base.name}'s own values:"
    elif losing:
        claim = f"No trial beat {home.name}'s own run, so this recipe is no better: {changes_text(changed)} do not raise"
    else:
        claim = f"{changes_text(changed)} raise"
    doc = (f"{claim} validation macro F1 over {over}: trial {best.number} of search study '{study.study_name}' "
           f"scoring {best.value:.3f}" + (f" against {own:.3f} for {home.name} itself (run {Path(parent_run).name})"
                                          if isinstance(own, (int, float)) else "")
           + f", the best of {len(trials)} trials ({n[TrialState.COMPLETE]} complete, {n[TrialState.PRUNED]} pruned, "
           f"{n[TrialState.FAIL]} failed).\n\nSearched with:\n    {searched}\n"
           + "Run it with the search's settings and data:\n    RUN_IT\n"
           + "Validation picked these values, so the verdict against the parent on the same split is "
             "optimistic: judge it on holdout macro F1 or another seed.")
    ident = "".join(c if c.isalnum() or c == "_" else "_" for c in study.study_name)
    path = Path(path) if path else Path(base.file).parent / f"{ident}_best.py"
    if path.resolve() == Path(base.file).resolve():
        raise FastmaskError(f"--best {path}: that is the searched recipe itself")

    def run_it(where):
        return command("fastmask.run", shown(str(where)), sets, data, runs_dir)
    for where in (path, Path(runs_dir) / path.name):
        try:
            text = recipe_text(base, changed, doc.replace("RUN_IT", run_it(where)), best.params, home=home)
            atomic_write(where, text)
            break
        except OSError as e:
            if where != path:
                raise
            print(f"search: {path.parent} is not writable ({e.strerror}); the best recipe goes to the runs "
                  f"folder (copy it into {path.parent.name or 'recipes'}/ to run it)")
    if losing and changed:
        print(f"search: no trial beat {home.name}'s own run ({MONITOR} {own:.3f}); the best, trial {best.number} "
              f"({best.value:.3f}: {changes_text(changed)}), is written marked as losing -> {where}")
    else:
        print(f"search: best trial {best.number} ({MONITOR} {best.value:.3f}): {changes_text(changed) or 'no change'} "
              f"-> {where}")
    print(f"search: run it with: {run_it(where)}")
    return where

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
import contextlib
import shlex
import tempfile
import warnings
from collections import namedtuple
from pathlib import Path

from fastmask.errors import FastmaskError

try:
    import optuna
except ImportError:
    raise FastmaskError("searching needs optuna: pip install -c constraints.txt -e '.[search]'") from None
from fastai.callback.core import Callback, CancelFitException

from fastmask.data.load import load_data
from fastmask.learn.distributed import is_distributed
from fastmask.learn.progress import Quiet
from fastmask.learn.tracker import KeepBest
from fastmask.recipe import parse_sets
from fastmask.recipe_file import load_recipe
from fastmask.report.folds import n_folds
from fastmask.report.judgement import set_text
from fastmask.runs.session import train_and_record
from fastmask.store.folder import environment
from fastmask.store.index import entries, finished
from fastmask.store.run_folder import RunFolder
from fastmask.tune.best import command, recipe_text, shown, write_best
from fastmask.tune.space import changes, changes_text, check_space, literal, values_of
from fastmask.tune.study import METRIC_NAME, MONITOR, drive, make_pruner, open_storage

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


"""What one `fastmask run` trains to say whether the hypothesis beat its parent: the parent's runs it lacks
(runs.parents, the parent on demand), the recipe's own run, then, with `--decide`, the design that decides it
(runs.decide). Every model is an ordinary run folder; the verdict pools them seed by seed (report.judgement)."""
import sys
import time
from pathlib import Path

from fastmask.data.load import default_data, load_data
from fastmask.data.relabel import RELABEL
from fastmask.errors import FastmaskError
from fastmask.learn.build import preflight
from fastmask.learn.distributed import is_distributed, is_main, main_first, setup
from fastmask.recipe import parse_sets
from fastmask.recipe_file import load_recipe
from fastmask.runs.decide import Queued, decide
from fastmask.runs.outputs import rejudge_children
from fastmask.runs.parents import covered, status_of, train_missing  # noqa: F401  (covered: tests and the queue ask here)
from fastmask.runs.session import train_and_record
from fastmask.store.index import RunIndex, seeds_of


def run_file(recipe_file, sets=(), data=None, runs_dir="runs", skip_bad=False, parent=True, minutes=None,
             effect=None, anyway=False, jobs=None, cpus=None, ray=None):
    """`fastmask run`: load the recipe with its `--set` values, check it, load the data (the twin by
    default), train the parent's missing runs (unless `parent` is False), then the recipe, then with
    `decide` the design that resolves `effect` within the budget (runs.decide; with `jobs`, `cpus` or `ray` its
    models train as queue jobs, in parallel). Returns the exit status: 0 when the
    recipe's run finished, 1 otherwise (partial)."""
    overrides = parse_sets(sets)
    recipe = load_recipe(recipe_file, overrides)
    if recipe.decide and recipe.parent is None:
        raise FastmaskError(f"--decide: {recipe.name} has no parent recipe to decide against (it is a root)")
    setup(recipe)  # several processes (accelerate launch): check and join them; nothing otherwise
    preflight(recipe)  # bad field values (a k-fold split included) fail before any data work or run folder
    if data is not None and not Path(data).exists():
        raise FastmaskError(f"--data {data}: no such folder")
    with main_first():
        loaded = load_data(data, skip_bad=skip_bad)
    if recipe.relabel and not (loaded.relabel or {}).get("corrections") and is_main():
        what = "has no corrections" if loaded.relabel else "does not exist"
        print(f"fastmask: warning: relabel=True, but {Path(loaded.root) / RELABEL} {what}: nothing to apply; this "
              "run trains on the labels given, as a run without relabel does", file=sys.stderr)
    if is_distributed():  # every rank must train the same runs: one run, as asked, no parent or seeds added
        d = train_and_record(recipe, loaded, runs_dir, overrides=overrides)
        return 0 if d is None or status_of(d) == "finished" else 1
    started = time.monotonic()
    fp = loaded.fingerprint
    seeds = recipe.seeds
    if parent and recipe.parent is not None:
        train_missing(recipe.parent, loaded, runs_dir, overrides, fp, seeds, recipe.name)
    elif recipe.parent is not None:
        print(f"parent {recipe.parent.name}: not trained (--no-parent); the verdict uses its runs that exist")
    deciding = bool(recipe.decide and recipe.parent is not None and parent)
    # read after the parent's runs were trained: the index is a snapshot
    mine = RunIndex(runs_dir).pool(recipe.name, fp, recipe.config()["fields"]) if deciding else []
    reuse = next((e.dir for e in mine if set(seeds) <= set(seeds_of(e.config.get("fields")))), None)
    if reuse is not None:  # --decide builds on the evidence there is: the card's own command must not retrain it
        print(f"{recipe.name}: reusing {reuse.name} for seed(s) {', '.join(map(str, seeds))}; "
              "adding paired seeds from there")
        d = reuse
    else:
        d = train_and_record(recipe, loaded, runs_dir, overrides=overrides)
        if status_of(d) != "finished":
            return 1
        rejudge_children(runs_dir, recipe.name, fp)
    if deciding:
        trainer = None
        if jobs is not None or cpus is not None or ray is not None:
            trainer = Queued(default_data() if data is None else data, runs_dir, jobs, cpus, ray)
        try:
            decide(recipe, loaded, runs_dir, overrides, fp, d, started, minutes, effect=effect, anyway=anyway,
                   trainer=trainer)
        finally:
            if trainer is not None:
                trainer.close()
    return 0

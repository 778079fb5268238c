"""What one `fastmask run` trains to say whether the hypothesis beat its parent: the parent's runs it lacks
(the parent on demand), the recipe's own run, then, with `--decide`, one more seed on each side at a time
until the verdict decides or the budget ends. Every model is an ordinary run folder; the verdict pools
them seed by seed (report.judgement)."""
import sys
import time
from pathlib import Path

from fastmask.data.load import load_data
from fastmask.data.relabel import RELABEL
from fastmask.errors import FastmaskError
from fastmask.learn.build import preflight
from fastmask.learn.distributed import is_distributed, is_main, main_first, setup
from fastmask.recipe import load_recipe, parse_sets
from fastmask.report.judgement import DECIDED, judge
from fastmask.runs.outputs import rejudge, rejudge_children
from fastmask.runs.session import train_and_record
from fastmask.store.folder import CARD
from fastmask.store.index import RunIndex, seeds_of
from fastmask.store.run_folder import RunFolder


def run_file(recipe_file, sets=(), data=None, runs_dir="runs", skip_bad=False, parent=True, minutes=None):
    """`fastmask run`: load the recipe with its `--set` values, check it, load the data (the twin by
    default), train the parent's missing runs (unless `parent` is False), then the recipe, then with
    `decide` seeds until the verdict decides or `minutes` have passed. Returns the exit status: 0 when the
    recipe's run finished, 1 otherwise (partial)."""
    overrides = parse_sets(sets)
    recipe = load_recipe(recipe_file, overrides)
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
        return 0 if d is None or _status(d) == "finished" else 1
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
        if _status(d) != "finished":
            return 1
        rejudge_children(runs_dir, recipe.name, fp)
    if deciding:
        decide(recipe, loaded, runs_dir, overrides, fp, d, started, minutes)
    return 0


def _status(run):
    """The status of a RunFolder train_and_record handed back (or of a run folder's path)."""
    return (run if isinstance(run, RunFolder) else RunFolder(run)).status_json.get("status")


def covered(runs, recipe, fp):
    """The seeds the finished runs of `recipe`'s setup on data `fp` trained, in `runs` (a runs folder or
    its RunIndex)."""
    return RunIndex.of(runs).seeds(recipe.name, fp, recipe.config()["fields"])


def train_missing(recipe, data, runs_dir, overrides, fp, seeds, child):
    """Train the runs of `recipe` (a parent) that `seeds` lack on this data: one run when all are missing
    (replicates as the child has them), else one run per missing seed. Reuse says which run it reuses."""
    index = RunIndex(runs_dir)
    have = covered(index, recipe, fp)
    missing = [s for s in seeds if s not in have]
    if not missing:
        runs = index.pool(recipe.name, fp, recipe.config()["fields"])
        print(f"parent {recipe.name}: reusing {', '.join(e.dir.name for e in runs[:3])}"
              + (f" and {len(runs) - 3} more" if len(runs) > 3 else ""))
        return []
    why = "no comparable finished run" if not have else f"no finished run with seed {', '.join(map(str, missing))}"
    print(f"parent {recipe.name}: {why} on this data; training it first for {child}'s verdict (--no-parent skips)")
    if missing == seeds and seeds == list(range(seeds[0], seeds[0] + len(seeds))):  # the child's seeds, as it has them
        plans = [(recipe.variant(seed=seeds[0], replicates=len(seeds)), {})]
    else:
        plans = [(recipe.variant(seed=s, replicates=1), {"seed": s, "replicates": 1}) for s in missing]
    out = []
    for r, sets in plans:
        if r.seed != recipe.seed:
            sets = {"seed": r.seed, **sets}
        d = train_and_record(r, data, runs_dir, overrides={**(overrides or {}), **sets}, info={"trained_for": child})
        if _status(d) != "finished":
            raise FastmaskError(f"parent {recipe.name}: its run {d} did not finish ({_status(d)}); no verdict")
        rejudge_children(runs_dir, recipe.name, fp)
        out.append(d)
    return out


def decide(recipe, data, runs_dir, overrides, fp, first, started, minutes=None):
    """Add one seed to the recipe's setup and to its parent's at a time, re-judging after each pair, until
    the verdict is supported, refuted or "no effect", `recipe.decide` paired seeds are reached, or
    `minutes` have passed. The design of the verdict (verdict.compare) spends its error rate over these
    looks. Returns the last run folder; the first run's card is rewritten with the final verdict."""
    budget = recipe.decide
    last = Path(first)
    while True:
        index = RunIndex(runs_dir)  # again each round: the round before trained runs
        j = judge(RunFolder(last), index)
        v = j.verdict or {}
        paired = int(v.get("seeds") or 0)
        if not v or v.get("verdict") in DECIDED or v.get("verdict") == "neither learned":
            reason = "decided" if v.get("verdict") in DECIDED else "no paired test" if not v else "neither model learned"
            break
        if paired >= budget:
            reason = f"seed budget of {budget} reached"
            break
        if minutes is not None and (time.monotonic() - started) / 60 >= minutes:
            reason = f"time budget of {minutes:g} min reached"
            break
        mine, theirs = covered(index, recipe, fp), covered(index, recipe.parent, fp)
        s = next(s for s in range(recipe.seed, recipe.seed + 10_000) if not (s in mine and s in theirs))
        print(f"decide: {paired} paired seed(s), {v.get('verdict')}; adding seed {s}")
        if s not in theirs:
            train_missing(recipe.parent, data, runs_dir, overrides, fp, [s], recipe.name)
        if s not in mine:
            r = recipe.variant(seed=s, replicates=1)
            d = train_and_record(r, data, runs_dir, overrides={**(overrides or {}), "seed": s},
                                 info={"decide_of": Path(first).name})
            if _status(d) != "finished":
                raise FastmaskError(f"decide: {d} did not finish ({_status(d)})")
            last = Path(d)
    final = rejudge(first, runs_dir)
    v = final.verdict or {}
    word = v.get("verdict", "cannot compare")
    delta = f" {v['delta']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]" if "delta" in v and "low" in v else ""
    print(f"decide: {word}{delta} after {v.get('seeds', 0)} paired seed(s), "
          f"{(time.monotonic() - started) / 60:.1f} min ({reason}); card: {Path(first) / CARD}")
    return last

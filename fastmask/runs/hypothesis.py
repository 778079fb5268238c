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
from fastmask.recipe import parse_sets
from fastmask.recipe_file import load_recipe, with_overrides
from fastmask.report.design import FOLDS, choose, futile, options, plan_line, what_would
from fastmask.report.judgement import DECIDED, judge
from fastmask.runs.outputs import rejudge, rejudge_children
from fastmask.runs.session import train_and_record
from fastmask.store.folder import CARD
from fastmask.store.index import RunIndex, seeds_of
from fastmask.store.run_folder import RunFolder


def run_file(recipe_file, sets=(), data=None, runs_dir="runs", skip_bad=False, parent=True, minutes=None,
             effect=None, anyway=False):
    """`fastmask run`: load the recipe with its `--set` values, check it, load the data (the twin by
    default), train the parent's missing runs (unless `parent` is False), then the recipe, then with
    `decide` the design that resolves `effect` within the budget (decide). Returns the exit status: 0 when the
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
        decide(recipe, loaded, runs_dir, overrides, fp, d, started, minutes, effect=effect, anyway=anyway)
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


def per_model_minutes(*runs):
    """Minutes one model took, on the runs there are (each run's minutes over its models), or None."""
    each = []
    for r in runs:
        if r is None or not isinstance(r.minutes, (int, float)):
            continue
        fields = r.config.get("fields") or {}
        split = str(fields.get("split", ""))
        models = int(split.split(":")[1]) if split.startswith("kfold:") else int(fields.get("replicates") or 1)
        each.append(r.minutes / max(models, 1))
    return sum(each) / len(each) if each else None


def kfold_of(recipe, folds):
    """The recipe and its parent chain on paired person k-fold: every person validates once."""
    return with_overrides(recipe, {"split": f"kfold:{folds}", "replicates": 1})


def plan_design(recipe, v, index, fp, first, parent_run, effect, budget, minutes_left):
    """(design, why, options) for --decide from the first paired runs' verdict `v` (report.design)."""
    k = {f: kfold_of(recipe, f) for f in FOLDS}
    have = {f for f in FOLDS if recipe.seed in index.seeds(recipe.parent.name, fp, k[f].parent.config()["fields"])}
    mine = {f for f in FOLDS if recipe.seed in index.seeds(recipe.name, fp, k[f].config()["fields"])}
    per = per_model_minutes(RunFolder(first), parent_run) or 1.0
    opts = options(v, per, int(v.get("seeds") or 1), have, mine, recipe.valid_pct, v.get("total_people"),
                   max_per_side=max(budget, 2))
    d, why = choose(opts, effect=effect, per_side=budget, minutes=minutes_left)
    return d, why, opts


def decide(recipe, data, runs_dir, overrides, fp, first, started, minutes=None, effect=None, anyway=False):
    """Plan, then train: from the noise the first paired runs measured, the cheapest design within the budget
    (`recipe.decide` models a side, `minutes`) that resolves `effect` (none asked: the smallest effect the budget
    allows), printed in one line before anything trains (report.design). Paired seeds are added one pair at a
    time, re-judged after each, until the verdict decides, neither model learned, the budget ends or the rest of
    it is futile; a k-fold design trains both sides' folds (a side's existing folds reused) and judges them
    paired. When no design within the budget resolves `effect`, it says what would and trains nothing more
    unless `anyway`. Returns the run folder that holds the final verdict."""
    budget = recipe.decide
    last, reason, design = Path(first), None, None
    while True:
        index = RunIndex(runs_dir)  # again each round: the round before trained runs
        j = judge(RunFolder(last), index)
        v = j.verdict or {}
        paired = int(v.get("seeds") or 0)
        left = None if minutes is None else minutes - (time.monotonic() - started) / 60
        if not v or v.get("verdict") in DECIDED or v.get("verdict") == "neither learned":
            reason = "decided" if v.get("verdict") in DECIDED else "no paired test" if not v else "neither model learned"
            break
        if design is None:
            design, why, opts = plan_design(recipe, v, index, fp, first, j.parent, effect, budget, left)
            print(plan_line(design, effect, why), flush=True)
            if design is None:
                would = what_would(opts, effect or v.get("min_effect", 0.02), v, v.get("total_people"))
                print(f"decide: to resolve {effect or v.get('min_effect', 0.02):.3f}: {would}")
                if not anyway:
                    reason = "no design within the budget resolves the effect (--anyway trains the best it allows)"
                    break
                design, why = choose(opts, per_side=budget, minutes=left)
                if design is None:
                    reason = why
                    break
                print(plan_line(design, None, why + " (--anyway)"), flush=True)
            if design.kind == "kfold":
                last, reason = run_kfold(recipe, data, runs_dir, overrides, fp, first, design.per_side)
                break
        if paired >= design.per_side:
            reason = f"the design's {design.per_side} paired seeds reached"
            break
        if left is not None and left <= 0:
            reason = f"time budget of {minutes:g} min reached"
            break
        if futile(v, design.per_side):
            reason = f"futile: {design.per_side} paired seeds cannot decide at any plausible effect"
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
    spent = (time.monotonic() - started) / 60
    decision = {"reason": reason, "minutes": round(spent, 2), "design": design.name if design is not None else None}
    kfold = design is not None and design.kind == "kfold"
    if kfold:  # the first run's card points at the k-fold run that holds the final verdict
        rejudge(first, runs_dir, decision={**decision, "final_run": Path(last).name})
    final = rejudge(last if kfold else first, runs_dir, decision=decision)
    v = final.verdict or {}
    word = v.get("verdict", "cannot compare")
    delta = f" {v['delta']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]" if "delta" in v and "low" in v else ""
    evidence = f"{v['folds']} paired folds" if v.get("method") == "folds" else f"{v.get('seeds', 0)} paired seed(s)"
    card = (Path(last) if kfold else Path(first)) / CARD
    print(f"decide: {word}{delta} after {evidence}, {spent:.1f} min ({reason}); card: {card}")
    return last


def run_kfold(recipe, data, runs_dir, overrides, fp, first, folds):
    """Both sides on paired person k-fold (the parent's folds reused when its k-fold run exists); returns (the
    child's k-fold run, the reason to stop)."""
    child = kfold_of(recipe, folds)
    sets = {**(overrides or {}), "split": f"kfold:{folds}", "replicates": 1}
    train_missing(child.parent, data, runs_dir, sets, fp, [child.seed], child.name)
    found = RunIndex(runs_dir).pool(child.name, fp, child.config()["fields"])
    if found:
        return found[0].dir, f"kfold:{folds} trained on both sides"
    d = train_and_record(child, data, runs_dir, overrides=sets, info={"decide_of": Path(first).name})
    if _status(d) != "finished":
        raise FastmaskError(f"decide: {d} did not finish ({_status(d)})")
    return Path(d.dir if isinstance(d, RunFolder) else d), f"kfold:{folds} trained on both sides"

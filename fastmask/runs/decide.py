"""--decide: plan, then train. From the noise the first pair of runs measured and what one model cost, the design
that resolves the effect asked for within the budget (report.design), printed in one line before it trains;
then paired seeds, one look after each batch, or paired person k-fold on both sides. Models train in this process
one after another, or with --jobs / --ray as jobs of the queue's engines (in parallel, a look as each batch ends)."""
import time
from pathlib import Path

from fastmask.errors import FastmaskError
from fastmask.recipe_file import with_overrides
from fastmask.report.design import FOLDS, choose, futile, options, plan_line, what_would
from fastmask.report.judgement import DECIDED, judge
from fastmask.runs.outputs import rejudge
from fastmask.runs.parents import covered, status_of, train_missing
from fastmask.runs.session import train_and_record
from fastmask.store.folder import CARD
from fastmask.store.index import RunIndex
from fastmask.store.run_folder import RunFolder


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
            if status_of(d) != "finished":
                raise FastmaskError(f"decide: {d} did not finish ({status_of(d)})")
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
    if status_of(d) != "finished":
        raise FastmaskError(f"decide: {d} did not finish ({status_of(d)})")
    return Path(d.dir if isinstance(d, RunFolder) else d), f"kfold:{folds} trained on both sides"

"""--decide: plan, then train. From the noise the first pair of runs measured and what one model cost, the design
that resolves the effect asked for within the budget (report.design), printed in one line before it trains;
then paired seeds, one look after each batch, or paired person k-fold on both sides. Models train in this process
one after another, or with --jobs / --ray as jobs of the queue's engines (in parallel, a look as each batch ends)."""
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fastmask.errors import FastmaskError
from fastmask.recipe_file import with_overrides
from fastmask.report.design import FOLDS, choose, futile, options, plan_line, what_would
from fastmask.report.judgement import DECIDED, judge, set_text
from fastmask.runs.outputs import rejudge, rejudge_children
from fastmask.runs.parents import covered, status_of
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


@dataclass
class Model:
    """One model --decide trains: the recipe as it trains (a seed or k-fold variant), the --set values that
    reproduce it from its file, and what its config.json records about why it was trained."""
    recipe: object
    sets: dict
    info: dict


class InProcess:
    """Trains --decide's models here, one after another."""
    slots = 1

    def __init__(self, data, runs_dir, fp):
        self.data, self.runs_dir, self.fp = data, runs_dir, fp

    def train(self, models):
        out = []
        for m in models:
            d = train_and_record(m.recipe, self.data, self.runs_dir, overrides=m.sets, info=m.info)
            if status_of(d) != "finished":
                raise FastmaskError(f"decide: {d} did not finish ({status_of(d)})")
            rejudge_children(self.runs_dir, m.recipe.name, self.fp)
            out.append(Path(d))
        return out


class Queued:
    """Trains --decide's models as jobs of the queue's engine: `jobs` processes at a time on this machine, each
    with its share of the CPU threads, or Ray tasks on the cluster at `ray` (queue.Local, on_ray.OnRay)."""

    def __init__(self, data, runs_dir, jobs=None, cpus=None, ray=None, out=print):
        from fastmask.runs.on_ray import OnRay
        from fastmask.runs.queue import Local
        self.data, self.runs_dir, self.out = Path(data).resolve(), Path(runs_dir).resolve(), out
        self.slots = jobs or 2
        self.engine = OnRay(ray, cpus, out) if ray is not None else Local(self.slots, cpus)

    def command(self, job, sets):
        return [sys.executable, "-m", "fastmask.run", job.file, *[x for k, v in sets.items() for x in
                ("--set", f"{k}={set_text(v)}")], "--no-parent", "--runs", str(self.runs_dir), "--data",
                str(self.data), "--quiet"]

    def train(self, models):
        from fastmask.runs.queue import Job, drive
        jobs = {}
        for m in models:
            tag = f"kfold:{m.recipe.split.n_folds}" if m.recipe.split.n_folds else f"seed {m.recipe.seed}"
            j = Job(f"{m.recipe.name} {tag}", str(Path(m.recipe.file).resolve()), "decide")
            jobs[j.name] = (j, m.sets)
        todo = [j for j, _ in jobs.values()]
        if drive(todo, self.engine, lambda j: self.command(j, jobs[j.name][1]), self.runs_dir, self.slots, self.out):
            raise KeyboardInterrupt
        bad = [j for j in todo if j.status != "finished" or j.run is None]
        if bad:
            raise FastmaskError(f"decide: {bad[0].name} {bad[0].status}: {bad[0].why or 'no run folder'}")
        return [j.run for j in todo]

    def close(self):
        self.engine.close()


def seed_models(recipe, overrides, index, fp, first, n):
    """The next `n` paired seeds either side lacks: the parent's model before the child's for each seed."""
    mine, theirs = covered(index, recipe, fp), covered(index, recipe.parent, fp)
    seeds = [s for s in range(recipe.seed, recipe.seed + 10_000) if not (s in mine and s in theirs)][:n]
    out = []
    for s in seeds:
        sets = {**(overrides or {}), "seed": s, "replicates": 1}
        if s not in theirs:
            out.append(Model(recipe.parent.variant(seed=s, replicates=1), sets, {"trained_for": recipe.name}))
        if s not in mine:
            out.append(Model(recipe.variant(seed=s, replicates=1), sets, {"decide_of": Path(first).name}))
    return seeds, out


def kfold_models(recipe, overrides, index, fp, first, folds):
    """Both sides on paired person k-fold, a side whose k-fold run exists reused; and the child's existing run."""
    child = kfold_of(recipe, folds)
    sets = {**(overrides or {}), "split": f"kfold:{folds}", "replicates": 1}
    out = []
    if child.seed not in covered(index, child.parent, fp):
        out.append(Model(child.parent, sets, {"trained_for": recipe.name}))
    found = index.pool(child.name, fp, child.config()["fields"])
    if not found:
        out.append(Model(child, sets, {"decide_of": Path(first).name}))
    return out, (found[0].dir if found else None)


def decide(recipe, data, runs_dir, overrides, fp, first, started, minutes=None, effect=None, anyway=False,
           trainer=None):
    """Plan, then train: from the noise the first paired runs measured, the cheapest design within the budget
    (`recipe.decide` models a side, `minutes`) that resolves `effect` (none asked: the smallest effect the budget
    allows), printed in one line before anything trains (report.design). Paired seeds are added a batch at a
    time (one pair, or as many pairs as the `trainer` runs at once), re-judged after each, until the verdict
    decides, neither model learned, the budget ends or the rest of it is futile; a k-fold design trains both
    sides' folds (a side's existing folds reused) and judges them paired. When no design within the budget
    resolves `effect`, it says what would and trains nothing more unless `anyway`. `trainer`: InProcess (the
    default) or Queued. Returns the run folder that holds the final verdict."""
    trainer = trainer or InProcess(data, runs_dir, fp)
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
                # the effect measured so far may be far larger than the one asked: a cheaper design decides it
                measured = abs(v["delta"]) if isinstance(v.get("delta"), (int, float)) else None
                alt = choose(opts, effect=measured, per_side=budget, minutes=left)[0] if measured else None
                if alt is not None:
                    print(f"decide: the effect measured so far, {v['delta']:+.3f}, would be decided by {alt.name} "
                          f"({alt.new_models} models, about {alt.minutes:.0f} min)"
                          + ("" if anyway else ": --anyway trains it"))
                if not anyway:
                    reason = "no design within the budget resolves the effect (--anyway trains the best it allows)"
                    break
                design, why = (alt, f"it decides the effect measured so far, {v['delta']:+.3f}") if alt else \
                    choose(opts, per_side=budget, minutes=left)
                if design is None:
                    reason = why
                    break
                print(plan_line(design, None, why + " (--anyway)"), flush=True)
            if design.kind == "kfold":
                models, found = kfold_models(recipe, overrides, index, fp, first, design.per_side)
                runs = trainer.train(models)
                last = Path(found or runs[-1])
                reason = f"kfold:{design.per_side} trained on both sides"
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
        n = max(1, min(trainer.slots // 2, design.per_side - paired))
        seeds, models = seed_models(recipe, overrides, index, fp, first, n)
        print(f"decide: {paired} paired seed(s), {v.get('verdict')}; adding seed{'s' if n > 1 else ''} "
              f"{', '.join(map(str, seeds))}")
        runs = trainer.train(models)
        kids = [r for r, m in zip(runs, models) if m.recipe.name == recipe.name]
        last = Path(kids[-1]) if kids else last
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

"""The parent on demand: the runs of a parent recipe a child's verdict lacks on this data, trained before the child
(or reused), seed by seed."""
from fastmask.errors import FastmaskError
from fastmask.runs.outputs import rejudge_children
from fastmask.runs.session import train_and_record
from fastmask.store.index import RunIndex
from fastmask.store.run_folder import RunFolder


def status_of(run):
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
        if status_of(d) != "finished":
            raise FastmaskError(f"parent {recipe.name}: its run {d} did not finish ({status_of(d)}); no verdict")
        rejudge_children(runs_dir, recipe.name, fp)
        out.append(d)
    return out

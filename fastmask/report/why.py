"""A child card's "Why": which classes moved against the parent run (with intervals over people), which
validation images flipped between the two, and what to try next. Numbers and words only: report/explain.py
measures, runs/outputs.py reads the files, draws the two figures and names the recipes that exist."""
from dataclasses import dataclass, field
from typing import Any, Optional

from fastmask.labels import describe
from fastmask.report.explain import class_deltas, flip_counts, flips, paired_rows, suggest

MAX_FLIP_ROWS = 8  # the flip table stays a glance; the chart shows every class


@dataclass
class Why:
    """The explanation of one child run against one parent run."""
    parent: str                  # the parent run's folder name
    images: int                  # validation images both runs predicted
    people: int
    seeds: list                  # the seeds paired (empty: one model a side)
    deltas: list                 # explain.ClassDelta per class with validation images
    fixed: Any                   # frames of the flipped images (first paired seed): the grid's input
    broken: Any
    counts: list                 # explain.flip_counts: (class, fixed, broken), most flips first
    suggestions: list = field(default_factory=list)
    recipes_dir: Optional[str] = None   # where the suggested recipes were looked for
    chart: Optional[str] = None  # file names of the figures drawn beside the card (None: not drawn)
    grid: Optional[str] = None


def explain(child, parent, parent_name, metrics, recipes, lineage=(), split=None, command=None, analysed=None):
    """The Why of validation predictions `child` against `parent` (path, person, label, pred[, seed]), or None
    when they share no image. Suggestions come from `analysed` (the child's rows the card's error analysis
    reads; default `child`) and `metrics`, naming only `recipes` outside `lineage`; `command(name)` is the line
    to paste for each."""
    pairs = paired_rows(child, parent)
    if not len(pairs):
        return None
    seeds = sorted(int(s) for s in pairs["seed"].unique()) if "seed" in pairs else []
    one = pairs[pairs["seed"] == seeds[0]] if len(seeds) > 1 else pairs  # each flipped image once
    fixed, broken = flips(one)
    tips = suggest(child if analysed is None else analysed, metrics, recipes, lineage, split, command)
    return Why(parent_name, int(pairs["path"].nunique()), int(pairs["person"].nunique()), seeds if len(seeds) > 1 else [],
               class_deltas(pairs), fixed, broken, flip_counts(one), tips)


def lines(why):
    """The card's "## Why" section in Markdown."""
    seeds = f"; {len(why.seeds)} paired seeds pooled" if why.seeds else ""
    out = ["## Why", "",
           f"Per-class F1 of this run minus the parent run `{why.parent}`'s, on the {why.images} validation images "
           f"both predicted ({why.people} people{seeds}); each interval is 95 % over a bootstrap of people.", ""]
    if why.chart:
        out += [f"![per-class F1 change against the parent]({why.chart})", ""]
    up = sorted((d for d in why.deltas if d.low > 0), key=lambda d: (-d.delta, d.cls))
    down = sorted((d for d in why.deltas if d.high < 0), key=lambda d: (d.delta, d.cls))
    if up or down:
        out += ["**Classes that moved beyond noise** (interval excludes 0):", ""]
        out += [f"- {word}: {describe(d.cls)} {d.delta:+.3f} [{d.low:+.3f}, {d.high:+.3f}] "
                f"(F1 {d.parent:.3f} → {d.child:.3f}, {d.support} images)"
                for word, ds in (("up", up), ("down", down)) for d in ds]
    else:
        out += ["**Classes that moved beyond noise:** none; every class's interval includes 0."]
    out += [""] + _flips(why) + _next(why)
    return out


def _flips(why):
    n_fixed, n_broken = len(why.fixed), len(why.broken)
    which = f" (seed {why.seeds[0]}, the first of the paired seeds)" if why.seeds else ""
    out = [f"**Flips{which}:** {n_fixed} validation images this run gets right that the parent got wrong (fixed), "
           f"{n_broken} the reverse (broken).", ""]
    if why.counts:
        out += ["| class | fixed | broken |", "|---|---|---|"]
        out += [f"| {name} | {f} | {b} |" for name, f, b in why.counts[:MAX_FLIP_ROWS]]
        out.append("")
        if len(why.counts) > MAX_FLIP_ROWS:
            out += [f"... and {len(why.counts) - MAX_FLIP_ROWS} more classes with flips (the chart shows every class).",
                    ""]
    if why.grid:
        out += [f"![validation images fixed and broken]({why.grid})", ""]
    return out


def _next(why):
    where = f" in `{why.recipes_dir}`" if why.recipes_dir else ""
    if not why.suggestions:
        return [f"**What to try next:** nothing measured here points to a recipe{where} that this run does not "
                "already descend from.", ""]
    out = [f"**What to try next** (from this run's own errors; recipes{where} this run does not descend from):", ""]
    for s in why.suggestions:
        out.append(f"- `{s.recipe}`: {s.why}." + (f" Run `{s.command}`" if s.command else ""))
    return out + [""]

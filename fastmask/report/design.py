"""Which design `--decide` trains: from the noise the first paired runs measured (report.plan) and what one model
costs, the cheapest design within the budget that can resolve the effect asked for (or, with none asked, the one
that resolves the smallest effect the budget allows), or none, with what would. Numbers in, numbers out."""
import math
from dataclasses import dataclass
from typing import Optional

from fastmask.report.plan import noise, plan, seed_mde
from fastmask.report.stats import ALPHA, half_width, spent_alpha

FOLDS = (3, 5, 10)
MAX_SEEDS = 100


@dataclass(frozen=True)
class Design:
    kind: str            # "seeds" (paired seeds on one split) or "kfold" (paired person folds)
    per_side: int        # models each side ends with: paired seeds, or folds
    new_models: int      # models still to train, both sides together
    minutes: float       # their expected minutes
    mde: float           # the smallest effect it decides at 80 % power
    assumed: bool        # training noise not yet measured (one seed): the MDE assumes it small

    @property
    def name(self):
        return f"kfold:{self.per_side}" if self.kind == "kfold" else f"{self.per_side} paired seeds"


def fold_minutes(per_model, folds, valid_pct=0.2):
    """Minutes of one fold's model: it trains on (folds - 1) / folds of the people, a single split's model on
    1 - valid_pct of them."""
    return per_model * ((folds - 1) / folds) / max(1 - valid_pct, 1e-9)


def options(v, per_model, have_seeds=1, parent_folds=(), child_folds=(), valid_pct=0.2, total_people=None,
            max_per_side=MAX_SEEDS):
    """Every design worth weighing, from verdict `v` (the first paired runs) and `per_model` minutes a model:
    paired seeds 2..max_per_side on this split (`have_seeds` paired already), and person k-fold at 3, 5 and 10
    folds on every person (a side whose k-fold run exists, `parent_folds` / `child_folds`, is reused)."""
    out = []
    p = plan(v, total_people=total_people)
    if p is None or "folds" in p:
        return out
    assumed = not p["seed_measured"]
    for k in range(max(have_seeds, 2), max_per_side + 1):
        out.append(Design("seeds", k, 2 * (k - have_seeds), 2 * (k - have_seeds) * per_model, seed_mde(v, k), assumed))
    for f, mde in (p.get("kfold") or {}).items():
        new = (0 if f in parent_folds else f) + (0 if f in child_folds else f)
        out.append(Design("kfold", f, new, new * fold_minutes(per_model, f, valid_pct), mde, assumed))
    return out


def choose(opts, effect=None, per_side=None, minutes=None):
    """(the design, why): with `effect`, the cheapest design within the budget (`per_side` models a side,
    `minutes`) whose MDE resolves it; without, the one with the smallest MDE the budget allows (the cheaper on a
    tie). None when nothing within the budget resolves `effect`."""
    fits = [o for o in opts if (per_side is None or o.per_side <= per_side) and (minutes is None or o.minutes <= minutes)]
    if effect is not None:
        ok = [o for o in fits if o.mde <= effect]
        if not ok:
            return None, "none within the budget resolves it"
        return min(ok, key=lambda o: (o.minutes, o.mde)), f"the cheapest that resolves {effect:.3f}"
    if not fits:
        return None, "the budget cannot train one more pair of models"
    return min(fits, key=lambda o: (round(o.mde, 4), o.minutes)), "the smallest effect the budget allows"


def what_would(opts, effect, v, total_people=None):
    """A sentence on what would resolve `effect` when the budget cannot: the cheapest design of all (any
    budget), the people a k-fold would need, a GPU."""
    ok = sorted((o for o in opts if o.mde <= effect), key=lambda o: o.minutes)
    parts = []
    if ok:
        parts.append(f"{ok[0].name} would ({ok[0].new_models} models, about {ok[0].minutes:.0f} min)")
    p = plan(v, effect=effect, total_people=total_people) or {}
    kf = p.get("kfold") or {}
    if kf and total_people:
        # k-fold's noise scales as 1/people: the people the 10-fold design would need for this effect
        need = int(math.ceil(total_people * (kf[10] / effect) ** 2))
        if need > total_people:
            parts.append(f"kfold:10 on about {need} people")
    parts.append("or the full data set on a GPU")
    return "; ".join(parts)


def plan_line(d: Optional[Design], effect=None, why=""):
    """The one line `--decide` prints before it trains."""
    if d is None:
        return f"decide: {why}"
    asked = f" (asked {effect:.3f})" if effect is not None else ""
    note = "; training noise not measured yet (one seed), assumed small" if d.assumed else ""
    return (f"decide: plan {d.name}: {d.per_side} model{'s' if d.per_side != 1 else ''} a side, {d.new_models} to train, "
            f"about {d.minutes:.0f} min; decides effects of {d.mde:.3f} or more{asked}: {why}{note}")


def futile(v, per_side):
    """True when `per_side` paired seeds can no longer decide at any plausible effect: the interval they would
    give is wider than the largest effect the current interval allows (so it cannot exclude 0) and than the
    no-effect band (so it cannot say "no effect" either). False until two seeds measured the training noise."""
    if not v or "person_se" not in v or v.get("seed_sd") is None or "low" not in v:
        return False
    n = noise(v)
    k = max(int(per_side), 2)
    hw = half_width(n["f_var"], n["d_var"] + n["g_var"], k, spent_alpha(k, v.get("alpha", ALPHA), v.get("max_seeds")))
    plausible = max(abs(v["low"]), abs(v["high"]))
    return hw >= plausible and hw > v.get("min_effect", 0.02)

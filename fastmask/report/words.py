"""The verdict in words: the card's verdict paragraph (`sentence`), the design it used (`design_text`), what
would decide it (`plan_lines`, also `fastmask plan`) and what to try when neither model learned (`advice`)."""
import math

from fastmask.report.plan import plan
from fastmask.report.stats import ALPHA, TASKS

_NOISE = ("The interval adds person noise (a bootstrap over the validation people, normal quantile) and training "
          "noise (the spread of the per-seed deltas, at least the per-person part the bootstrap measures, t quantile "
          "on k - 1 degrees of freedom) in quadrature.")


def design_text(alpha=ALPHA, max_seeds=None):
    if max_seeds and max_seeds >= 2:
        return (f"Sequential over paired seeds (looks at 2..{max_seeds} seeds): each look spends "
                f"{alpha:g}/{max_seeds - 1} = {alpha / (max_seeds - 1):.3g} of the error rate (a union bound, so "
                f"however many of the {max_seeds - 1} looks are taken, a false claim stays below {alpha:g}). " + _NOISE)
    return (f"Sequential over paired seeds, for any number of looks: the look at k seeds spends {alpha:g}/(k(k-1)) "
            f"of the error rate ({alpha / 2:.3g} at 2 seeds, {alpha / 6:.3g} at 3), which sums to {alpha:g}, so "
            f"re-judging as seeds come in keeps a false claim below {alpha:g}. " + _NOISE)


def advice(config):
    f = (config or {}).get("fields") or {}
    ep, lr = f.get("epochs"), f.get("lr")
    more = f"`--set epochs={max(2 * ep, 15)}`" if isinstance(ep, int) else "more `epochs`"
    other = "`--set lr=find`" if lr != "find" else "a fixed `lr` such as `--set lr=1e-3`"
    return (f"Train longer ({more}" + (f"; it was {ep}" if isinstance(ep, int) else "") + f") or try another "
            f"learning rate ({other}" + (f"; it was {lr}" if lr is not None else "")
            + ") before judging the hypothesis.")


def quantity_words(judged_on):
    if judged_on == "gap":
        return "the validation-holdout gap"
    return TASKS.get(judged_on or "macro_f1", ("macro F1",))[0]


def plan_lines(v, effect=None, total_people=None):
    """The plan in plain sentences: the card's "what would decide it" and `fastmask plan`."""
    if v and v.get("verdict") == "neither learned":
        return [v.get("advice") or advice({}), "More seeds or people cannot help until the models learn."]
    p = plan(v, effect, total_people)
    if p is None:
        return []
    e = p["effect"]
    if "folds" in p:
        return [f"These {p['folds']} folds detect about {p['mde']:.3f} (80 % power at {v.get('alpha', ALPHA):g}); "
                + (f"resolving {e:.3f} needs more folds (more people per model) or a larger data set."
                   if p["mde"] > e else f"that resolves {e:.3f}.")]
    units = "validation people" if v.get("units", "person") == "person" else "holdout images"
    if v.get("units", "person") == "person" and v.get("on") == "holdout":
        units = "holdout people"
    out = []
    seeds = f"{p['seeds']} paired seed{'s' if p['seeds'] > 1 else ''}"
    if p["mde"] is not None:
        verb = "detects" if p["seeds"] == 1 else "detect"
        out.append(f"To resolve {e:.3f} at 80 % power: {seeds} on {p['people']} {units} {verb} about {p['mde']:.3f}"
                   + ("." if p["seed_measured"] else " even before training noise is counted."))
    if not p["seed_measured"]:
        out.append(f"One seed cannot tell person noise from training noise (together: SE {p['person_se']:.3f}); "
                   f"a second paired seed measures the training noise, and only then can more seeds be planned.")
    elif p["seeds_needed"] is not None:
        out.append(f"Seeds: about {p['seeds_needed']} paired seeds on these {p['people']} {units} would resolve "
                   f"{e:.3f}.")
    elif p["seed_floor"] > e:
        out.append(f"Seeds alone cannot get below {p['seed_floor']:.3f}: person noise alone gives SE "
                   f"{p['person_se']:.3f} with {p['people']} {units}.")
    else:
        out.append(f"Seeds: more than {p['max_seeds'] or 100} paired seeds would be needed on these {units}.")
    if p["people_needed"] is not None:
        out.append(f"People: about {p['people_needed']} {units} with {p['people_seeds']} paired seeds would resolve "
                   f"{e:.3f}"
                   + ("" if p["seed_measured"] else ", if training noise is small") + ".")
    else:
        out.append(f"People: with {p['people_seeds']} paired seeds, training noise alone (SD {p['seed_sd'] or 0:.3f} a "
                   f"seed) is too large for {e:.3f} however many people validate; add seeds as well.")
    if p.get("kfold"):
        kf = ", ".join(f"kfold:{f} about {m:.3f}" for f, m in p["kfold"].items())
        reach = (f"kfold:{p['kfold_reaches']} would resolve {e:.3f}" if p["kfold_reaches"]
                 else f"none of them resolves {e:.3f} on this data")
        out.append(f"k-fold on all {p['total_people']} people (each validates once; one paired t-test over the folds): "
                   f"{kf}; {reach}" + ("" if p["seed_measured"] else " (if training noise is small)") + ".")
    return out


def sentence(v, provisional=False, command=None):
    if v is None or "delta" not in v:
        return ("**Verdict: cannot compare** — the runs validated on other images (another split, seed or "
                "data) and have no shared holdout predictions, so no paired test is possible.")
    tail = (" *Provisional*: a model was still improving at its last epoch, so this verdict holds for "
            "this training budget only." if provisional else "")
    q = quantity_words(v.get("quantity"))
    on = v.get("on", "validation")
    gap = v.get("quantity") == "gap"
    where = ("" if gap else "on the holdout, since the runs validated on different images" if on == "holdout"
             else "on validation")
    units = "people" if v.get("units", "person") == "person" else "images"
    what = (f"the gap |validation - holdout macro F1| {'shrank' if v['delta'] >= 0 else 'grew'} by "
            f"{abs(v['delta']):.3f} against the parent's (delta {v['delta']:+.3f}: positive is a smaller gap)"
            if gap else f"{q} {v['delta']:+.3f} against the parent {where}".rstrip())
    if v["verdict"] == "neither learned":
        ch = v.get("chance") or {}
        c, p = ch.get("child", [math.nan] * 3), ch.get("parent", [math.nan] * 3)
        return (f"**Verdict: none — neither model learned.** Validation macro F1 {c[0]:.3f} (the child) and "
                f"{p[0]:.3f} (the parent) are within noise of a chance-level predictor ({c[1]:.3f} and {p[1]:.3f}: "
                f"the same predictions shuffled against the labels; person-bootstrap SE {c[2]:.3f} and "
                f"{p[2]:.3f}), so the difference ({what}) says nothing about the hypothesis. "
                f"{v.get('advice') or ''}".rstrip() + tail)
    if v.get("method") == "folds":
        deltas = ", ".join(f"{x:+.3f}" for x in v["deltas"])
        return (f"**Verdict: {v['verdict']}** — mean {q} {v['delta']:+.3f} against the parent over "
                f"{v['folds']} folds (per fold: {deltas}); paired t-test p = {v['p']:.3g}, "
                f"{v['level']:.0%} interval [{v['low']:+.3f}, {v['high']:+.3f}] (supported when p < {v['alpha']:g} "
                f"and the mean is above 0, refuted when p < {v['alpha']:g} and below); the child won "
                f"{v['wins']} of {v['folds']} folds and lost {v['losses']} (sign test p = {v['sign_p']:.3g})." + tail)
    interval = f"[{v['low']:+.3f}, {v['high']:+.3f}]"
    k = v.get("seeds", 1)
    if v["verdict"] == "unreplicated":
        decides = (f" `{command}` decides it." if command else
                   " Paired seeds decide it (`--decide`).")
        return (f"**Unreplicated** — {what}, from one seed of each; {v['level']:.0%} interval {interval} over "
                f"{v['people']} {units}, but one seed cannot claim: training noise (another seed can move {q} "
                f"by as much) is not in it." + decides + tail)
    if v["person_se"] < 5e-4 and v.get("bootstrap_se"):  # the fixed-person part estimated at 0 (clipped)
        person = (f"no person noise beyond the seeds' own: the person bootstrap's SE {v['bootstrap_se']:.3f} over "
                  f"{v['people']} {units} is all seed-to-seed")
    else:
        person = f"person SE {v['person_se']:.3f} from {v['people']} {units}"
    noise = f"{person}, seed SD {v['seed_sd']:.3f} over {k} paired seeds"
    if (v.get("training_sd") or 0) > v["seed_sd"] + 5e-4:
        noise += f" (counted as {v['training_sd']:.3f}: the per-person part of training noise alone is that large)"
    rule = (f"supported when the whole interval is above 0, refuted when below, no effect when it lies inside "
            f"±{v['min_effect']:g}")
    word = (f"no effect as large as {v['min_effect']:g}" if v["verdict"] == "no effect" else v["verdict"])
    per_seed = ", ".join(f"{x:+.3f}" for x in v.get("seed_deltas", []))
    out = (f"**Verdict: {word}** — {what}, mean of {k} paired seeds (per seed: {per_seed}); "
           f"{v['level']:.1%} interval {interval} ({noise}; {rule}).")
    if v["verdict"] == "supported" and v["high"] < v["min_effect"]:
        out += f" The gain is real but may be smaller than {v['min_effect']:g}."
    if v["verdict"] == "refuted" and v["low"] > -v["min_effect"]:
        out += f" The loss is real but may be smaller than {v['min_effect']:g}."
    if v.get("mde") is not None:
        out += f" The smallest effect this detects (80 % power) is about {v['mde']:.3f}."
    if v["verdict"] == "inconclusive" and command:
        out += f" `{command}` adds paired seeds until it decides."
    return out + tail


def decision_lines(d):
    """What --decide trained and why it stopped (metrics.json's "decision"), for the card: the design, the reason,
    the minutes, and where the final verdict lives when it is another run (a k-fold design's child run)."""
    if not isinstance(d, dict) or not d.get("reason"):
        return []
    design = d.get("design") or "no design within the budget"
    run = d.get("final_run")
    where = f"; the verdict of that design is on [{run}](../{run}/card.md)" if run else ""
    minutes = f"; {d['minutes']:.1f} min spent" if isinstance(d.get("minutes"), (int, float)) else ""
    return [f"**--decide.** {design}: stopped because {d['reason']}{minutes}{where}.", ""]

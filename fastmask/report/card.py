"""card.md: what was tested, what changed, what came out against the parent's latest comparable run, where
the errors are, and how to reproduce it. Plain Markdown (headings, tables, lists, images) that renders on
any git host and in `fastmask.board`'s index.html."""
from pathlib import Path

import numpy as np

from fastmask.labels import AGE_BANDS, N_CLASSES, TASKS, decode, describe, per_class
from fastmask.report.figures import FIGURES, values
from fastmask.report.judgement import run_command
from fastmask.report.why import lines as why_lines
from fastmask.report.words import decision_lines, plan_lines, sentence
from fastmask.store.folder import PLOTS, TOP_LOSSES
from fastmask.store.index import setup
from fastmask.store.run_folder import fold_scores_in

VERSIONS = ("python", "torch", "fastai", "timm")


def headline(metrics, name=None, status=None):
    """One line: validation (and k-fold, holdout) macro F1 and the verdict against the parent."""
    def f(k):
        return f"{metrics[k]:.3f}" if isinstance(metrics.get(k), (int, float)) else "—"
    line = (f"{name} " if name else "") + (f"[{status}]: " if status else ("" if not name else ": "))
    folds = fold_scores_in(metrics)
    if folds:
        line += (f"CV macro F1 {np.mean(folds):.3f} ± {np.std(folds, ddof=1) if len(folds) > 1 else 0:.3f} over "
                 f"{len(folds)} folds, pooled out-of-fold {f('macro_f1')}, accuracy {f('accuracy')}")
    else:
        line += f"validation macro F1 {f('macro_f1')}, accuracy {f('accuracy')}"
    if "holdout_macro_f1" in metrics:
        line += f"; holdout macro F1 {f('holdout_macro_f1')}, accuracy {f('holdout_accuracy')}"
        if metrics.get("holdout_models"):
            line += f" (soft vote of {len(metrics['holdout_models'])} fold models)"
    v = metrics.get("verdict")
    if v:
        line += f"; vs parent: {v['verdict']}"
        if "delta" in v:
            line += f" ({v['delta']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}])"
    return line


def render(this, judgement, status, plots=(), top_losses=None, why=None, notebook=None, archived=()):
    """card.md's Markdown, a pure function of what it is given: `this` run's RunFolder (config, metrics,
    history, validation predictions, minutes), its `judgement` against the parent (verdict.judge), the
    run `status`, the names of the `plots` drawn beside it, `top_losses` (how many images top_losses.png
    shows, or why it was not drawn), the `why` against the parent run (report.why.Why, or None), the run's
    `notebook` (store.notebook.Notebook, or None) and the names of the `archived` runs among its evidence.
    It leads with its answer: hypothesis, verdict, the next step's command, then the figures and the rest."""
    cfg, metrics, j = this.config, this.metrics, judgement
    par, v, rising = j.parent, j.verdict, j.rising
    pcfg, pm = (par.config, par.metrics) if par else ({}, {})
    vp = analysed_rows(this.valid)
    lines = [f"# {cfg['name']}  ({status})", "", f"**Hypothesis.** {cfg.get('hypothesis') or '(no docstring)'}", ""]
    if par:
        lines += [sentence(v, provisional=bool(rising), command=getattr(j, "command", None)), ""]
        if rising:
            lines += [f"Still improving at the last epoch: {' and '.join(rising)} (validation macro F1 rose by "
                      "more than 0.005 in the last epoch); try more `epochs` before trusting the verdict.", ""]
        lines += decision_lines(metrics.get("decision")) + _next_step(v, cfg)
    elif cfg.get("parent"):
        lines += _no_parent(cfg, j.other_fingerprints, Path(this.dir).parent)
    if cfg.get("parent"):
        change = ", ".join(f"`{k}`: {a!r} → {b!r}" for k, (a, b) in (cfg.get("changed") or {}).items()) or "none"
        lines += [f"**Parent.** `{cfg['parent']}`  **Change.** {change}", ""]
    else:
        lines += ["**Parent.** none: this recipe is a root, so there is no verdict.", ""]
    if cfg.get("overrides"):
        lines += ["**Overrides (--set).** " + ", ".join(f"`{k}={v!r}`" for k, v in cfg["overrides"].items()), ""]
    lines += _relabel(cfg)
    lines += _face_boxes(metrics)

    lines += ["## Result", ""]
    lines += _result_table(_flat(metrics, this.minutes), _flat(pm, par.minutes) if par else None, par)
    lines += _folds_table(this.fold_scores, par.fold_scores if par else None,
                          paired=bool(v and v.get("method") == "folds"), status=metrics.get("fold_status"))
    lines += _seed_noise(metrics)
    if par:
        lines += _evidence(j, archived)
    notes = _comparability(cfg, pcfg) if par else []
    notes += _own_flags(cfg)
    if notes:
        lines += ["**Comparability.**", ""] + [f"- {n}" for n in notes] + [""]
    if "holdout_macro_f1" in metrics and isinstance(metrics.get("macro_f1"), (int, float)):
        gap = metrics["macro_f1"] - metrics["holdout_macro_f1"]
        lines += [f"Validation minus holdout macro F1: {gap:+.3f}"
                  + (" — validation is optimistic: does the split leak people?" if gap > 0.05 else "."), ""]
    lines += notes_lines(notebook)
    if why is not None:
        lines += why_lines(why)

    lines += ["## Error analysis", ""]
    lines += _per_task(metrics, pm if par else None)
    if vp is not None:
        lines += _weakest_classes(metrics, vp) + _confused_pairs(vp) + _age_bands(vp)
        lines += _top_losses(top_losses)
    else:
        lines += ["No valid_preds.csv: the class, pair, age and top-loss analyses need it.", ""]

    shown = [(n, alt) for n, alt in PLOTS if n in plots]
    if shown:
        lines += ["## Plots", ""] + [x for n, alt in shown for x in (f"![{alt}]({n})", "")]
    lines += _reproducibility(cfg, metrics.get("lr_used", cfg.get("lr_used")))
    return "\n".join(lines)


def notes_lines(book):
    """The card's "## Notes": the run's tags, whether it is archived, and its notes, oldest first (what people
    wrote after training with `fastmask note`, `tag` and `archive`); nothing without any."""
    if book is None or not (book.notes or book.tags or book.archived):
        return []
    out = ["## Notes", ""]
    if book.tags:
        out += ["**Tags.** " + " ".join(f"`{t}`" for t in book.tags), ""]
    if book.archived:
        a = book.archived
        out += [f"**Archived** {a.get('at')} by {a.get('user')}@{a.get('host')}: hidden from the board; no file "
                "was deleted.", ""]
    for n in book.notes:
        text = str(n.get("text", "")).strip().replace("\n", "\n  ")  # a note's own lines stay in its list item
        out.append(f"- {n.get('at')}, {n.get('user')}@{n.get('host')}: {text}")
    return out + ([""] if book.notes else [])


# --- pieces ---------------------------------------------------------------------------------------

def _next_step(v, cfg):
    """When the verdict did not decide, what would: the plan from the measured noise (or the advice)."""
    if v and v.get("verdict") not in ("supported", "refuted", "no effect"):
        plan = plan_lines(v, total_people=cfg.get("n_people"))
        if plan:
            return ["**What would decide it.**", ""] + [f"- {line}" for line in plan] + [""]
    return []


def _evidence(j, archived=()):
    """Which runs the verdict pooled (archived ones stay in it), and the sequential design it used (folded)."""
    v, out = j.verdict or {}, []
    kids, parents = getattr(j, "child_runs", []), getattr(j, "parent_runs", [])
    if len(kids) > 1 or len(parents) > 1:
        out += [f"**Evidence.** {len(kids)} run(s) of this setup and {len(parents)} of the parent's, paired seed by "
                f"seed: {', '.join(f'`{k}`' for k in kids)} against {', '.join(f'`{p}`' for p in parents)}.", ""]
    for name in archived:
        out += [f"The parent run `{name}` is archived; it stays evidence for this verdict.", ""]
    if v.get("design"):
        # a blank line after <summary> so git hosts render the paragraph inside as Markdown
        out += ["<details><summary>Design</summary>", "", f"**Design.** {v['design']}", "", "</details>", ""]
    return out


def analysed_rows(vp):
    """The validation predictions the error analyses read (path, label, pred; with replicates, every image
    appears once per seed and the analyses read the first seed's), or None."""
    return _first_seed(vp if vp is not None and {"path", "label", "pred"} <= set(vp.columns) and len(vp) else None)


def _first_seed(vp):
    """With replicates, valid_preds.csv holds every image once per seed: the analyses read the first seed."""
    if vp is None or "seed" not in vp:
        return vp
    return vp[vp["seed"] == vp["seed"].iloc[0]]


def _seed_noise(m):
    rep = m.get("replicates")
    if not rep:
        return []
    scores = ", ".join(f"{x:.3f}" for x in rep["macro_f1"])
    return [f"**Seeds.** {len(rep['seeds'])} seeds on one split (validation macro F1 {scores}): "
            f"mean {m['macro_f1']:.3f}, standard deviation {m['seed_std']:.3f} — differences smaller than "
            "that are training noise.", ""]


def _flat(m, minutes):
    out = values(m)
    folds = fold_scores_in(m)  # the card recomputes the k-fold mean from the fold scores, not metrics.json's cv_mean
    out["cv_mean"] = float(np.mean(folds)) if folds else None
    out["minutes"] = minutes
    return out


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(v, spec=".3f"):
    if not _num(v):
        return "—" if v is None else str(v)
    return format(int(v), "d") if spec == "d" else format(v, spec)


def _result_table(mine, theirs, par):
    head = "| | this run |" + (f" parent ({par.name}) | delta |" if par else "")
    pooled = mine.get("cv_mean") is not None
    out = [head, "|---|---|" + ("---|---|" if par else "")]
    for key, label, spec in ((f.key, f.label, f.spec) for f in FIGURES):
        a, b = mine.get(key), (theirs or {}).get(key)
        if a is None and b is None:
            continue
        if pooled:
            label = label.replace("validation", "out-of-fold")
        row = f"| {label} | {_fmt(a, spec)} |"
        if par:
            delta = "—" if not (_num(a) and _num(b)) else format(a - b, "+d" if spec == "d" else "+" + spec)
            row += f" {_fmt(b, spec)} | {delta} |"
        out.append(row)
    return out + [""]


def _folds_table(mine, theirs, paired, status=None):
    if not mine:
        return []
    ids = list(range(len(mine)))
    if isinstance(status, dict):  # scores are kept for the folds that did not fail
        kept = sorted((int(k) for k, v in status.items() if v != "failed"))
        ids = kept if len(kept) == len(mine) else ids
    out = ["| fold | this run |" + (" parent | delta |" if paired else ""), "|---|---|" + ("---|---|" if paired else "")]
    for i, a in zip(ids, mine):
        out.append(f"| {i} | {a:.3f} |" + (f" {theirs[i]:.3f} | {a - theirs[i]:+.3f} |" if paired else ""))
    if isinstance(status, dict):
        failed = sorted(int(k) for k, v in status.items() if v == "failed")
        out += [f"| {i} | failed |" + (" | |" if paired else "") for i in failed]
    out.append("")
    if theirs and not paired:
        out += [f"The parent's run has {len(theirs)} fold scores (mean {np.mean(theirs):.3f}), but its folds are not "
                "the same people, or some folds failed: no per-fold pairing.", ""]
    return out


def _rerun_command(cfg, recipe_name, runs=None):
    """The command that trains the parent `recipe_name` for this run's verdict, to paste from any folder: its
    recipe file (beside this run's), this run's --set overrides (--decide's aside), --data and --runs."""
    mine = cfg.get("recipe_file")
    parent = cfg.get("parent_file") or (str(Path(mine).with_name(f"{recipe_name}.py")) if mine
                                        else f"recipes/{recipe_name}.py")
    return run_command(cfg, runs, recipe=parent, drop=("decide",))


def _face_boxes(metrics):
    """Where a face crop's boxes came from: masks hide faces from the detector."""
    s = metrics.get("face_boxes") if isinstance(metrics.get("face_boxes"), dict) else None
    if not s:
        return []
    n = sum(int(v) for v in s.values()) or 1
    parts = [f"{int(s.get(k, 0))} ({100 * int(s.get(k, 0)) / n:.0f} %) {what}" for k, what in
             (("detected", "detected"), ("person", "from the person's other photos"), ("typical", "the typical box"))]
    return [f"**Face crop.** Boxes for the {n} photos: " + ", ".join(parts) + ".", ""]


def _relabel(cfg, shown=12):
    """The data folder's corrections: scores are on them; training is only with relabel=True."""
    r = cfg.get("relabel") if isinstance(cfg.get("relabel"), dict) else None
    if not r or not r.get("corrections"):
        return []
    fixes = r["corrections"]
    trained = (cfg.get("fields") or {}).get("relabel")
    # distinct photos: rows that repeat one or name a person and one of their photos count a photo once (a
    # config.json from before that count was kept has no figure to show)
    images = f" ({r['images']} images)" if isinstance(r.get("images"), int) else ""
    out = [f"**Relabelled.** {len(fixes)} correction(s) from `{r.get('file')}`{images}: "
           "validation and holdout are scored on them; "
           + ("this run trained on them (relabel=True)." if trained else "this run trained on the labels given "
              "(relabel=False)."), ""]
    out += [f"- line {c.get('line')}: `{c.get('id')}` {c.get('field')} {c.get('from')!r} → {c.get('to')!r}"
            + (f" ({c['note']})" if c.get("note") else "") for c in fixes[:shown]]
    if len(fixes) > shown:
        out.append(f"- ... and {len(fixes) - shown} more (config.json's relabel)")
    return out + [""]


def _no_parent(cfg, other_fingerprints, runs=None):
    out = [f"**No comparable run of the parent `{cfg['parent']}`** (finished, on this data): no verdict yet. "
           f"Make one with `{_rerun_command(cfg, cfg['parent'], runs)}`, then rerun this recipe.", ""]
    if other_fingerprints:
        out += [f"The parent has {len(other_fingerprints)} finished run(s) on other data (fingerprint "
                f"{', '.join(sorted(set(other_fingerprints)))}); "
                "a verdict never compares runs across data sets.", ""]
    return out


def _comparability(cfg, pcfg):
    notes = []
    # seeds (--decide's pairs) and how a run is judged do not make it another setup (index.setup)
    if setup(pcfg.get("fields")) != setup(cfg.get("parent_fields")):
        notes.append("the parent's run used other field values than this run's parent "
                     "(different --set overrides); the comparison is not like for like.")
    if pcfg.get("data_fingerprint") != cfg.get("data_fingerprint"):
        notes.append(f"**data differs**: the parent ran on fingerprint `{pcfg.get('data_fingerprint')}`, "
                     f"this run on `{cfg.get('data_fingerprint')}`.")
    me, them = cfg.get("environment") or {}, pcfg.get("environment") or {}
    diff = [f"{k} {them.get(k)} → {me.get(k)}" for k in VERSIONS if them.get(k) != me.get(k)]
    if diff:
        notes.append("**package versions differ** from the parent's run: " + ", ".join(diff) + ".")
    if me.get("commit") and them.get("commit") and me["commit"] != them["commit"]:
        notes.append(f"the code changed between the runs (commit `{them['commit']}` → `{me['commit']}`): "
                     "part of the difference may come from the code, not the recipe.")
    if them.get("dirty"):
        notes.append("the parent's run had uncommitted changes in the working tree.")
    return notes


def _own_flags(cfg):
    env = cfg.get("environment") or {}
    if env.get("dirty"):
        return [f"this run had uncommitted changes: commit `{env.get('commit')}` alone does not reproduce it."]
    return []


def _per_task(m, pm):
    out = ["| task | validation F1 | holdout F1 |" + (" parent validation F1 |" if pm is not None else ""),
           "|---|---|---|" + ("---|" if pm is not None else "")]
    for t in TASKS:
        row = f"| {t} | {_fmt(m.get(f'{t}_f1'))} | {_fmt((m.get('holdout_task_f1') or {}).get(t))} |"
        out.append(row + (f" {_fmt(pm.get(f'{t}_f1'))} |" if pm is not None else ""))
    return out + [""]


def _weakest_classes(m, vp, k=5):
    per = per_class(m)  # keyed by class name (older runs: "0".."17")
    support = vp["label"].value_counts()
    present = [c for c in range(N_CLASSES) if support.get(c, 0) > 0 and c in per]
    if not present:
        return []
    worst = sorted(present, key=lambda c: (per[c], c))[:k]
    out = ["**Weakest classes** (validation F1, classes present in validation):", "",
           "| class | F1 | validation images |", "|---|---|---|"]
    out += [f"| {describe(c)} | {per[c]:.3f} | {int(support[c])} |" for c in worst]
    missing = N_CLASSES - len(present)
    return out + [""] + ([f"{missing} classes have no validation image.", ""] if missing else [])


def _wrong_tasks(t, p):
    return [name for name, a, b in zip(TASKS, decode(int(t)), decode(int(p))) if a != b]


def _confused_pairs(vp, k=5):
    wrong = vp[vp["label"] != vp["pred"]]
    if not len(wrong):
        return ["**Most confused pairs:** none — every validation image is right.", ""]
    support = vp["label"].value_counts()
    people = "person" in vp
    g = wrong.groupby(["label", "pred"]).agg(images=("path", "size"),
                                            people=("person", "nunique") if people else ("path", "size"))
    g = g.sort_values("images", ascending=False, kind="stable").head(k)
    out = [f"**Most confused pairs** ({len(wrong)} of {len(vp)} validation images wrong):", ""]
    for (t, p), r in g.iterrows():
        who = f" of {r.people} {'person' if r.people == 1 else 'people'}" if people else ""
        out.append(f"- {describe(t)} read as {describe(p)}: {r.images} images{who} "
                   f"({r.images / support[t]:.0%} of that class; {' and '.join(_wrong_tasks(t, p))} wrong)")
    return out + [""]


def _age_bands(vp):
    if "age" not in vp:
        return ["**Near the age boundaries:** valid_preds.csv has no `age` column, so this analysis is skipped.", ""]
    y, p = vp["label"].to_numpy(int), vp["pred"].to_numpy(int)
    age_wrong = decode(y)[2] != decode(p)[2]
    wrong = y != p
    out = ["**Near the age boundaries** (validation images; the age group changes at 30 and 60):", "",
           "| ages | images | people | error rate | age-group error rate |", "|---|---|---|---|---|"]
    for lo, hi, _ in AGE_BANDS:
        sel = ((vp["age"] >= lo) & (vp["age"] <= hi)).to_numpy()
        n = int(sel.sum())
        ppl = vp.loc[sel, "person"].nunique() if "person" in vp else "—"
        rates = f"{wrong[sel].mean():.0%} | {age_wrong[sel].mean():.0%}" if n else "— | —"
        out.append(f"| {lo}-{hi} | {n} | {ppl} | {rates} |")
    ppl = vp["person"].nunique() if "person" in vp else "—"
    out.append(f"| all | {len(vp)} | {ppl} | {wrong.mean():.0%} | {age_wrong.mean():.0%} |")
    return out + [""]


def _top_losses(shown):
    if isinstance(shown, str):
        return [f"**Top losses:** not drawn ({shown}).", ""]
    if not shown:
        return []
    return [f"**Top losses:** the {shown} validation images with the lowest probability of their true label.", "",
            f"![top losses]({TOP_LOSSES})", ""]


def _reproducibility(cfg, lr_used):
    env, fields = cfg.get("environment") or {}, cfg.get("fields") or {}
    commit = env.get("commit")
    state = "unknown" if commit is None else f"`{commit}`" + (" (uncommitted changes)" if env.get("dirty") else " (clean)")
    split = fields.get("split")
    if split in ("person", "random"):
        split = f"{split}, valid_pct {fields.get('valid_pct')}"
    rows = [("commit", state), ("seed", fields.get("seed")), ("split", split),
            ("data", f"`{cfg.get('data')}`" if cfg.get("data") else None),
            ("data fingerprint", f"`{cfg.get('data_fingerprint')}`" if cfg.get("data_fingerprint") else None),
            ("images / people", f"{cfg['n_images']} / {cfg.get('n_people')}" if cfg.get("n_images") else None),
            ("learning rate used", lr_used),
            ("versions", ", ".join(f"{k} {env[k]}" for k in VERSIONS if env.get(k)) or None)]
    out = ["## Reproducibility", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows if v is not None]
    out.append("")
    if env.get("command"):
        out += ["Command:", "", "```", env["command"], "```", ""]
    return out


"""card.md written from a run folder: the card's words (report.card) with what it reads beside the run's
records: the Why against the parent run (report.why; its two figures drawn here), the run's notebook and
whether its evidence is archived. `rewrite_card` regenerates the card alone after `fastmask note`, `tag` or
`archive`, from what is on disk. Nothing here imports torch or matplotlib at module level (the figures'
module loads when drawing): those commands stay quick."""
import fcntl
import os
import re
import warnings
from pathlib import Path

import fastmask
from fastmask.errors import FastmaskError, one_line
from fastmask.io import atomic_write
from fastmask.labels import N_CLASSES
from fastmask.report import card, why
from fastmask.report.judgement import Judgement, judge, run_command, still_improving
from fastmask.store import notebook
from fastmask.store.folder import CARD, CLASS_DELTA_PLOT, FLIPS_PLOT, METRICS, PLOTS, TOP_LOSSES, read_json
from fastmask.store.index import finished
from fastmask.store.run_folder import RunFolder, is_run


def card_text(this, judgement, status, plots_drawn, top_losses, runs_dir, draw=True):
    """card.render with what the card reads beside the run's records: its Why against the parent run (the two
    figures drawn when `draw`, else those already beside the card), its notebook and the archived evidence."""
    archived = [n for n in judgement.parent_runs if getattr(_book(Path(runs_dir) / n), "archived", None)]
    w = explain_verdict(this, judgement, runs_dir, draw)
    return card.render(this, judgement, status, plots_drawn, top_losses, why=w, notebook=_book(this.dir),
                       archived=archived)


def _book(d):
    try:
        return notebook.read(d)
    except FastmaskError as e:  # a damaged notebook costs the card its notes, never the run its card
        warnings.warn(str(e))
        return None


def explain_verdict(this, judgement, runs_dir, draw=True):
    """The card's Why (report.why) against the judgement's parent run, or None when there is none or either
    run has no validation predictions. Guarded: an odd file or frame leaves the section out, never fails the
    run."""
    par, w = judgement.parent, None
    try:
        if par is not None and this.valid is not None and par.valid is not None:
            cfg = this.config
            folder, names = recipe_folder(cfg)
            command = lambda name: run_command(cfg, runs_dir, recipe=folder / f"{name}.py", drop=("decide",))
            w = why.explain(this.valid, par.valid, par.name, this.metrics, names, lineage(cfg, par, folder),
                            split=(cfg.get("fields") or {}).get("split"), command=command,
                            analysed=card.analysed_rows(this.valid))
            if w is not None:
                w.recipes_dir = str(folder)
    except Exception as e:  # noqa: BLE001  (the explanation is an extra: a run never fails for it)
        warnings.warn(f"explaining the verdict against {par.name}: {one_line(e)}")
        w = None
    if draw:
        drawn = draw_why(this.dir, w)
    else:
        drawn = [n if (this.dir / n).is_file() else None for n in (CLASS_DELTA_PLOT, FLIPS_PLOT)]
    if w is not None:
        w.chart, w.grid = drawn
    return w


def draw_why(d, w):
    """class_delta.png and flips.png in run folder `d` for Why `w`: the names drawn (None where not). A figure
    not drawn (no Why, nothing to show, an error) is removed, so none from an earlier parent run stays."""
    out = []
    for name in (CLASS_DELTA_PLOT, FLIPS_PLOT):
        try:
            if w is not None:
                from fastmask.report import delta_plots  # matplotlib: only when there is something to draw
                shown = (delta_plots.save_class_deltas(w.deltas, d / name, parent=w.parent) if name == CLASS_DELTA_PLOT
                         else delta_plots.save_flips(w.fixed, w.broken, d / name))
                if shown:
                    out.append(name)
                    continue
            (d / name).unlink(missing_ok=True)
        except Exception as e:  # noqa: BLE001  (a figure that cannot be drawn is left out)
            warnings.warn(f"{d / name}: {one_line(e)}")
        out.append(None)
    return out


def recipe_folder(cfg):
    """The folder of the run's recipe file (config.json's recipe_file; else the package's recipes/) and the
    names of the recipes in it: what a suggestion may name."""
    mine = Path(cfg["recipe_file"]).parent if cfg.get("recipe_file") else None
    folder = mine if mine is not None and mine.is_dir() else Path(fastmask.__file__).resolve().parent.parent / "recipes"
    return folder, sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def lineage(cfg, parent, folder):
    """The recipes run `cfg` descends from (itself included): its name, its parent, the parent run's parent,
    and up the recipe files in `folder`, each naming its parent by importing it (`from recipes.X import`)."""
    names = {n for n in (cfg.get("name"), cfg.get("parent"), parent.config.get("parent")) if n}
    todo = list(names)
    while todo:
        try:
            text = (folder / f"{todo.pop()}.py").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for up in re.findall(r"^from recipes\.(\w+) import", text, re.M):
            if up not in names:
                names.add(up)
                todo.append(up)
    return names


def rewrite_card(run_dir, runs_dir=None):
    """Write card.md again from what the run folder holds (after `fastmask note`, `tag` or `archive`). card.md
    is a generated view of the run's records, so regenerating it loses nothing; nothing else is written: not
    metrics.json, config.json or any figure, and the verdict is the one metrics.json recorded, not re-judged.
    Returns the card's path, or None when the run has no card yet (training writes it last, notes included)."""
    d = Path(run_dir)
    if not (d / CARD).is_file():
        return None
    runs_dir = Path(runs_dir) if runs_dir else d.parent
    fd = os.open(d, os.O_RDONLY)
    try:
        # two notes at once: each rewrite reads the notebook and writes the card whole before the other starts,
        # so the last card written holds both notes
        fcntl.flock(fd, fcntl.LOCK_EX)
        this = RunFolder(d)
        vp = card.analysed_rows(this.valid)
        shown = (min(16, len(vp)) if vp is not None and (d / TOP_LOSSES).is_file()
                 and {f"p{i}" for i in range(N_CLASSES)} <= set(vp.columns) else None)  # as draw_top_losses drew it
        text = card_text(this, recorded(this, runs_dir), this.status_json.get("status", "finished"),
                         [n for n, _ in PLOTS if (d / n).exists()], shown, runs_dir, draw=False)
        atomic_write(d / CARD, text)
    finally:
        os.close(fd)
    return d / CARD


def citing(run_dir):
    """The run folders beside `run_dir` whose recorded verdict pooled it as the parent's evidence."""
    d = Path(run_dir)
    def pooled(e):
        v = (read_json(e / METRICS, {}) or {}).get("verdict")
        return isinstance(v, dict) and isinstance(v.get("parent_runs"), list) and d.name in v["parent_runs"]
    return [e for e in sorted(d.parent.iterdir()) if e != d and e.is_dir() and is_run(e) and pooled(e)]


_ENTRY = ("parent_run", "child_runs", "parent_runs", "provisional", "command")  # what Judgement.entry adds


def recorded(this, runs_dir):
    """The Judgement metrics.json recorded for `this`, rebuilt without re-judging (a note never moves a verdict;
    `rejudge` does, and rewrites metrics.json with it). Judged afresh only when the recorded parent run is gone."""
    e = this.metrics.get("verdict")
    cfg = this.config
    if not isinstance(e, dict) or not e.get("parent_run"):
        other = [str(r.config.get("data_fingerprint")) for r in finished(runs_dir, name=cfg["parent"])
                 if r.config.get("data_fingerprint") != cfg.get("data_fingerprint")] if cfg.get("parent") else []
        return Judgement(other_fingerprints=other)
    par = RunFolder(Path(runs_dir) / e["parent_run"])
    if not par.config:
        return judge(this, runs_dir)
    v = {k: x for k, x in e.items() if k not in _ENTRY}
    rising = [who for who, h in (("this run", this.history), ("the parent's run", par.history)) if still_improving(h)]
    return Judgement(par, None if v == {"verdict": "cannot compare"} else v, rising, child_runs=e.get("child_runs", []),
                     parent_runs=e.get("parent_runs", []), command=e.get("command"))

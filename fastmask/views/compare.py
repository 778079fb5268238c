"""Run against run (`fastmask compare RUN_A RUN_B ...`): the first run is the reference, and every other run is
set beside it: the recipe fields that differ, the figures with their difference, the paired test of
`verdict.compare` when the two predicted the same images (folds, else a bootstrap over validation people, else
over holdout people), per-class F1 side by side, each run's tags and notes, and the learning curves overlaid
(validation macro F1 and loss per epoch; several folds or seeds: their mean) in a PNG."""
import json
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fastmask.errors import FastmaskError, one_line
from fastmask.labels import CLASS_NAMES
from fastmask.report.figures import BY_KEY, COMPARED, Figure, values
from fastmask.report.judgement import judge
from fastmask.report.verdict import compare as paired_test
from fastmask.report.words import sentence
from fastmask.store import notebook
from fastmask.store.folder import CONFIG, STATUS
from fastmask.store.index import parent_side, same_setup
from fastmask.store.run_folder import RunFolder, fold_scores_in, is_run

# (key in the flattened metrics, label) of the figures compare shows: report.figures' table, as the board reads it
METRICS = [(f.key, f.label) for f in COMPARED]
CURVES = ("macro_f1", "valid_loss")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Comparison:
    runs: list          # RunFolders, the reference first
    diff: dict          # {field: [value per run]} for the config fields that differ
    metrics: list       # [(key, label, [value or None per run])], rows where some run has a number
    verdicts: list      # per run after the first: verdict.compare's dict against the first, or None
    notes: list         # per run after the first: why there is no paired test ("" when there is one)
    per_class: pd.DataFrame  # one row per class, one column per run (F1; NaN where a run has none)
    support: list       # per class row: A's validation images of that class (None where not recorded)
    curves: list        # per run: a frame indexed by epoch (macro_f1, valid_loss), or None
    models: list        # per run: how many models (folds or seeds) its curve is the mean of
    kinds: list         # per run: "folds", "seeds" or "" (one model)
    books: list = field(default_factory=list)  # per run: its notebook.Notebook, or the line saying why it is unreadable

    @property
    def labels(self):
        return [f"{LETTERS[i % 26]} {r.config.get('name') or r.dir.name}" for i, r in enumerate(self.runs)]

    def deltas(self, key):
        """Each run's value of metric `key` minus the reference's (None where either is missing)."""
        vals = next(v for k, _, v in self.metrics if k == key)
        return [None if v is None or vals[0] is None else v - vals[0] for v in vals]


def load(run_dirs):
    """The RunFolders of `run_dirs`; bad input (not a run folder, fewer than two) is a FastmaskError."""
    dirs = [Path(d) for d in run_dirs]
    for d in dirs:
        if not d.is_dir():
            raise FastmaskError(f"{d}: no such run folder")
        if not is_run(d):
            raise FastmaskError(f"{d}: not a run folder (no {CONFIG} or {STATUS})")
    if len(dirs) < 2:
        raise FastmaskError(f"compare needs two run folders or more, got {len(dirs)}")
    return [RunFolder(d) for d in dirs]


def flat(m):
    """metrics.json's figures as one flat dict of the METRICS keys."""
    out = values(m, COMPARED)
    if out["cv_mean"] is None and m.get("folds"):
        folds = fold_scores_in(m)
        out["cv_mean"] = float(np.mean(folds)) if folds else None
    return {k: float(v) if _num(v) else None for k, v in out.items()}


def config_diff(records):
    """{field: [value per run]} for the recipe fields (and the recipe name and data) that differ."""
    rows = {"recipe": [r.config.get("name") for r in records],
            "data fingerprint": [r.config.get("data_fingerprint") for r in records]}
    fields = [r.config.get("fields") or {} for r in records]
    for k in dict.fromkeys(k for f in fields for k in f):
        rows[k] = [f.get(k) for f in fields]
    return {k: v for k, v in rows.items() if len({json.dumps(x, sort_keys=True, default=str) for x in v}) > 1}


def class_key(k):
    """A per_class_f1 key as the class id: "3", 3 or "male <30 incorrect-mask" -> 3; other names stay text."""
    s = " ".join(str(k).split())
    if re.fullmatch(r"\d+", s):
        return int(s)
    names = {n.lower(): i for i, n in enumerate(CLASS_NAMES)}
    return names.get(s.lower(), s)


def per_class(records):
    """(Per-class F1 of every run, one column per run, rows by class id then any other class names; the
    first run's per_class_support on the same rows)."""
    def by_class(m, key):
        return {class_key(k): float(v) for k, v in (m.get(key) or {}).items() if _num(v)}
    cols = [by_class(r.metrics, "per_class_f1") for r in records]
    keys = list(dict.fromkeys(k for c in cols for k in c))
    keys = sorted(k for k in keys if isinstance(k, int)) + [k for k in keys if not isinstance(k, int)]
    index = [f"{k} {CLASS_NAMES[k]}" if isinstance(k, int) and k < len(CLASS_NAMES) else str(k) for k in keys]
    n = by_class(records[0].metrics, "per_class_support")
    return (pd.DataFrame({i: [c.get(k, np.nan) for k in keys] for i, c in enumerate(cols)}, index=index, dtype=float),
            [int(n[k]) if k in n else None for k in keys])


def curve(history):
    """(validation macro F1 and loss per epoch: the mean over folds or seeds; how many models; "folds",
    "seeds" or ""), or (None, 0, "") without a history."""
    if history is None or "epoch" not in history or not any(c in history for c in CURVES):
        return None, 0, ""
    group = next((g for g in ("fold", "seed") if g in history), None)
    n = int(history[group].nunique()) if group else 1
    cols = [c for c in CURVES if c in history]
    return history.groupby("epoch")[cols].mean().sort_index(), n, f"{group}s" if group and n > 1 else ""


def comparison(run_dirs, n=1000):
    """Everything `fastmask compare` shows, for run folders `run_dirs` (the first is the reference)."""
    records = load(run_dirs)
    flats = [flat(r.metrics) for r in records]
    metrics = [(k, label, [f[k] for f in flats]) for k, label in METRICS]
    metrics = [row for row in metrics if any(v is not None for v in row[2])]
    verdicts, notes = [], []
    for r in records[1:]:
        v, note = _paired(r, records[0], n)
        verdicts.append(v)
        notes.append(note)
    curves = [curve(r.history) for r in records]
    return Comparison(records, config_diff(records), metrics, verdicts, notes, *per_class(records),
                      *map(list, zip(*curves)), books=[_book(r) for r in records])


def _book(run):
    """The run's notebook; a damaged one is one warning and "notebook unreadable", never the comparison lost."""
    try:
        return notebook.read(run.dir)
    except FastmaskError as e:
        print(f"fastmask: warning: compare: {e}; compared without its notes and tags", file=sys.stderr)
        return "notebook unreadable"


def is_parent_run(child: RunFolder, ref: RunFolder):
    """Whether `ref` is one of the runs `child`'s verdict pools as its parent: the parent recipe, the same
    data and the parent's setup (any seeds): the index's rule (index.same_setup), finished or not."""
    side = parent_side(child.config)
    return side is not None and same_setup(ref.config, *side)


def _paired(child: RunFolder, ref: RunFolder, n):
    fa, fb = child.config.get("data_fingerprint"), ref.config.get("data_fingerprint")
    if fa and fb and fa != fb:
        return None, f"trained on other data ({fa} vs {fb}): no paired test"
    try:
        if is_parent_run(child, ref):  # the hypothesis' own verdict, as its card and the board show it
            return judge(child, child.dir.parent).verdict, "no paired test"
        v = paired_test(child, ref, n=n)
    except Exception as e:  # noqa: BLE001  (a damaged run must not cost the rest of the comparison)
        warnings.warn(f"paired test of {child.name} against {ref.name}: {one_line(e)}")
        return None, f"paired test failed ({type(e).__name__})"
    return v, "" if v is not None else "the runs predicted different images: no paired test"


# --- the terminal -------------------------------------------------------------------------------------

def _figure(key):
    """The figure `key` names; per-class F1 (no key) shows as an F1."""
    return BY_KEY.get(key) or Figure(key, key)


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _value(v):
    if v is None:
        return "—"
    if isinstance(v, (list, tuple)):
        return ",".join(_value(x) for x in v)
    return json.dumps(v) if isinstance(v, (dict, bool)) else str(v)


def _fig(v, key=""):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    spec = _figure(key).spec
    return f"{v:.0f}" if spec == "d" else format(v, spec)


def _delta(d, key=""):
    if d is None or (isinstance(d, float) and np.isnan(d)):
        return ""
    fig = _figure(key)
    text = f"{d:+.0f}" if fig.spec == "d" else format(d, "+" + fig.spec)
    colour = "green" if d > 0 else "red" if d < 0 else "dim"
    if not fig.better or abs(d) < 5e-4:
        colour = "dim"
    return f" [{colour}]({text})[/]"


def tables(c: Comparison):
    """The rich tables: runs, config fields that differ, figures with deltas, per-class F1."""
    runs = Table(title="runs (deltas are against A)", title_justify="left")
    for col in ("", "run folder", "status", "minutes", "models"):
        runs.add_column(col)
    for lab, r, k, kind in zip(c.labels, c.runs, c.models, c.kinds):
        st = r.status_json.get("status", "?")
        runs.add_row(escape(lab), escape(str(r.dir)), escape(str(st)), f"{r.minutes:.1f}" if _num(r.minutes) else "—",
                     f"{k} {kind}".strip() if k else "—")
    out = [runs]
    cfg = Table(title="config: the fields that differ", title_justify="left")
    cfg.add_column("field")
    for lab in c.labels:
        cfg.add_column(escape(lab))
    for k, vals in c.diff.items():
        cfg.add_row(escape(k), *(escape(_value(v)) for v in vals))
    out.append(cfg if c.diff else "[dim]config: every recipe field is the same[/]")
    fig = Table(title="figures", title_justify="left")
    fig.add_column("metric")
    for lab in c.labels:
        fig.add_column(escape(lab), justify="right")
    for k, label, vals in c.metrics:
        fig.add_row(label, *(_fig(v, k) + (_delta(d, k) if i else "") for i, (v, d) in enumerate(zip(vals, c.deltas(k)))))
    out.append(fig)
    book = notebook_table(c)
    if book is not None:
        out.append(book)
    if len(c.per_class):
        pc = Table(title="per-class F1 (validation)", title_justify="left")
        pc.add_column("class")
        shown = any(n is not None for n in c.support)
        if shown:
            pc.add_column("images (A)", justify="right")
        for lab in c.labels:
            pc.add_column(escape(lab), justify="right")
        for (name, row), n in zip(c.per_class.iterrows(), c.support):
            vals = row.to_numpy(float)
            pc.add_row(escape(name), *([("—" if n is None else str(n))] if shown else []),
                       *(_fig(v) + (_delta(v - vals[0]) if i else "") for i, v in enumerate(vals)))
        out.append(pc)
    return out


def notebook_table(c: Comparison):
    """Each run's tags (and whether it is archived) and its notes, dated and signed, oldest first; None when no
    run has any."""
    if not any(isinstance(b, str) or b.tags or b.notes or b.archived for b in c.books):
        return None
    t = Table(title="notebook: tags and notes", title_justify="left")
    for col in ("", "tags", "notes"):
        t.add_column(col)
    for lab, b in zip(c.labels, c.books):
        if isinstance(b, str):
            t.add_row(escape(lab), f"[red]{b}[/]", "")
            continue
        tags = " ".join(b.tags) + (" (archived)" if b.archived else "")
        notes = "\n".join(f"{str(n.get('at') or '')[:10]} {n.get('user') or ''}@{n.get('host') or ''}: {n['text']}"
                          for n in b.notes)
        t.add_row(escape(lab), escape(tags.strip()) or "—", escape(notes) or "—")
    return t


def verdict_lines(c: Comparison):
    """One line per run after the first: the paired test against A in words, or why there is none."""
    out = []
    for lab, v, note in zip(c.labels[1:], c.verdicts, c.notes):
        a, b = c.labels[0].split()[0], lab.split()[0]
        text = sentence(v).replace("against the parent", f"against {a}").replace("the child", b) if v else note
        text = re.sub(r"\*\*(.+?)\*\*", r"[bold]\1[/bold]", escape(text))
        out.append(f"[bold]{escape(lab)} vs {a}[/]: {text}")
    return out


# --- the PNG ------------------------------------------------------------------------------------------

def plot(c: Comparison, out):
    """compare.png: validation macro F1 and loss per epoch overlaid (top), per-class F1 side by side (below)."""
    import matplotlib  # here, not at the top: the board reads this module's tables and draws nothing
    matplotlib.use("Agg")  # a file, no display
    import matplotlib.pyplot as plt

    from fastmask.report.plots import whole_epochs
    fig = plt.figure(figsize=(13, 8.5))
    grid = fig.add_gridspec(2, 2, height_ratios=(1, 1.25))
    axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])]
    for ax, col, title in zip(axes, CURVES, ("validation macro F1", "validation loss")):
        for lab, cur, k, kind in zip(c.labels, c.curves, c.models, c.kinds):
            if cur is not None and col in cur:
                ax.plot(cur.index + 1, cur[col], marker="o", ms=3, label=lab + (f" (mean of {k} {kind})" if kind else ""))
        ax.set_title(title), ax.set_xlabel("epoch"), ax.grid(alpha=0.3)
        whole_epochs(ax)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no history.csv", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax = fig.add_subplot(grid[1, :])
    pc = c.per_class
    if len(pc):
        width = 0.8 / pc.shape[1]
        x = np.arange(len(pc))
        for i, lab in enumerate(c.labels):
            ax.bar(x + (i - (pc.shape[1] - 1) / 2) * width, pc[i].fillna(0), width, label=lab)
        names = [f"{k} (n={n})" if n is not None else k for k, n in zip(pc.index, c.support)]
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 1.2), ax.set_yticks(np.linspace(0, 1, 6))  # room above 1 for the legend
        ax.legend(fontsize=8, ncol=min(len(c.labels), 4), loc="upper right")
    else:
        ax.text(0.5, 0.5, "no per-class F1 in metrics.json", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("per-class validation F1" + (" (n: A's validation images)" if any(c.support) else ""))
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle("  vs  ".join(c.labels), fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return Path(out)


def compare_runs(run_dirs, out="compare.png", console=None, n=1000):
    """Print the comparison of `run_dirs` (the first is the reference) and write the PNG to `out`."""
    out = Path(out)
    if out.is_dir():
        raise FastmaskError(f"--out {out}: is a folder; give a file name such as {out / 'compare.png'}")
    c = comparison(run_dirs, n=n)
    console = console or Console()
    for t in tables(c):
        console.print(t)
    for line in verdict_lines(c):
        console.print(line)
    out.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"compare: {plot(c, out)}")
    return c

"""The board: every run folder as a row, the rows as a tree under their parents, shown as a rich table
and as index.html (html.board_page: a sortable, filterable table, a compare panel with the ticked runs'
learning curves, the cards folded), with a live queue's jobs that have no run folder yet as "queued" rows
after them; `watch` rewrites both every few seconds while runs train."""
import difflib
import json
import math
import re
import socket
import sys
from dataclasses import fields as recipe_fields
from datetime import datetime, timezone
from pathlib import Path
from time import sleep

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fastmask.choices import parse_split
from fastmask.errors import FastmaskError, one_line
from fastmask.io import atomic_write, pid_alive
from fastmask.recipe import Recipe
from fastmask.report.verdict import same_folds
from fastmask.runs.on_ray import read_log
from fastmask.store.folder import HISTORY, finite_number
from fastmask.store.index import entries, setup
from fastmask.store.run_folder import RunFolder
from fastmask.views.compare import CURVES, METRICS, config_diff, curve, flat
from fastmask.views.html import board_page

RECIPE_FIELDS = [f.name for f in recipe_fields(Recipe) if f.compare]
QUEUES = Path(".queue")  # in the runs folder: a folder per `fastmask run A.py B.py ...` queue (its logs, its state)
QUEUE = "queue.json"     # in a queue's folder: what that queue has left to run


# --- the runs as a tree -----------------------------------------------------------------------------

def collect(runs_dir, warn=None, rejudge=False):
    """One dict per run folder of the run index, oldest first. A folder whose JSON is unreadable or not
    an object is skipped with one warning line (`warn`, default stderr), so one bad folder never hides
    the others. A finished run whose recorded verdict misses evidence that came later (its parent finished
    after it, more seeds came in) is judged again (judgement.rejudge), so the board shows what its card
    would say now; `rejudge` also rewrites the card and metrics.json."""
    warn = warn or _warn
    rows = [_row(e) for e in entries(runs_dir, warn=lambda m: warn(f"board: {m}"), must_exist=True)]
    for r in rows:
        if rejudge or _stale(r, rows):
            try:
                from fastmask.runs.outputs import rejudge as again  # fastai's metrics: only when a verdict is stale
                entry = again(r["dir"], runs_dir, write=rejudge).entry or {}
            except Exception as e:  # noqa: BLE001  (one damaged run folder never hides the board)
                warn(f"board: re-judging {r['id']}: {one_line(e)}")
                continue
            r.update(verdict=_text(entry.get("verdict")), delta=entry.get("delta"),
                     parent_run=_text(entry.get("parent_run")))
    return rows


def _stale(r, rows):
    """Whether finished run `r`'s recorded verdict misses runs that now pool with it or its parent (the
    rule of judgement.evidence, from the rows already read)."""
    if r["status"] != "finished" or not r["parent"] or r["parent_fields"] is None:
        return False
    def same(name, fields):
        want = setup(fields)
        return [x["id"] for x in reversed(rows) if x["status"] == "finished" and x["name"] == name
                and x["fingerprint"] == r["fingerprint"] and setup(x["fields"]) == want]
    kids = [r["id"]] + [i for i in same(r["name"], r["fields"]) if i != r["id"]]
    parents = same(r["parent"], r["parent_fields"])
    v = r["metrics"].get("verdict") if isinstance(r["metrics"].get("verdict"), dict) else {}
    if not parents:
        return bool(v)
    return v.get("parent_runs") != parents or v.get("child_runs") != kids


def _warn(message):
    print(f"fastmask: warning: {message}", file=sys.stderr)


def _text(v, default=None):
    # Fields a hand-edited file may hold as anything: only text is shown or used as a key.
    return v if isinstance(v, str) else default


def _row(e):
    cfg, st, m = e.config, e.status_json, e.metrics
    v = m.get("verdict") if isinstance(m.get("verdict"), dict) else {}
    fields = cfg.get("fields") if isinstance(cfg.get("fields"), dict) else {}
    return {"dir": e.dir, "id": e.dir.name, "name": _text(cfg.get("name")) or e.dir.name.split("-", 1)[-1],
            "parent": _text(cfg.get("parent")), "fingerprint": _text(cfg.get("data_fingerprint")),
            "status": e.status, "started": st.get("started"), "minutes": st.get("minutes"),
            "macro_f1": m.get("macro_f1"), "holdout_macro_f1": m.get("holdout_macro_f1"),
            "verdict": _text(v.get("verdict")), "delta": v.get("delta"), "parent_run": _text(v.get("parent_run")),
            "hypothesis": _text(cfg.get("hypothesis"), ""), "fields": fields, "metrics": m,
            "parent_fields": cfg.get("parent_fields") if isinstance(cfg.get("parent_fields"), dict) else None,
            "curves": curves(e.history),
            "progress": progress(e.dir, fields) if e.status == "running" else None,
            # what compare.config_diff and verdict.same_folds read, with "fields" always a dict
            "record": RunFolder(e.dir, config={**cfg, "fields": fields}, metrics={})}


# --- learning curves and a running run's epoch ------------------------------------------------------

def curves(history):
    """A run's learning curves for the page: {"epoch": [1, 2, ...] (counted from 1, as the plots count;
    history.csv holds fastai's 0-based column), "macro_f1": [...], "valid_loss": [...] (validation, rounded
    to 4 decimals, null where not recorded), "of": "5 folds" when several models were averaged epoch by
    epoch (compare.curve: the mean over folds or seeds)}, or None without a usable history.csv."""
    try:
        frame, n, group = curve(history)
        if frame is None:
            return None
        out = {"epoch": [int(e) + 1 for e in frame.index]}
    except (TypeError, ValueError, OverflowError):  # a hand-edited history.csv (text epochs or figures)
        return None
    for c in CURVES:
        if c in frame:
            out[c] = [round(float(v), 4) if finite_number(v) else None for v in frame[c].tolist()]
    if group:
        out["of"] = f"{n} {group}"
    return out


def progress(run_dir, fields):
    """How far a running run got: (the model training now: None for a single model, "fold2" or "seed1"
    for one of several; the epochs it finished, one row of its history CSV each (fastai's CSVLogger
    writes a row as an epoch ends); the epochs asked for, from config.json's fields, or None)."""
    run_dir, part = Path(run_dir), None
    path = run_dir / HISTORY
    if not path.is_file():  # folds and seeds log to history_<part>.csv until the run ends: the newest trains
        try:
            parts = sorted((p.stat().st_mtime, p.name, p) for p in run_dir.glob("history_*.csv"))
        except OSError:  # one went away while looked at: the next rewrite sees the next one
            parts = []
        if parts:
            path = parts[-1][2]
            part = path.stem[len("history_"):]
    try:
        lines = [l for l in path.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
    except OSError:
        lines = []
    done = max(len(lines) - 1, 0)  # the header is not an epoch
    total = fields.get("epochs")
    total = total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else None
    return part, done, total


def status_text(r):
    """The status cell: the status, and for a running run the epoch it reached, "running (epoch 3/15)"."""
    if not r.get("progress"):
        return r["status"]
    part, done, total = r["progress"]
    return f"{r['status']} ({part + ', ' if part else ''}epoch {done}{f'/{total}' if total else ''})"


def _parent_of(r, by_id):
    """The run `r` was judged against (recorded in its verdict), else the parent recipe's newest run on
    the same data started before it (finished ones first), else None."""
    if r["parent_run"] in by_id:
        return by_id[r["parent_run"]]
    if not r["parent"]:
        return None
    older = [p for p in by_id.values() if p["name"] == r["parent"] and p["id"] < r["id"]
             and p["fingerprint"] == r["fingerprint"]]
    older.sort(key=lambda p: (p["status"] == "finished", p["id"]))
    return older[-1] if older else None


def tree(runs):
    """`runs` in display order, each with `depth` and `prefix` (tree guides) and `up` (its parent run or
    None): roots oldest first, each followed by its children, oldest first, depth first."""
    by_id = {r["id"]: r for r in runs}
    kids = {r["id"]: [] for r in runs}
    roots = []
    for r in runs:
        p = _parent_of(r, by_id)
        r["up"] = p
        (kids[p["id"]] if p else roots).append(r)
    out = []

    def walk(r, depth, guide, last):
        r["depth"] = depth
        r["prefix"] = "" if depth == 0 else guide + ("└─ " if last else "├─ ")
        out.append(r)
        children = sorted(kids[r["id"]], key=lambda c: c["id"])
        for i, c in enumerate(children):
            walk(c, depth + 1, "" if depth == 0 else guide + ("   " if last else "│  "), i == len(children) - 1)

    for r in sorted(roots, key=lambda r: r["id"]):
        walk(r, 0, "", True)
    return out


# --- a live queue's jobs without a run folder yet ----------------------------------------------------

def queue_files(runs_dir):
    """Each queue's state file: RUNS/.queue/<id>/queue.json, oldest queue first (the ids begin with their UTC
    stamp), after the one RUNS/.queue/queue.json an earlier version wrote, still read when it is there (its
    logs beside it, as each queue's are in its folder)."""
    base = Path(runs_dir) / QUEUES
    return [base / QUEUE] + sorted(base.glob(f"*/{QUEUE}"))


def queued(runs_dir, warn=None):
    """A row for each job of each live queue's state file (queue_files) that has no run folder yet, while
    that queue lives (its pid, on this host; a dead or distant one shows nothing): status "queued", and in the
    verdict column what it waits for. Rows come after the runs' tree, queue by queue, in each queue's order;
    a job of the same name queued by two queues is two rows, the later one's id naming its queue. A live
    queue's file whose jobs are not what the queue writes (a job not an object, a name or status not text,
    needs not a list of names) shows no rows of that queue and one warning line (`warn`, default stderr), as
    a damaged run does."""
    rows, ids = [], set()
    for path in queue_files(runs_dir):
        for r in _queued(path, warn):
            if r["id"] in ids:
                r["id"] = f"{r['id']} (queue {path.parent.name})"
            ids.add(r["id"])
            rows.append(r)
    return rows


def _queued(path, warn):
    """The rows of one queue's state file `path` (its jobs' logs beside it)."""
    try:
        q = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(q, dict) or q.get("host") != socket.gethostname() or pid_alive(q.get("pid")) is not True:
        return []
    jobs = q.get("jobs") or []
    if not (isinstance(jobs, list) and all(_job_record(j) for j in jobs)):
        (warn or _warn)(f"board: {path}: damaged (its jobs are not a queue's records); its queued jobs are not shown")
        return []
    status = {j["name"]: j.get("status") for j in jobs}
    rows = []
    for j in jobs:
        if j.get("status") == "queued":
            waiting = [n for n in j.get("needs") or [] if status.get(n) in ("queued", "running")]
            waits = f"waits for {', '.join(waiting)}" if waiting else "waits for a free slot"
            rows.append(_queued_row(path.parent, j, waits))
        elif j.get("status") == "running" and not _has_folder(path.parent, j["name"]):
            rows.append(_queued_row(path.parent, j, "starting"))  # on Ray: until a node has its CPUs and GPUs free
    return rows


def _job_record(j):
    """Whether `j` is a job as queue.State writes it, as far as the board reads it."""
    return (isinstance(j, dict) and isinstance(j.get("name"), str) and isinstance(j.get("status"), (str, type(None)))
            and isinstance(j.get("needs", []), (list, type(None))) and all(isinstance(n, str) for n in j.get("needs") or []))


def _has_folder(logs, name):
    # a running job's log, in its own queue's folder `logs`, names its run folder as soon as the run makes it
    return read_log(Path(logs) / f"{name}.log")[0] is not None


def _queued_row(logs, job, waits):
    """A queued job as a board row: the keys a run's row has (no figures, no fields), and `waits`."""
    name = job["name"]
    return {"dir": Path(logs) / name, "id": f"queued: {name}", "name": name, "parent": None,
            "fingerprint": None, "status": "queued", "started": None, "minutes": None, "macro_f1": None,
            "holdout_macro_f1": None, "verdict": None, "delta": None, "parent_run": None,
            "hypothesis": _text(job.get("hypothesis"), ""), "fields": {}, "metrics": {}, "parent_fields": None,
            "curves": None, "progress": None, "record": None, "waits": waits, "depth": 0, "prefix": "", "up": None}


def active(rows):
    """Whether the runs are still moving: some run is running, or a live queue has jobs not started yet.
    The page reloads itself while they are, for what `board --watch` rewrites."""
    return any(r["status"] in ("running", "queued") for r in rows)


# --- against the parent -----------------------------------------------------------------------------

def _kfold(split):
    try:
        return parse_split(split).n_folds is not None
    except (TypeError, ValueError):
        return False


def not_comparable(r):
    """Why run `r`'s macro F1 cannot be set against its parent run's, or None when it can. The verdict's
    rule (verdict.same_folds): only the same split and split seed validate the same people; a k-fold run's
    out-of-fold F1 against one split's is a difference of two different measurements, not an effect."""
    up = r.get("up")
    if up is None or finite_number(r.get("delta")):
        return None  # no parent run, or the verdict's paired test found common ground (folds or holdout)
    a, b = r["fields"].get("split"), up["fields"].get("split")
    if _kfold(a) != _kfold(b):
        kinds = ("k-fold", "single split") if _kfold(a) else ("single split", "k-fold")
        return f"not comparable: {kinds[0]} vs {kinds[1]} ({a} vs {b})"
    if not same_folds(r["record"], up["record"]):
        return "not comparable: validated on other people (split or split_seed differ)"
    if r["verdict"] == "cannot compare":
        return "not comparable: the runs validated on other images"
    return None


def delta(r):
    """The verdict's delta against the parent (the quantity it judges, on the evidence it pooled), or None
    when there is no verdict: the board shows no figure the card does not."""
    return r["delta"] if finite_number(r.get("delta")) else None


def verdict_word(r):
    """The verdict as its card says it, else why there is none (for a queued job: what it waits for)."""
    if r.get("waits"):
        return r["waits"]
    if r.get("verdict"):
        return r["verdict"]
    if not r["parent"]:
        return "—"
    if not_comparable(r):
        return "not comparable"
    if r["status"] == "finished" or not r.get("up"):
        return "no parent run"
    return ""


# --- parameter columns ------------------------------------------------------------------------------

def varying(rows):
    """The recipe fields whose values differ across `rows` (compare.config_diff's rule), in recipe order; a
    queued job has no fields yet, so it does not count."""
    records = [r["record"] for r in rows if r["record"] is not None]
    return [k for k in config_diff(records) if k not in ("recipe", "data fingerprint")]


def param_columns(rows, names=(), params=False):
    """The parameter columns to show: `names` (each a recipe field, or one some run recorded), then, with
    `params`, every field that varies across `rows`. An unknown name is a FastmaskError naming it."""
    known = dict.fromkeys([*RECIPE_FIELDS, *(k for r in rows for k in r["fields"])])
    for n in names:
        if n not in known:
            close = difflib.get_close_matches(n, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the fields are {', '.join(known)}"
            raise FastmaskError(f"--columns: {n!r} is not a recipe field; {hint}")
    return list(dict.fromkeys([*names, *(varying(rows) if params else [])]))


def param_text(r, name):
    """A field's value as a cell: "—" when the run did not record the field."""
    return _value(r["fields"][name]) if name in r["fields"] else "—"


def _value(v):
    # a search trial's lr is optuna's full float: four digits tell trials apart in a column
    if isinstance(v, float):
        return f"{v:.4g}"
    return ",".join(map(_value, v)) if isinstance(v, list) else str(v)


# --- the table --------------------------------------------------------------------------------------

def when(r):
    try:
        t = datetime.fromisoformat(r["started"])
    except (TypeError, ValueError):
        return "—"
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _f(v, spec=".3f"):
    return format(v, spec) if finite_number(v) else "—"


COLUMNS = ("run", "status", "verdict", "val F1", "holdout F1", "Δ parent", "minutes", "started UTC")
NUMERIC = ("val F1", "holdout F1", "Δ parent", "minutes")
_STYLE = {"supported": "green", "refuted": "red", "inconclusive": "yellow", "no effect": "blue",
          "unreplicated": "yellow", "neither learned": "red", "finished": "", "running": "cyan",
          "interrupted": "magenta", "partial": "yellow", "failed": "red", "lost": "red", "not comparable": "dim"}


def headers(params=()):
    """The table's headers: the run and its figures first (what a wide table must not push off-screen), then
    the parameter columns."""
    return (*COLUMNS, *params)


def cells(r, params=()):
    """The table's text cells for one run, in `headers(params)` order."""
    d = delta(r)
    return [r["prefix"] + r["name"], status_text(r), verdict_word(r), _f(r["macro_f1"]), _f(r["holdout_macro_f1"]),
            "—" if d is None else f"{d:+.3f}", _f(r["minutes"], ".1f"), when(r), *(param_text(r, p) for p in params)]


def table(rows, title, drop=(), params=()):
    """The rich table: the run column carries the tree guides; `drop` leaves columns out."""
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    names = headers(params)
    keep = [i for i, c in enumerate(names) if c not in drop]
    for i in keep:
        t.add_column(escape(names[i]), justify="right" if names[i] in NUMERIC else "left", no_wrap=i != 0,
                     overflow="fold", min_width=RUN_MIN if i == 0 else None)
    for r in rows:
        c = [escape(x) for x in cells(r, params)]
        for i, word in ((1, r["status"]), (2, verdict_word(r))):  # coloured by the word the cell starts with
            if _STYLE.get(word) and c[i].startswith(escape(word)):
                c[i] = f"[{_STYLE[word]}]{c[i]}[/]"
        t.add_row(*[c[i] for i in keep])
    return t


RUN_MIN = 12  # the run column's narrowest: on a console too narrow for the rest, its names fold, never vanish
LEAVE_OUT = ("started UTC", "minutes", "holdout F1")  # the first columns a narrow console does without


def fitted_table(rows, title, console, params=()):
    """The table at its natural width: while it is wider than the console, whole columns are left out (started
    UTC, minutes, holdout F1, then the parameter columns from the right, so those --columns names come last)
    rather than every header squeezed to a few letters; the run column always stays. Returns (table, the
    headers left out, in the order they went)."""
    order = [*LEAVE_OUT, *reversed(params)]
    drop = []
    while True:
        t = table(rows, title, drop, params)
        wide = console.measure(t, options=console.options.update_width(10_000)).maximum
        if wide <= console.width or len(drop) == len(order):
            return t, drop
        drop.append(order[len(drop)])


# --- index.html -------------------------------------------------------------------------------------

def _anchor(r):
    return "run-" + re.sub(r"[^A-Za-z0-9_.-]", "-", r["id"])


def _finite(v):
    # JSON has no NaN: a hand-edited metrics.json may, and JSON.parse would refuse the whole page's data
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _finite(x) for k, x in v.items()}
    return [_finite(x) for x in v] if isinstance(v, list) else v


def _figures(m):
    try:
        return {k: v for k, v in flat(m).items() if v is not None}
    except (AttributeError, TypeError, ValueError):  # a hand-edited metrics.json of the wrong shapes
        return {}


def view(r, params, root):
    """What the page shows of one run: its table cells, its card's section, and its data for the compare
    panel (all recipe fields, the figures `fastmask compare` shows, the run folder as a command argument)."""
    c = cells(r, params)
    names = headers(params)
    sort = {"run": None, **{p: r["fields"].get(p) for p in params}, "val F1": r["macro_f1"],
            "holdout F1": r["holdout_macro_f1"], "Δ parent": delta(r), "minutes": r["minutes"]}
    return {"id": r["id"], "anchor": _anchor(r), "name": r["name"], "prefix": r["prefix"], "dir": r["dir"],
            "status": r["status"], "hypothesis": r["hypothesis"], "note": not_comparable(r) or "",
            "up": (_anchor(r["up"]), r["up"]["id"]) if r.get("up") else None,
            "cells": [(n, text, sort[n] if finite_number(sort.get(n)) else None) for n, text in zip(names, c)],
            "data": _finite({"id": r["id"], "name": r["name"], "path": str(Path(root) / r["id"]),
                             "status": r["status"], "state": status_text(r), "verdict": verdict_word(r),
                             "note": not_comparable(r) or "",
                             "parent_run": r["up"]["id"] if r.get("up") else None, "hypothesis": r["hypothesis"],
                             "data": r["fingerprint"], "fields": r["fields"], "figures": _figures(r["metrics"]),
                             "curves": r.get("curves")})}


RELOAD_S = 10  # how often a page with a running run reloads itself (at least; `--watch` slower: its period)


def render_html(rows, root, reload_s=RELOAD_S):
    """index.html for `rows` (from `tree`) of the runs folder `root`: the varying recipe fields as columns.
    While some run is running the page reloads itself every `reload_s` seconds (none once all have ended)."""
    root, params = Path(root), varying(rows)
    running = active(rows)
    return board_page(root, [view(r, params, root) for r in rows], headers(params), NUMERIC,
                      [[k, label] for k, label in METRICS],
                      stamp=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                      reload_s=max(RELOAD_S, reload_s) if running else None)


def board(runs_dir="runs", html_out=True, console=None, columns=(), params=False, rejudge=False):
    """Print the tree table (with the parameter columns `columns`, and with `params` every recipe field
    that varies); write RUNS_DIR/index.html unless html_out is False; with `rejudge`, rewrite every run's
    verdict on the evidence there is now. Returns the rows."""
    runs_dir = Path(runs_dir)
    rows = tree(collect(runs_dir, rejudge=rejudge)) + queued(runs_dir)
    shown = param_columns(rows, columns, params)  # before any output: a bad name is one line, exit 2
    console = console or Console()
    print_table(rows, runs_dir, console, shown, params)
    if html_out:
        console.print(f"board: {write_html(rows, runs_dir)}")
    return rows


def print_table(rows, runs_dir, console, shown, params):
    if rows:
        t, drop = fitted_table(rows, f"runs in {runs_dir}", console, shown)
        console.print(t)
        if drop:
            console.print(f"[dim]{len(drop)} column(s) left out to fit {console.width} columns: "
                          f"{escape(', '.join(drop))} (a wider window shows them)[/]")
        if params and not varying(rows):
            console.print("[dim]every recipe field is the same in these runs[/]")
        for r in rows:
            if not_comparable(r):
                console.print(f"[dim]{escape(r['id'])}: Δ parent —, {escape(not_comparable(r))}[/]")
    else:
        console.print(f"no runs in {runs_dir} yet")


def write_html(rows, runs_dir, reload_s=RELOAD_S):
    """Write RUNS_DIR/index.html (atomically: a browser reloading it never reads half a page). Returns its path."""
    out = Path(runs_dir) / "index.html"
    try:
        atomic_write(out, render_html(rows, runs_dir, reload_s))
    except OSError as e:
        raise FastmaskError(f"{out}: {e.strerror}") from None
    return out


def watch(runs_dir="runs", every=10.0, html_out=True, console=None, columns=(), params=False, rejudge=False):
    """`board` again every `every` seconds until Ctrl-C (a KeyboardInterrupt, which the caller ends on): each
    round rewrites index.html; the table is printed when some cell changed since it was last printed, else
    one line says the page was rewritten. A warning about a folder is said once, not every round; `rejudge`
    rewrites the verdicts in the first round only. Returns nothing: it ends by the interrupt alone."""
    runs_dir, console = Path(runs_dir), console or Console()
    said, shown_cells = set(), None
    def warn(message):
        if message not in said:
            said.add(message)
            _warn(message)
    rounds = 0
    while True:
        rows = tree(collect(runs_dir, warn=warn, rejudge=rejudge and not rounds)) + queued(runs_dir, warn)
        shown = param_columns(rows, columns, params)
        now = datetime.now().strftime("%H:%M:%S")
        out = write_html(rows, runs_dir, reload_s=every) if html_out else None
        rounds += 1
        table_cells = [cells(r, shown) for r in rows]
        running, waiting = (sum(r["status"] == s for r in rows) for s in ("running", "queued"))
        if table_cells != shown_cells:
            print_table(rows, runs_dir, console, shown, params)
            shown_cells = table_cells
            changed = "changed"
        else:
            changed = "no change"
        if rounds == 1:
            console.print(f"[dim]board: watching {escape(str(runs_dir))} every {every:g} s; Ctrl-C ends[/]")
        console.print(f"[dim]board {now}: {len(rows) - waiting} runs ({running} running"
                      + (f", {waiting} queued" if waiting else "") + f"), {changed}"
                      + (f"; {escape(str(out))} rewritten" if out else "") + "[/]")
        sleep(every)

"""The board's rows: one dict per run folder (from the runs folder's RunIndex, built once per redraw), what
each shows (status and epoch, a running run's last epoch's figures, learning curves so far, its notebook, who
ran it and on what), the rows as a tree under their parents (several runs folders: folder after folder), and
a live queue's jobs that have no run folder yet as "queued" rows after them. What a row shows against its
parent run is in board_parent."""
import os
import re
import sys
from pathlib import Path

import pandas as pd

from fastmask.errors import FastmaskError, one_line
from fastmask.runs.queue_file import Damaged, has_run_folder, live_jobs, queue_files
from fastmask.store import live, notebook
from fastmask.store.folder import finite_number
from fastmask.store.index import RunIndex
from fastmask.store.run_folder import RunFolder
from fastmask.views.compare import CURVES, curve

# --- the runs as a tree -----------------------------------------------------------------------------

def collect(runs_dir, warn=None, rejudge=False, folder=None):
    """One dict per run folder of the runs folder's RunIndex (built once, each folder read once), oldest
    first, each labelled `folder` (the runs folder it came from, when the board shows several). A folder whose
    JSON is unreadable or not an object is skipped with one warning line (`warn`, default stderr), so one bad
    folder never hides the others; so is a damaged notebook (the run shows "notebook unreadable"). A finished
    run whose recorded verdict misses evidence that came later (its parent finished after it, more seeds came
    in: RunIndex.stale) is judged again on the same index (outputs.rejudge), so the board shows what its card
    would say now; `rejudge` also rewrites the card and metrics.json."""
    warn = warn or warning
    index = RunIndex(runs_dir, warn=lambda m: warn(f"board: {m}"), must_exist=True)
    rows = [_row(e, warn) for e in index]
    for run, r in zip(index, rows):
        r.update(folder=folder, root=Path(runs_dir))
        if rejudge or index.stale(run):
            try:
                from fastmask.runs.outputs import rejudge as again  # fastai's metrics: only when a verdict is stale
                entry = again(r["dir"], index, write=rejudge).entry or {}
            except Exception as e:  # noqa: BLE001  (one damaged run folder never hides the board)
                warn(f"board: re-judging {r['id']}: {one_line(e)}")
                continue
            r.update(verdict=_text(entry.get("verdict")), delta=entry.get("delta"),
                     parent_run=_text(entry.get("parent_run")))
    return rows


def warning(message):
    """One warning line to stderr (the board's default `warn`)."""
    print(f"fastmask: warning: {message}", file=sys.stderr)


def _text(v, default=None):
    # Fields a hand-edited file may hold as anything: only text is shown or used as a key.
    return v if isinstance(v, str) else default


def _row(e, warn=warning):
    cfg, st, m = e.config, e.status_json, e.metrics
    v = m.get("verdict") if isinstance(m.get("verdict"), dict) else {}
    fields = cfg.get("fields") if isinstance(cfg.get("fields"), dict) else {}
    running = e.status == "running"
    return {"dir": e.dir, "id": e.dir.name, "key": e.dir.name,
            "name": _text(cfg.get("name")) or e.dir.name.split("-", 1)[-1],
            "parent": _text(cfg.get("parent")), "fingerprint": _text(cfg.get("data_fingerprint")),
            "status": e.status, "started": st.get("started"), "minutes": st.get("minutes"),
            "macro_f1": m.get("macro_f1"), "holdout_macro_f1": m.get("holdout_macro_f1"),
            "verdict": _text(v.get("verdict")), "delta": v.get("delta"), "parent_run": _text(v.get("parent_run")),
            "hypothesis": _text(cfg.get("hypothesis"), ""), "fields": fields, "metrics": m,
            "parent_fields": cfg.get("parent_fields") if isinstance(cfg.get("parent_fields"), dict) else None,
            "curves": curves(running_history(e.dir) if running else e.history),
            "progress": progress(e.dir, fields) if running else None,
            "live": live_figures(e.dir) if running else None,
            **who(cfg), **book(e.dir, warn),
            # what compare.config_diff and verdict.same_folds read, with "fields" always a dict
            "record": RunFolder(e.dir, config={**cfg, "fields": fields}, metrics={}),
            "entry": e}  # the index's RunFolder: predictions a re-judging read are not read again


def who(cfg):
    """{"who": "user@host", "device": ...} from config.json's environment, each "" for a run recorded before
    runs said who ran them and where."""
    env = cfg.get("environment") if isinstance(cfg.get("environment"), dict) else {}
    user, host = _text(env.get("user"), ""), _text(env.get("host"), "")
    return {"who": f"{user}@{host}" if user and host else user or host, "device": _text(env.get("device"), "")}


def book(run_dir, warn=warning):
    """The run's notebook as row keys: tags, notes (oldest first), archived (the archive event or None), and
    "notebook": None, or "notebook unreadable" for a damaged file (one warning line; the run still shows)."""
    try:
        nb = notebook.read(run_dir)
    except FastmaskError as err:
        warn(f"board: {err}; the run shows without its notes and tags")
        nb, problem = notebook.Notebook(), "notebook unreadable"
    else:
        problem = None
    return {"tags": list(nb.tags), "notes": list(nb.notes), "archived": nb.archived, "notebook": problem}


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
    now = live.latest(run_dir) or live.Live(None, 0)
    return now.part, now.done, _epochs(fields)


def _epochs(fields):
    total = fields.get("epochs")
    return total if isinstance(total, int) and not isinstance(total, bool) and total > 0 else None


def live_figures(run_dir):
    """A running run's last finished epoch: {"epoch": epochs done, "macro_f1", "valid_loss"} (validation,
    each None where not recorded), or None before its first epoch ends."""
    now = live.latest(run_dir)
    if now is None or not now.done:
        return None
    return {"epoch": now.done, "part": now.part, "macro_f1": now.macro_f1, "valid_loss": now.valid_loss}


def running_history(run_dir):
    """A running run's history so far as one frame: history.csv, or while several folds or seeds train, their
    history_<part>.csv files with a fold or seed column (compare.curve averages them epoch by epoch); None
    when there is none."""
    frames = []
    for part, path in live.history_files(run_dir):
        m = re.fullmatch(r"(fold|seed)(\d+)", part or "")
        try:
            f = pd.read_csv(path)
        except (OSError, ValueError):  # empty, or a line cut short while written: the next redraw reads it
            continue
        frames.append(f.assign(**{m[1]: int(m[2])}) if m else f)
    return pd.concat(frames, ignore_index=True) if frames else None


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


def layout(rows):
    """Copies of `rows` (in display order, each with its `up`) laid out as a tree among themselves: each under
    its nearest ancestor that is in `rows`, so hiding runs (archived ones) leaves no guide to a run not shown.
    Roots and children keep the order they have in `rows`."""
    copies = {id(r): dict(r) for r in rows}

    def shown_up(r):
        p = r.get("up")
        while p is not None and id(p) not in copies:
            p = p.get("up")
        return p
    kids, roots = {k: [] for k in copies}, []
    for r in rows:
        p = shown_up(r)
        (kids[id(p)] if p is not None else roots).append(r)
    out = []

    def walk(r, depth, guide, last):
        c = copies[id(r)]
        c["depth"], c["prefix"] = depth, "" if depth == 0 else guide + ("└─ " if last else "├─ ")
        out.append(c)
        for i, k in enumerate(kids[id(r)]):
            walk(k, depth + 1, "" if depth == 0 else guide + ("   " if last else "│  "), i == len(kids[id(r)]) - 1)

    for r in roots:
        walk(r, 0, "", True)
    return out


def labels(runs_dirs):
    """A short label per runs folder for the board's folder column: the folders' names when they differ
    (alice/runs and bob/runs are both "runs": then the paths as given, normalised)."""
    names = [Path(d).resolve().name for d in runs_dirs]
    if len(set(names)) == len(names):
        return names
    return [os.path.normpath(str(d)) for d in runs_dirs]


def gather(runs_dirs, warn=None, rejudge=False):
    """The board's rows of one or several runs folders: each folder's runs as a tree under their parents (a
    parent is looked for in its child's own folder: the verdict was judged there), folder after folder, then
    each folder's live queues' waiting jobs. With several folders each row says its folder's label, and its
    `key` (the page's id for it) is "label/run folder", so two folders holding runs of one name stay apart.
    A runs folder that does not exist is a FastmaskError naming it, before any row is read."""
    dirs = list({Path(d).resolve(): Path(d) for d in runs_dirs}.values())  # a folder named twice shows once
    for d in dirs:
        if not d.is_dir():
            raise FastmaskError(f"runs folder {d}: no such folder")
    several = len(dirs) > 1
    names = labels(dirs) if several else [None] * len(dirs)
    runs, waiting = [], []
    for d, name in zip(dirs, names):
        runs += tree(collect(d, warn, rejudge, folder=name))
        waiting += queued(d, warn, folder=name)
    if several:
        for r in runs + waiting:
            r["key"] = f"{r['folder']}/{r['id']}"
    return runs + waiting


# --- a live queue's jobs without a run folder yet ----------------------------------------------------

def queued(runs_dir, warn=None, folder=None):
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
            r.update(key=r["id"], folder=folder, root=Path(runs_dir))
            rows.append(r)
    return rows


def _queued(path, warn):
    """The rows of one queue's state file `path` (its jobs' logs beside it)."""
    try:
        jobs = live_jobs(path)
    except Damaged as e:
        (warn or warning)(f"board: {e}; its queued jobs are not shown")
        return []
    status = {j["name"]: j.get("status") for j in jobs}
    rows = []
    for j in jobs:
        if j.get("status") == "queued":
            waiting = [n for n in j.get("needs") or [] if status.get(n) in ("queued", "running")]
            waits = f"waits for {', '.join(waiting)}" if waiting else "waits for a free slot"
            rows.append(_queued_row(path.parent, j, waits))
        elif j.get("status") == "running" and not has_run_folder(path.parent, j["name"]):
            rows.append(_queued_row(path.parent, j, "starting"))  # on Ray: until a node has its CPUs and GPUs free
    return rows


def _queued_row(logs, job, waits):
    """A queued job as a board row: the keys a run's row has (no figures, no fields), and `waits`."""
    name = job["name"]
    return {"dir": Path(logs) / name, "id": f"queued: {name}", "name": name, "parent": None,
            "fingerprint": None, "status": "queued", "started": None, "minutes": None, "macro_f1": None,
            "holdout_macro_f1": None, "verdict": None, "delta": None, "parent_run": None,
            "hypothesis": _text(job.get("hypothesis"), ""), "fields": {}, "metrics": {}, "parent_fields": None,
            "curves": None, "progress": None, "live": None, "record": None, "waits": waits, "depth": 0, "prefix": "",
            "up": None, "who": "", "device": "", "tags": [], "notes": [], "archived": None, "notebook": None,
            "entry": None}


def active(rows):
    """Whether the runs are still moving: some run is running, or a live queue has jobs not started yet.
    The page reloads itself while they are, for what `board --watch` rewrites."""
    return any(r["status"] in ("running", "queued") for r in rows)

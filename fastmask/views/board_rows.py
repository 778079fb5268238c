"""The board's rows: one dict per run folder (from the runs folder's RunIndex, built once per redraw), what
each shows (status and epoch, verdict or why there is none, delta, learning curves), the rows as a tree under
their parents, and a live queue's jobs that have no run folder yet as "queued" rows after them."""
import sys
from pathlib import Path

from fastmask.choices import parse_split
from fastmask.errors import one_line
from fastmask.report.verdict import same_folds
from fastmask.runs.queue_file import Damaged, has_run_folder, live_jobs, queue_files
from fastmask.store.folder import HISTORY, finite_number
from fastmask.store.index import RunIndex
from fastmask.store.run_folder import RunFolder
from fastmask.views.compare import CURVES, curve

# --- the runs as a tree -----------------------------------------------------------------------------

def collect(runs_dir, warn=None, rejudge=False):
    """One dict per run folder of the runs folder's RunIndex (built once, each folder read once), oldest
    first. A folder whose JSON is unreadable or not an object is skipped with one warning line (`warn`,
    default stderr), so one bad folder never hides the others. A finished run whose recorded verdict misses
    evidence that came later (its parent finished after it, more seeds came in: RunIndex.stale) is judged
    again on the same index (outputs.rejudge), so the board shows what its card would say now; `rejudge`
    also rewrites the card and metrics.json."""
    warn = warn or warning
    index = RunIndex(runs_dir, warn=lambda m: warn(f"board: {m}"), must_exist=True)
    rows = [_row(e) for e in index]
    for run, r in zip(index, rows):
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

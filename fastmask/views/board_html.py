"""The board as index.html (html.board_page: a sortable, filterable table, a compare panel with the ticked runs'
learning curves, the cards folded): what the page shows of each run, written atomically."""
import math
import re
from datetime import datetime, timezone
from pathlib import Path

from fastmask.errors import FastmaskError
from fastmask.io import atomic_write
from fastmask.store.folder import finite_number
from fastmask.views.board_rows import active, delta, not_comparable, status_text, verdict_word
from fastmask.views.board_table import NUMERIC, cells, headers, varying
from fastmask.views.compare import METRICS, flat
from fastmask.views.html import board_page


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


def write_html(rows, runs_dir, reload_s=RELOAD_S):
    """Write RUNS_DIR/index.html (atomically: a browser reloading it never reads half a page). Returns its path."""
    out = Path(runs_dir) / "index.html"
    try:
        atomic_write(out, render_html(rows, runs_dir, reload_s))
    except OSError as e:
        raise FastmaskError(f"{out}: {e.strerror}") from None
    return out

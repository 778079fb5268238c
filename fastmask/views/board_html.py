"""The board as one HTML page (board_page: a sortable table filtered by words, status and tag, archived runs
behind a toggle, a compare panel with the ticked runs' learning curves and a child's per-class F1 against its
parent, the cards folded): what the page shows of each run, written atomically."""
import math
import re
from datetime import datetime, timezone
from pathlib import Path

from fastmask.errors import FastmaskError
from fastmask.io import atomic_write
from fastmask.store.folder import finite_number
from fastmask.views.board_page import board_page
from fastmask.views.board_parent import class_chart, delta, not_comparable, verdict_word
from fastmask.views.board_rows import active, status_text
from fastmask.views.board_table import NUMERIC, cells, extras, headers, live_text, varying
from fastmask.views.compare import METRICS, flat


def _anchor(r):
    return "run-" + re.sub(r"[^A-Za-z0-9_.-]", "-", r.get("key") or r["id"])


def _finite(v):
    # JSON has no NaN: a hand-edited metrics.json may, and JSON.parse would refuse the whole page's data
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _finite(x) for k, x in v.items()}
    return [_finite(x) for x in v] if isinstance(v, (list, tuple)) else v


def _figures(m):
    try:
        return {k: v for k, v in flat(m).items() if v is not None}
    except (AttributeError, TypeError, ValueError):  # a hand-edited metrics.json of the wrong shapes
        return {}


def _live(r):
    """A running run's live figure in words, for its cell's tooltip; "" when it has none."""
    now = r.get("live")
    if not live_text(r) or finite_number(r["macro_f1"]):
        return ""
    part = f"{now['part']}, " if now.get("part") else ""
    return f"validation after epoch {now['epoch']} ({part}still training): macro F1 and loss {live_text(r)}"


def view(r, params, root):
    """What the page shows of one run: its table cells, its card's section, and its data for the compare
    panel (all recipe fields, the figures `fastmask compare` shows, the run folder as a command argument, its
    notebook, who ran it, its live figures and per-class deltas against its parent run)."""
    c = cells(r, params)
    names = headers(params)
    now = r.get("live") or {}
    sort = {"run": None, **{p: r["fields"].get(p) for p in params}, "val F1": r["macro_f1"] if finite_number(
        r["macro_f1"]) else now.get("macro_f1"), "holdout F1": r["holdout_macro_f1"], "Δ parent": delta(r),
        "minutes": r["minutes"]}
    up = r.get("up")
    key = r.get("key") or r["id"]
    return {"id": r["id"], "anchor": _anchor(r), "name": r["name"], "prefix": r["prefix"], "dir": r["dir"],
            "root": Path(r.get("root") or root), "status": r["status"], "hypothesis": r["hypothesis"],
            "note": not_comparable(r) or "", "live": _live(r),
            "up": (_anchor(up), up["id"]) if up else None,
            "cells": [(n, text, sort[n] if finite_number(sort.get(n)) else None) for n, text in zip(names, c)],
            "data": _finite({"id": key, "name": r["name"], "path": str(Path(r.get("root") or root) / r["id"]),
                             "status": r["status"], "state": status_text(r), "verdict": verdict_word(r),
                             "note": not_comparable(r) or "", "parent_run": (up.get("key") or up["id"]) if up else None,
                             "hypothesis": r["hypothesis"], "data": r["fingerprint"], "fields": r["fields"],
                             "figures": _figures(r["metrics"]), "curves": r.get("curves"),
                             "live": r.get("live"), "class_deltas": class_chart(r),
                             "tags": list(r.get("tags") or []), "notes": list(r.get("notes") or []),
                             "archived": r.get("archived"), "notebook": r.get("notebook"),
                             "who": r.get("who") or "", "device": r.get("device") or "",
                             "folder": r.get("folder")})}


RELOAD_S = 10  # how often a page with a running run reloads itself (at least; `--watch` slower: its period)


def render_html(rows, page_dir, reload_s=RELOAD_S, archived=False, folders=None):
    """The page for `rows` (from `gather`), to be written into `page_dir`: the columns some runs need
    (board_table.extras) and the varying recipe fields as columns. While some run is running the page reloads
    itself every `reload_s` seconds (none once all have ended)."""
    page_dir, params = Path(page_dir), [*extras(rows), *varying(rows)]
    folders = folders or list(dict.fromkeys(Path(r["root"]) for r in rows if r.get("root"))) or [page_dir]
    running = active(rows)
    return board_page(page_dir, [view(r, params, page_dir) for r in rows], headers(params), NUMERIC,
                      [[k, label] for k, label in METRICS],
                      stamp=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                      reload_s=max(RELOAD_S, reload_s) if running else None, folders=folders, archived=archived)


def write_html(rows, out, reload_s=RELOAD_S, archived=False, folders=None):
    """Write the page of the runs folders `folders` to `out` (a file; a runs folder stands for its index.html),
    atomically: a browser reloading it never reads half a page. Returns its path."""
    out = Path(out)
    if out.is_dir():
        out = out / "index.html"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, render_html(rows, out.parent, reload_s, archived, folders))
    except OSError as e:
        raise FastmaskError(f"{out}: {e.strerror}") from None
    return out

"""The board: every run folder of one or several runs folders as a row, the rows as a tree under their parents,
shown as a rich table (board_table) and as one index.html (board_html), with a live queue's jobs that have no
run folder yet as "queued" rows after them (board_rows); `watch` rewrites both every few seconds while runs
train, one run index per folder a round, and ends once nothing is running or queued."""
import webbrowser
from datetime import datetime
from pathlib import Path
from time import sleep

from rich.console import Console
from rich.markup import escape

from fastmask.errors import FastmaskError
from fastmask.views.board_html import write_html
from fastmask.views.board_parent import delta, verdict_word
from fastmask.views.board_rows import active, collect, gather, queued, tree, warning
from fastmask.views.board_table import COLUMNS, cells, param_columns, print_table, table_view

# what tests and notebooks import from here, as before the rows, the table and the page had modules of their own
__all__ = ["COLUMNS", "active", "board", "collect", "delta", "queued", "tree", "verdict_word", "watch"]


def _dirs(runs_dir):
    return [Path(d) for d in runs_dir] if isinstance(runs_dir, (list, tuple)) else [Path(runs_dir)]


def page_path(runs_dirs, out=None):
    """Where the page goes: `out`, else the first runs folder's index.html. A folder as `out` is a
    FastmaskError (the page is one file)."""
    if out is None:
        return runs_dirs[0] / "index.html"
    out = Path(out)
    if out.is_dir():
        raise FastmaskError(f"--out {out}: is a folder; give a file name such as {out / 'index.html'}")
    return out


def open_page(path, console):
    """Open the page in the browser (python's webbrowser) and print its file:// address either way: where no
    browser can be found (a server, a container) the address is what to open by hand."""
    uri = Path(path).resolve().as_uri()
    try:
        opened = webbrowser.open(uri)
    except Exception:  # noqa: BLE001  (webbrowser.Error, or a browser that failed to start: say where the page is)
        opened = False
    console.print(f"board: {escape(uri)}" + ("" if opened else " (no browser found here: open it by hand)"),
                  soft_wrap=True)
    return uri


def board(runs_dir="runs", html_out=True, console=None, columns=(), params=False, rejudge=False, archived=False,
          out=None, open_it=False):
    """Print the tree table of one runs folder or a list of them (with the parameter columns `columns`, and
    with `params` every recipe field that varies; archived runs only with `archived`); write the page (the
    first folder's index.html, or `out`) unless html_out is False, and with `open_it` open it in the browser;
    with `rejudge`, rewrite every run's verdict on the evidence there is now. Returns the rows (archived ones
    included)."""
    dirs = _dirs(runs_dir)
    target = page_path(dirs, out) if html_out else None  # before any output: a bad --out is one line, exit 2
    rows = gather(dirs, rejudge=rejudge)
    shown = param_columns(rows, columns, params)  # before any output: a bad name is one line, exit 2
    console = console or Console()
    print_table(rows, dirs if len(dirs) > 1 else dirs[0], console, shown, params, archived)
    if html_out:
        console.print(f"board: {escape(str(write_html(rows, target, archived=archived, folders=dirs)))}", soft_wrap=True)
        if open_it:
            open_page(target, console)
    return rows


def watch(runs_dir="runs", every=10.0, html_out=True, console=None, columns=(), params=False, rejudge=False,
          archived=False, out=None, open_it=False, keep_watching=False):
    """`board` again every `every` seconds until nothing is running or queued in any of the folders (one line
    says so), or with `keep_watching` until Ctrl-C (a KeyboardInterrupt, which the caller ends on): each round
    rewrites the page; the table is printed when some cell changed since it was last printed, else one line
    says the page was rewritten. A warning about a folder is said once, not every round; `rejudge` rewrites
    the verdicts in the first round only; `open_it` opens the page after the first round. Returns the last
    round's rows."""
    dirs, console = _dirs(runs_dir), console or Console()
    target = page_path(dirs, out) if html_out else None
    where = ", ".join(map(str, dirs))
    said, shown_cells = set(), None
    def warn(message):
        if message not in said:
            said.add(message)
            warning(message)
    rounds = 0
    while True:
        rows = gather(dirs, warn=warn, rejudge=rejudge and not rounds)
        shown = param_columns(rows, columns, params)
        now = datetime.now().strftime("%H:%M:%S")
        written = write_html(rows, target, reload_s=every, archived=archived, folders=dirs) if html_out else None
        rounds += 1
        visible, cols, _ = table_view(rows, shown, archived)
        table_cells = [cells(r, cols) for r in visible]
        running, waiting = (sum(r["status"] == s for r in rows) for s in ("running", "queued"))
        if table_cells != shown_cells:
            print_table(rows, dirs if len(dirs) > 1 else dirs[0], console, shown, params, archived)
            shown_cells = table_cells
            changed = "changed"
        else:
            changed = "no change"
        if rounds == 1:
            until = "until Ctrl-C" if keep_watching else "until no run is running and no queue waits (Ctrl-C ends it sooner)"
            console.print(f"[dim]board: watching {escape(where)} every {every:g} s {until}[/]")
            if written and open_it:
                open_page(written, console)
        console.print(f"[dim]board {now}: {len(rows) - waiting} runs ({running} running"
                      + (f", {waiting} queued" if waiting else "") + f"), {changed}"
                      + (f"; {escape(str(written))} rewritten" if written else "") + "[/]")
        if not keep_watching and not active(rows):
            console.print(f"board: no run is running and no queue waits in {escape(where)}: stopped watching",
                          soft_wrap=True)
            return rows
        sleep(every)

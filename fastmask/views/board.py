"""The board: every run folder as a row, the rows as a tree under their parents, shown as a rich table
(board_table) and as index.html (board_html), with a live queue's jobs that have no run folder yet as "queued"
rows after them (board_rows); `watch` rewrites both every few seconds while runs train, one run index a round."""
from datetime import datetime
from pathlib import Path
from time import sleep

from rich.console import Console
from rich.markup import escape

from fastmask.views.board_html import write_html
from fastmask.views.board_rows import active, collect, delta, queued, tree, verdict_word, warning
from fastmask.views.board_table import COLUMNS, cells, param_columns, print_table

# what tests and notebooks import from here, as before the rows, the table and the page had modules of their own
__all__ = ["COLUMNS", "active", "board", "collect", "delta", "queued", "tree", "verdict_word", "watch"]


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
            warning(message)
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

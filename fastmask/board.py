"""fastmask board [RUNS_DIR ...] [--params] [--columns lr,cutmix] [--archived] [--rejudge] [--no-html]
                 [--out PAGE] [--open] [--watch [SECONDS] [--keep-watching]]

Shows the runs as a tree under their parents (a rich table) and writes RUNS_DIR/index.html: a table to
sort, filter (by words, status or tag) and tick runs in to compare them (their fields, figures, learning
curves, and a child's per-class F1 against its parent), each run's card, notes and plots folded below it;
one static file that opens offline and links only files that exist. Several runs folders (one per team
member) make one table and one page, written to the first folder's index.html unless --out. Archived runs
are hidden (counted) unless --archived."""
import math
import sys

from fastmask import console
from fastmask.errors import FastmaskError, Parser, cli
from fastmask.views.board import board, watch

WATCH_S = 10.0


def main(argv):
    ap = Parser(prog=console.prog("board"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("runs", nargs="*", default=[], metavar="RUNS_DIR",
                    help="runs folders (default: runs/); several make one board with a column naming each")
    ap.add_argument("--params", action="store_true",
                    help="add a column for every recipe field that differs between the runs shown")
    ap.add_argument("--columns", default="", metavar="FIELDS",
                    help="comma-separated recipe fields to show as columns, e.g. lr,cutmix,epochs")
    ap.add_argument("--archived", action="store_true",
                    help="show archived runs in the table too (the page has a toggle for them)")
    ap.add_argument("--rejudge", action="store_true",
                    help="judge every run again on the evidence there is now and rewrite its card's verdict "
                         "(the old verdict stays in metrics.json's verdict_history)")
    ap.add_argument("--no-html", action="store_true", help="print the table only; do not write index.html")
    ap.add_argument("--out", default=None, metavar="PAGE",
                    help="write the page here instead of the first runs folder's index.html")
    ap.add_argument("--open", action="store_true",
                    help="open the page in the browser and print its file:// address")
    ap.add_argument("--watch", nargs="?", const=str(WATCH_S), default=None, metavar="SECONDS",
                    help=f"keep going: rewrite the page every SECONDS (default {WATCH_S:g}) and print the table when "
                         "it changed, until nothing is running or queued (or Ctrl-C); the page reloads itself "
                         "while a run is running")
    ap.add_argument("--keep-watching", action="store_true",
                    help="with --watch: go on when nothing is running or queued, until Ctrl-C")
    args = ap.parse_args(argv)
    every = None
    if args.watch is not None:
        try:
            every = float(args.watch)
        except ValueError:
            if args.runs:
                raise FastmaskError(f"{ap.prog}: --watch: {args.watch!r} is not a number of seconds") from None
            args.runs, every = [args.watch], WATCH_S  # `board --watch runs/`: the folder, at the default period
        if not (math.isfinite(every) and every > 0):
            raise FastmaskError(f"{ap.prog}: --watch: {args.watch} is not a positive number of seconds")
    if args.keep_watching and every is None:
        raise FastmaskError(f"{ap.prog}: --keep-watching goes with --watch")
    if args.no_html and (args.open or args.out):
        raise FastmaskError(f"{ap.prog}: --no-html writes no page: it cannot go with --{'open' if args.open else 'out'}")
    runs = args.runs or ["runs"]
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    common = dict(html_out=not args.no_html, columns=columns, params=args.params, rejudge=args.rejudge,
                  archived=args.archived, out=args.out, open_it=args.open)
    if every is None:
        board(runs, **common)
        return 0
    try:
        watch(runs, every, keep_watching=args.keep_watching, **common)
    except KeyboardInterrupt:  # Ctrl-C is how --watch ends: not an error
        print(f"board: stopped watching {', '.join(runs)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main)())

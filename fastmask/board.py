"""fastmask board [RUNS_DIR] [--params] [--columns lr,cutmix] [--rejudge] [--no-html] [--watch [SECONDS]]

Shows the runs as a tree under their parents (a rich table) and writes RUNS_DIR/index.html: a table to
sort, filter and tick runs in to compare them (their fields, figures and learning curves), each run's card
and plots folded below it; one static file that opens offline and links only files that exist."""
import math
import sys

from fastmask import console
from fastmask.errors import FastmaskError, Parser, cli
from fastmask.views.board import board, watch

WATCH_S = 10.0


def main(argv):
    ap = Parser(prog=console.prog("board"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("runs", nargs="?", default=None, help="runs folder (default: runs/)")
    ap.add_argument("--params", action="store_true",
                    help="add a column for every recipe field that differs between the runs shown")
    ap.add_argument("--columns", default="", metavar="FIELDS",
                    help="comma-separated recipe fields to show as columns, e.g. lr,cutmix,epochs")
    ap.add_argument("--rejudge", action="store_true",
                    help="judge every run again on the evidence there is now and rewrite its card's verdict "
                         "(the old verdict stays in metrics.json's verdict_history)")
    ap.add_argument("--no-html", action="store_true", help="print the table only; do not write index.html")
    ap.add_argument("--watch", nargs="?", const=str(WATCH_S), default=None, metavar="SECONDS",
                    help=f"keep going: rewrite index.html every SECONDS (default {WATCH_S:g}) and print the table "
                         "when it changed, until Ctrl-C; the page reloads itself while a run is running")
    args = ap.parse_args(argv)
    every = None
    if args.watch is not None:
        try:
            every = float(args.watch)
        except ValueError:
            if args.runs is not None:
                raise FastmaskError(f"{ap.prog}: --watch: {args.watch!r} is not a number of seconds") from None
            args.runs, every = args.watch, WATCH_S  # `board --watch runs/`: the folder, at the default period
        if not (math.isfinite(every) and every > 0):
            raise FastmaskError(f"{ap.prog}: --watch: {args.watch} is not a positive number of seconds")
    runs = "runs" if args.runs is None else args.runs
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    if every is None:
        board(runs, html_out=not args.no_html, columns=columns, params=args.params, rejudge=args.rejudge)
        return 0
    try:
        watch(runs, every, html_out=not args.no_html, columns=columns, params=args.params, rejudge=args.rejudge)
    except KeyboardInterrupt:  # Ctrl-C is how --watch ends: not an error
        print(f"board: stopped watching {runs}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main)())

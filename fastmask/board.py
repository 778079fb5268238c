"""fastmask board [RUNS_DIR] [--params] [--columns lr,cutmix] [--rejudge] [--no-html]

Shows the runs as a tree under their parents (a rich table) and writes RUNS_DIR/index.html: a table to
sort, filter and tick runs in to compare them, each run's card and plots folded below it; one static file
that opens offline and links only files that exist."""
import sys

from fastmask import console
from fastmask.errors import Parser, cli
from fastmask.views.board import board


def main(argv):
    ap = Parser(prog=console.prog("board"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("runs", nargs="?", default="runs", help="runs folder (default: runs/)")
    ap.add_argument("--params", action="store_true",
                    help="add a column for every recipe field that differs between the runs shown")
    ap.add_argument("--columns", default="", metavar="FIELDS",
                    help="comma-separated recipe fields to show as columns, e.g. lr,cutmix,epochs")
    ap.add_argument("--rejudge", action="store_true",
                    help="judge every run again on the evidence there is now and rewrite its card's verdict "
                         "(the old verdict stays in metrics.json's verdict_history)")
    ap.add_argument("--no-html", action="store_true", help="print the table only; do not write index.html")
    args = ap.parse_args(argv)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    board(args.runs, html_out=not args.no_html, columns=columns, params=args.params, rejudge=args.rejudge)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main)())

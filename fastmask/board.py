"""python -m fastmask.board [RUNS_DIR] [--no-html]

Shows the runs as a tree under their parents (a rich table) and writes RUNS_DIR/index.html: the same
table plus every card and plot, one static file that opens offline and links only files that exist."""
import argparse
import sys

from fastmask.errors import cli
from fastmask.runs.board import board


def main(argv):
    ap = argparse.ArgumentParser(prog="python -m fastmask.board", description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("runs", nargs="?", default="runs", help="runs folder (default: runs/)")
    ap.add_argument("--no-html", action="store_true", help="print the table only; do not write index.html")
    args = ap.parse_args(argv)
    board(args.runs, html_out=not args.no_html)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main)())

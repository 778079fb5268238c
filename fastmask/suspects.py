"""python -m fastmask.suspects RUN_DIR [--review [--top N]]

Re-ranks a k-fold run's suspect labels (suspects.csv) from its out-of-fold predictions (oof.csv) and, on a
synthetic twin, scores the ranking against the twin's noise.csv. --review writes RUN_DIR/review.html: each
suspect beside its person's other photos, boxes to tick what is wrong, and a button that downloads the data
folder's relabel.csv with the ticked corrections added."""
import sys
from pathlib import Path

from fastmask import console
from fastmask.errors import Parser


def main(argv):
    ap = Parser(prog=console.prog("suspects"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("run", metavar="RUN_DIR", help="a k-fold run folder (holding oof.csv)")
    ap.add_argument("--review", action="store_true",
                    help="write RUN_DIR/review.html: tick the wrong labels, download relabel.csv")
    ap.add_argument("--top", type=int, default=50, metavar="N", help="--review: the first N suspects (default 50)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    if args.top < 1:
        ap.error(f"--top {args.top}: at least 1")
    from fastmask.report.suspects import line, rescore
    from fastmask.store.folder import OOF
    if not args.review or (Path(args.run) / OOF).is_file():  # a review alone can do with suspects.csv as it is
        print(line(rescore(args.run)))
    if args.review:
        from fastmask.views.review import write
        path, shown, total, root = write(args.run, top=args.top)
        print(f"review page: {path} ({shown} of {total} suspects); open it in a browser, tick what is wrong, "
              f"download relabel.csv into {root}")
    return 0


if __name__ == "__main__":
    from fastmask.errors import cli
    sys.exit(cli(main)())

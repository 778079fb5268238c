"""python -m fastmask.suspects RUN_DIR

Re-ranks a k-fold run's suspect labels (suspects.csv) from its out-of-fold predictions (oof.csv) and, on a
synthetic twin, scores the ranking against the twin's noise.csv."""
import sys

from fastmask import console
from fastmask.errors import Parser


def main(argv):
    ap = Parser(prog=console.prog("suspects"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("run", metavar="RUN_DIR", help="a k-fold run folder (holding oof.csv)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    from fastmask.report.suspects import line, rescore
    print(line(rescore(args.run)))
    return 0


if __name__ == "__main__":
    from fastmask.errors import cli
    sys.exit(cli(main)())

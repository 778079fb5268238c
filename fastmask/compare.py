"""fastmask compare RUN_A RUN_B [RUN_C ...] [--out compare.png]

Sets runs beside the first (A): the config fields that differ, the figures with their deltas and the paired
test when both predicted the same images, per-class F1 side by side, and the learning curves overlaid
(validation macro F1 and loss per epoch; several folds or seeds: their mean) in a PNG."""
import sys

from fastmask import console
from fastmask.errors import FastmaskError, Parser, cli
from fastmask.views.compare import compare_runs


def main(argv):
    ap = Parser(prog=console.prog("compare"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders; the first is the reference (A)")
    ap.add_argument("--out", default="compare.png", help="the PNG to write (default: compare.png here)")
    ap.add_argument("--resamples", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    if len(args.runs) < 2:
        raise FastmaskError(f"compare needs two run folders or more, got only {args.runs[0]}")
    compare_runs(args.runs, out=args.out, n=args.resamples)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main)())

"""fastmask plan RUN_DIR [--effect 0.02]

What would decide the run's hypothesis: from the seed noise and the person noise its verdict measured, how
many paired seeds, how many validation people, or which k-fold on this data would resolve an effect of
--effect macro F1 (default: the recipe's min_effect) at 80 % power."""
import sys
from pathlib import Path

from fastmask import console
from fastmask.errors import FastmaskError, Parser, cli


def main(argv):
    ap = Parser(prog=console.prog("plan"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("run", metavar="RUN_DIR", help="a finished run folder of a recipe with a parent")
    ap.add_argument("--effect", type=float, metavar="F", help="the effect to resolve (default: the recipe's min_effect)")
    ap.add_argument("--runs", help="the runs folder to pool evidence from (default: the run folder's own)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    if args.effect is not None and not 0 < args.effect < 1:
        raise FastmaskError(f"--effect {args.effect:g}: give a macro F1 difference in (0, 1), e.g. 0.02")
    from fastmask.report.judgement import plan_for
    for line in plan_for(Path(args.run), args.runs, args.effect):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main)())

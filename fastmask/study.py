"""fastmask report [RUNS_DIR ...] [--out study.html|study.md] [--archived]

The study report: the tree of hypotheses of one or more runs folders (one per team member), each recipe under
its parent with its verdict, effect and interval, seeds or folds, notes, tags and the plot that decides it;
the open questions with the command that would decide each; the best recipe so far and how far it is from the
root. Made from the run folders alone: run it again at any time. Default: RUNS_DIR/study.html."""
import sys

from fastmask import console
from fastmask.errors import Parser


def main(argv):
    ap = Parser(prog=console.prog("report"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("runs", nargs="*", default=["runs"], metavar="RUNS_DIR", help="runs folders (default: runs/)")
    ap.add_argument("--out", help="the report: .html (default RUNS_DIR/study.html) or .md")
    ap.add_argument("--archived", action="store_true", help="include archived runs")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    from fastmask.views.study import best, open_questions, write
    out, study = write(args.runs, args.out, archived=args.archived, warn=lambda line: print(line, file=sys.stderr))
    b, q = best(study), open_questions(study)
    print(f"study report: {out} ({len(study.nodes)} recipes, {len(q)} open question{'s' if len(q) != 1 else ''}"
          + (f"; best so far {b[0].name}, {b[1]} {b[2]:.3f}" if b else "") + ")")
    return 0


if __name__ == "__main__":
    from fastmask.errors import cli
    sys.exit(cli(main)())

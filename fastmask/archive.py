"""fastmask archive RUN [RUN ...] [--restore] [--runs DIR]

Puts runs away: the board and the terminal table hide archived runs (the board has a toggle to show them),
no file is deleted, and an archived run stays evidence for the verdicts that used it (their cards say so).
--restore brings runs back. RUN is a run folder or a unique prefix of its name."""
import sys

from fastmask.note import card_follows, mlflow_follows, parser


def main(argv):
    ap = parser("archive", __doc__)
    ap.add_argument("more", nargs="*", metavar="RUN", help="more runs")
    ap.add_argument("--restore", action="store_true", help="bring the runs back onto the board")
    args = ap.parse_args(argv)
    from fastmask.store import notebook
    runs = [notebook.resolve(r, args.runs) for r in [args.run, *args.more]]  # all found before any is changed
    books = [notebook.read(r) for r in runs]
    for run, book in zip(runs, books):
        if (book.archived is not None) == (not args.restore):
            print(f"{run.name}: already {'archived' if book.archived else 'on the board'}")
            continue
        notebook.append(run, "restore" if args.restore else "archive")
        print(f"{run.name}: {'restored to the board' if args.restore else 'archived (hidden from the board)'}")
        card_follows(run, citing=True)
        mlflow_follows(run)
    return 0


if __name__ == "__main__":
    from fastmask.errors import cli
    sys.exit(cli(main)())

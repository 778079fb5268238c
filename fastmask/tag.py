"""fastmask tag RUN [TAG ...] [--remove] [--runs DIR]

Tags a run (`keep`, `baseline`, `submitted`, ...): the board shows the tags as chips and filters by them.
--remove takes the tags off. Without TAG, prints the run's tags. RUN is a run folder or a unique prefix of
its name. The run's card.md is written again to show them."""
import sys

from fastmask.note import card_follows, mlflow_follows, parser


def main(argv):
    ap = parser("tag", __doc__)
    ap.add_argument("tags", nargs="*", metavar="TAG", help="tags to add (letters, digits, . _ : + / -)")
    ap.add_argument("--remove", action="store_true", help="remove the tags instead")
    args = ap.parse_args(argv)
    from fastmask.store import notebook
    for t in args.tags:  # every tag checked before the first is written
        notebook.check_tag(t)
    run = notebook.resolve(args.run, args.runs)
    tags = notebook.read(run).tags
    for t in dict.fromkeys(args.tags):
        if (t in tags) != args.remove:
            continue  # adding a tag it has, removing one it has not: nothing to record
        notebook.append(run, "untag" if args.remove else "tag", tag=t)
    tags = notebook.read(run).tags
    print(f"{run.name}: " + (f"tags {', '.join(tags)}" if tags else "no tags"))
    if args.tags:
        card_follows(run)
        mlflow_follows(run)
    return 0


if __name__ == "__main__":
    from fastmask.errors import cli
    sys.exit(cli(main)())

"""fastmask note RUN ["text"] [--runs DIR]

Adds a dated note, signed with your user and host, to a run folder's notebook: the conclusion you drew, what to
try next. Without text, prints the run's notes. RUN is a run folder or a unique prefix of its name (the UTC
stamp or the recipe name) in the runs folder. Nothing training wrote is touched; the run's card.md (a view
made from its records) is written again so its Notes section shows the note."""
import os
import sys

from fastmask import console
from fastmask.errors import FastmaskError, Parser, one_line


def parser(name, doc):
    ap = Parser(prog=console.prog(name), description=" ".join(doc.split("\n\n", 1)[1].split()))
    ap.add_argument("run", metavar="RUN", help="a run folder, or a unique prefix of its name in the runs folder")
    ap.add_argument("--runs", default="runs", help="runs folder to find RUN in (default: runs/)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap


def mlflow_follows(run):
    """With tracking on ($FASTMASK_MLFLOW), the run's MLflow tags and description follow its notebook."""
    if os.environ.get("FASTMASK_MLFLOW", "").strip():  # else no MLflow import: the command stays instant
        from fastmask.runs.tracking import sync_notebook
        line = sync_notebook(run)
        if line:
            print(line)


def card_follows(run, citing=False):
    """The run's card.md, a view generated from its records and notebook, written again so its Notes section
    is current; with `citing`, also the cards whose verdict pooled this run (they say it is archived). The
    note is already recorded: a card that cannot be rewritten is one line on stderr, not a failure."""
    from fastmask.runs.cards import citing as cited_by, rewrite_card
    for d in [run, *(cited_by(run) if citing else [])]:
        try:
            rewrite_card(d)
        except Exception as e:  # noqa: BLE001  (the notebook holds the event; only its view lags)
            print(f"{d.name}: card.md not rewritten ({one_line(e)})", file=sys.stderr)


def main(argv):
    ap = parser("note", __doc__)
    ap.add_argument("text", nargs="?", help="the note (quote it); leave it out to list the run's notes")
    args = ap.parse_args(argv)
    from fastmask.store import notebook
    run = notebook.resolve(args.run, args.runs)
    if args.text is None:
        notes = notebook.read(run).notes
        for n in notes:
            print(f"{n['at']}  {n['user']}@{n['host']}\n  " + n["text"].replace("\n", "\n  "))
        if not notes:
            print(f"{run.name}: no notes yet; add one with: fastmask note {run.name} \"what you concluded\"")
        return 0
    text = args.text.strip()
    if not text:
        raise FastmaskError("note: the text is empty")
    notebook.read(run)  # a damaged notebook is refused before anything is added to it
    ev = notebook.append(run, "note", text=text)
    print(f"{run.name}: note added ({ev['user']}@{ev['host']}, {ev['at']})")
    card_follows(run)
    mlflow_follows(run)
    return 0


if __name__ == "__main__":
    from fastmask.errors import cli
    sys.exit(cli(main)())

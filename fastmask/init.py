"""fastmask init [DIR]

Writes the shipped recipes into DIR/recipes (default: the current folder), ready to run and edit:
`fastmask run recipes/person_split.py`. Existing files are never overwritten: if one is in the way, nothing
is written and the command names it."""
import shlex
import sys
from pathlib import Path

from fastmask import console
from fastmask.errors import FastmaskError, Parser


def shipped():
    """{file name: text} of the recipes package installed with fastmask (its __init__.py included, so a
    project's recipes/ is a regular package and its `recipes.<name>` imports find the project's files)."""
    # beside the fastmask package (site-packages, or the source tree of an editable install), not by import:
    # `recipes` in sys.modules or on sys.path may be the user's own project package
    where = Path(__file__).resolve().parent.parent / "recipes"
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(where.glob("*.py"))}
    if "__init__.py" not in files or "baseline.py" not in files:
        raise FastmaskError("the shipped recipes were not found (the `recipes` package installed with fastmask); "
                            "reinstall fastmask")
    return files


def init(folder="."):
    """Write the shipped recipes into `folder`/recipes; refuses (writing nothing) when a file is there."""
    files = shipped()
    dest = Path(folder) / "recipes"
    if dest.exists() and not dest.is_dir():
        raise FastmaskError(f"{dest}: exists and is not a folder")
    for name in files:
        if (dest / name).exists():
            raise FastmaskError(f"{dest / name}: already exists; not overwriting it (move it away, or init another folder)")
    written = []
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            with open(dest / name, "x", encoding="utf-8") as f:  # "x": never replace a file that appeared meanwhile
                written.append(dest / name)
                f.write(text)
    except FileExistsError as e:
        _undo(written)  # ours only: the file in the way is someone else's
        raise FastmaskError(f"{e.filename}: appeared while writing; not overwriting it") from None
    except OSError as e:  # a read-only place, a file where a folder should be, a full disk: half a set helps nobody
        _undo(written)
        raise FastmaskError(f"{e.filename or dest}: cannot write the recipes there ({e.strerror})") from None
    return dest, sorted(n for n in files if n != "__init__.py")


def _undo(paths):
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def main(argv):
    ap = Parser(prog=console.prog("init"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("folder", nargs="?", default=".", metavar="DIR", help="project folder (default: here)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    dest, names = init(args.folder)
    print(f"wrote {len(names)} recipes to {dest}/: {', '.join(n[:-3] for n in names)}")
    # from the project folder, as the README says: runs/ and data/twin go there, and recipes/ is found there
    here = Path(args.folder).resolve()
    go = "" if here == Path.cwd().resolve() else f"cd {shlex.quote(str(here))} && "
    print(f"run one with: {go}{console.command_line('run', 'recipes/person_split.py', '--set', 'epochs=1')}")
    return 0


if __name__ == "__main__":
    from fastmask.errors import cli
    sys.exit(cli(main)())

"""fastmask COMMAND [ARGS ...]  (`python -m fastmask COMMAND ...` does the same)

One command for the whole loop: each subcommand is the entry point `fastmask/<command>.py`, given the rest of
the command line unchanged. Bad input exits with status 2 and one line; --debug shows tracebacks."""
import difflib
import importlib
import os
import sys

from fastmask import console
from fastmask.errors import FastmaskError, cli

# name: (module whose main(argv) runs it, one line for --help)
COMMANDS = {
    "init": ("fastmask.init", "write the shipped recipes into DIR/recipes (default: here), never overwriting"),
    "run": ("fastmask.run", "train one recipe and record it in its own run folder (card, verdict, model)"),
    "compare": ("fastmask.compare", "runs side by side: config diff, metric deltas with the paired test, curves"),
    "board": ("fastmask.board", "every run in a runs folder as a table, plus RUNS/index.html"),
    "report": ("fastmask.study", "the study report: the tree of hypotheses, verdicts, open questions, best so far"),
    "predict": ("fastmask.predict", "predict eval images with a model or an ensemble; write submission.csv"),
    "plan": ("fastmask.plan", "what would decide a run's hypothesis: seeds, validation people or k-fold for an effect"),
    "search": ("fastmask.search", "optuna search over a recipe's space(trial); every trial a recorded run"),
    "note": ("fastmask.note", "add a dated, signed note to a run (what you concluded); without text, list them"),
    "tag": ("fastmask.tag", "tag a run (keep, baseline, ...) or --remove tags; the board filters by them"),
    "archive": ("fastmask.archive", "hide runs from the board without deleting a file (--restore brings them back)"),
    "synth": ("fastmask.synth", "write a synthetic twin of the data set (train/, eval/ with answers)"),
    "suspects": ("fastmask.suspects", "re-rank a k-fold run's suspect labels from its out-of-fold predictions"),
    "mlflow-sync": ("fastmask.mlflow_sync", "log run folders made before tracking was on into MLflow"),
}


def usage():
    width = max(map(len, COMMANDS))
    lines = ["usage: " + __doc__.splitlines()[0], "", "commands:"]
    lines += [f"  {name.ljust(width)}  {line}" for name, (_, line) in COMMANDS.items()]
    lines += ["", "`fastmask COMMAND --help` shows a command's options; `fastmask --version` the version."]
    return "\n".join(lines)


def entry(name):
    """The main(argv) of command `name` (imported on demand, so `fastmask --help` stays fast), unwrapped from
    an entry point's own `cli` so that the one `cli` around it sees --debug."""
    if name not in COMMANDS:
        close = difflib.get_close_matches(name.replace("_", "-"), COMMANDS, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else f"; the commands are {', '.join(COMMANDS)}"
        raise FastmaskError(f"unknown command {name!r}{hint}")
    main = importlib.import_module(COMMANDS[name][0]).main
    return getattr(main, "__wrapped__", main)


def main(argv=None):
    """The `fastmask` console script and `python -m fastmask`: runs `fastmask COMMAND ARGS...` as the command's
    main(ARGS) through errors.cli (bad input: one line, exit 2) and returns the exit status."""
    from_shell, argv = argv is None, sys.argv[1:] if argv is None else list(argv)
    if "--debug" in argv[:1]:  # `fastmask --debug run ...` means `fastmask run ... --debug`
        argv = argv[1:] + ["--debug"]
    if not argv or argv[0] in ("-h", "--help") or argv == ["help"]:
        print(usage())
        return 0
    if argv[0] == "--version":
        from fastmask import __version__
        print(f"fastmask {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name == "help":  # `fastmask help run` = `fastmask run --help`
        name, rest = rest[0], ["--help"]
    via = "fastmask"
    if from_shell:  # the command line as `python -m fastmask.<command>` would see it (a run records it)
        if os.path.basename(sys.argv[0]) == "__main__.py":
            via = "python -m fastmask"
        sys.argv = [sys.argv[0], *rest]
    with console.dispatched(via):  # its --help says `fastmask run`, not `python -m fastmask.run`
        code = cli(lambda args: entry(name)(args))(rest)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m fastmask.search RECIPE.py --trials N [--storage URL] [--study NAME] [--set k=v ...] [--data DIR] [--runs DIR]

Searches the recipe file's `space(trial)` with optuna: every trial is a recorded run, the best becomes a recipe.

`--trials N` is the study's total over every worker on one `--storage`: start the same command on several
machines (or one per GPU) and they split the N trials; run it again with a larger N to extend the study.
`--storage`: a SQLAlchemy URL, a .db file (sqlite), or any other file for optuna's JournalStorage (a file on
a shared disk); default RUNS/search.db. See fastmask/tune/search.py for the space's form."""
import argparse
import logging
import sys

from fastmask import console
from fastmask.errors import Parser


def parse(argv):
    lines = __doc__.splitlines()
    ap = Parser(prog=console.prog("search"), description=lines[2], epilog="\n".join(lines[4:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", help="a recipe file with a `space(trial)`, e.g. recipes/search_lr_cutmix.py")
    ap.add_argument("--trials", type=int, required=True, help="trials in the study in all (shared by its workers)")
    ap.add_argument("--storage", help="optuna storage (default: RUNS/search.db)")
    ap.add_argument("--study", help="study name (default: the recipe's name)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe field for every trial and the baseline (repeatable)")
    ap.add_argument("--data", help="folder holding train/ and eval/ (default: the synthetic twin under data/)")
    ap.add_argument("--runs", default="runs", help="runs folder (default: runs/)")
    ap.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"),
                    help="optuna pruner (default: median, from the 6th trial, never at the first epoch)")
    ap.add_argument("--seed", type=int, help="TPE sampler seed (give each worker its own, or none)")
    ap.add_argument("--best", help="where to write the best recipe (default: <study>_best.py beside RECIPE)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="do not train the searched recipe itself first (its cards then lack a verdict)")
    ap.add_argument("--skip-bad", action="store_true", help="skip unreadable images and bad folders")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap.parse_args(argv)


class _SaidOnce(logging.Filter):
    """optuna's warnings for a trial that raised (with a traceback): fastmask prints its own line for a
    trial that failed (FastmaskError), and the command's error for anything else."""
    def filter(self, record):
        msg = record.getMessage()
        return not (msg.startswith("Trial ") and ("following error: FastmaskError" in msg
                                                  or msg.endswith("failed with value None.")))


def quiet_optuna():
    """The command's output: fastmask's own line per trial, not optuna's INFO lines ("A new study
    created", "Trial 0 finished with value ..."); optuna's warnings still show. Set here, for this
    command only: the library (fastmask.tune.search) leaves optuna's logging to its caller."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    log = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _SaidOnce) for f in log.filters):
        log.addFilter(_SaidOnce())


def main(argv):
    args = parse(argv)
    from fastmask.tune.search import search  # here: without optuna, one line says what to install
    quiet_optuna()
    res = search(args.recipe, args.trials, sets=args.sets, data=args.data, runs_dir=args.runs, storage=args.storage,
                 study_name=args.study, pruner=args.pruner, seed=args.seed, best_path=args.best,
                 train_baseline=not args.no_baseline, skip_bad=args.skip_bad)
    if res.ran == 0:
        print(f"search: study {res.study.study_name} already holds {args.trials} trials; "
              "ask for more with a larger --trials")
    return 0


if __name__ == "__main__":
    from fastmask.errors import cli
    sys.exit(cli(main)())

"""fastmask run RECIPE.py [RECIPE.py|FOLDER ...] [--set key=value ...] [--data DIR] [--runs DIR] [--decide [N]]
[--effect E] [--no-parent] [--jobs N] [--cpus-per-run N] [--ray auto|ADDRESS] [--dry-run] [--quiet]

Trains one recipe (one model, or one per fold with split="kfold:K") and records it in its own run folder, after
training the parent recipe's run first when there is no comparable one, so the card ends with a verdict. Several
recipes (or a folder of them) form a queue: their missing parents first, N runs at a time (--jobs), then a table
of what ran, what was reused, what failed and each verdict; with --ray each run is a task on a Ray cluster."""
import math
import sys
from pathlib import Path

from fastmask import console
from fastmask.errors import FastmaskError, Parser

DEFAULT_DECIDE = 6  # as report.judgement.DEFAULT_DECIDE, without importing torch for --help


def parse(argv):
    ap = Parser(prog=console.prog("run"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("recipe", nargs="+", help="a recipe file, e.g. recipes/person_split.py; several, or a folder "
                                             "of them, make a queue")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe field (repeatable), e.g. --set epochs=1 --set size=64,48")
    ap.add_argument("--data", help="folder holding train/ and eval/ (default: the synthetic twin under data/)")
    ap.add_argument("--runs", default="runs", help="runs folder (default: runs/)")
    ap.add_argument("--replicates", type=int, metavar="N",
                    help="train N seeds on the same split (same as --set replicates=N)")
    ap.add_argument("--decide", nargs="?", type=int, const=DEFAULT_DECIDE, metavar="N",
                    help=f"plan and train the design that decides the verdict against the parent (paired seeds or "
                         f"person k-fold), at most N models a side "
                         f"(default {DEFAULT_DECIDE}; same as --set decide=N)")
    ap.add_argument("--decide-minutes", type=float, metavar="M", help="--decide's time budget: plan within M minutes")
    ap.add_argument("--effect", type=float, metavar="E",
                    help="--decide: the smallest change of macro F1 worth knowing (e.g. 0.03); the plan picks the "
                         "cheapest design that resolves it (same as --set min_effect=E)")
    ap.add_argument("--anyway", action="store_true",
                    help="--decide: when no design within the budget resolves the effect, train the best it allows")
    ap.add_argument("--no-parent", action="store_true",
                    help="do not train the parent's missing runs first (the verdict uses the runs that exist)")
    ap.add_argument("--jobs", type=int, metavar="N",
                    help="a queue: run N recipes at a time, each with its share of the CPU threads (or a GPU each); "
                         "with --decide: its models N at a time")
    ap.add_argument("--cpus-per-run", type=int, metavar="N",
                    help="a queue: CPU threads per run (default: this machine's cores / --jobs; with --ray 1 CPU)")
    ap.add_argument("--ray", metavar="auto|ADDRESS",
                    help="a queue on Ray: each run a task with its CPUs (and a GPU when the cluster has GPUs) on "
                         "the cluster at ADDRESS, or with auto the running one, else a local one started now; "
                         "--jobs caps how many are in flight. Every node must see the runs folder, the recipes "
                         "and the data at the same paths (pip install 'fastmask[ray]')")
    ap.add_argument("--dry-run", action="store_true", help="a queue: print the plan (what runs after what), train nothing")
    ap.add_argument("--skip-bad", action="store_true", help="skip unreadable images and bad folders instead of stopping")
    ap.add_argument("--quiet", action="store_true",
                    help=f"no progress bars or epoch lines: warnings, errors and the result only (or {console.ENV_QUIET}=1)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    m = args.decide_minutes
    if m is not None and not (math.isfinite(m) and m > 0):  # 0, -1, nan would each read as "no limit"
        raise FastmaskError(f"{ap.prog}: --decide-minutes {m:g}: not a positive number of minutes (leave it out for "
                            "no time limit)")
    e = args.effect
    if e is not None and not (math.isfinite(e) and 0 < e < 1):
        raise FastmaskError(f"{ap.prog}: --effect {e:g}: a change of macro F1 in (0, 1), e.g. 0.03")
    return args


def main(argv):
    args = parse(argv)
    if args.replicates is not None:
        args.sets.append(f"replicates={args.replicates}")
    if args.decide is not None:
        args.sets.append(f"decide={args.decide}")
    if args.effect is not None:
        args.sets.append(f"min_effect={args.effect}")
    terminate_as_interrupt()  # before the heavy imports, so a SIGTERM at any point ends the run cleanly
    console.line_buffered()  # into a pipe (`| tee log`) each line as it is printed
    engine = args.jobs is not None or args.ray is not None or args.cpus_per_run is not None
    one = len(args.recipe) == 1 and not Path(args.recipe[0]).is_dir()
    deciding = one and not args.dry_run and args.decide is not None  # --decide's models as jobs of the queue's engine
    if not deciding and (not one or engine or args.dry_run):
        if args.no_parent or args.decide_minutes is not None or args.effect is not None or args.anyway:
            raise FastmaskError("--no-parent, --decide-minutes, --effect and --anyway are for one recipe, not a queue")
        if args.ray is not None:
            check_ray(args.ray)
        from fastmask.runs.queue import run_queue
        return run_queue(args.recipe, args.sets, data=args.data, runs_dir=args.runs, jobs=args.jobs,
                         dry_run=args.dry_run, skip_bad=args.skip_bad, cpus=args.cpus_per_run, ray=args.ray)
    if args.ray is not None:
        check_ray(args.ray)
    for flag, n in (("--jobs", args.jobs), ("--cpus-per-run", args.cpus_per_run)):
        if n is not None and n < 1:
            raise FastmaskError(f"{flag} {n}: at least 1")
    from fastmask.runs.hypothesis import run_file
    with console.using(console.QUIET if args.quiet else None):  # else: bars on a terminal, lines elsewhere
        return run_file(args.recipe[0], args.sets, data=args.data, runs_dir=args.runs, skip_bad=args.skip_bad,
                        parent=not args.no_parent, minutes=args.decide_minutes, effect=args.effect,
                        anyway=args.anyway, jobs=args.jobs, cpus=args.cpus_per_run, ray=args.ray)


def check_ray(address):
    """Before torch and fastai's import (seconds): no Ray installed, or a dead or silent address, is one line."""
    from fastmask.runs.on_ray import NEEDS_RAY, has_ray, reachable, trying
    if not has_ray():
        raise FastmaskError(NEEDS_RAY)
    print(trying(address), flush=True)
    reachable(address)


def terminate_as_interrupt():
    """SIGTERM (`timeout`, a scheduler, `kill`) ends a run the way Ctrl-C does: cleanly, status recorded."""
    import signal

    from fastmask.errors import redelivered

    def handler(signum, frame):
        raise redelivered() or KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    from fastmask.errors import cli
    sys.exit(cli(main)())

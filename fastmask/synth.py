"""The synthetic twin of the private competition data set: `python -m fastmask.synth OUT_DIR`.

The real photos are not on these machines, so every loader, split and recipe is exercised on a
twin that copies the real set's layout, quirks and label statistics (dataset-facts.md) and whose
drawn faces carry the three cues a small CNN can learn: where the mask sits, gender, and age.
Age cues change smoothly with age and vary between identities, so 58/59/60 are as hard to tell
apart as in the real photos. Unlike the real set, the twin also writes the eval answers and a log
of the label noise it injected, so hold-out scores and noise handling can be measured.

Determinism: the population (ids, ages, genders, extensions, noise) comes from one generator
seeded by `seed`; every identity and every photo has its own generator keyed by (seed, id, ...),
so pixels do not depend on the order or the process in which people are drawn.
"""
import signal
import sys
import threading
import time

from fastmask import console
from fastmask.errors import FastmaskError, Parser, cli
from fastmask.twin import default_eval_people, make_twin


def parse_size(text: str) -> tuple:
    """'384x512' -> (384, 512): width x height, like the real photos."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise FastmaskError(f"--size: expected WIDTHxHEIGHT such as 384x512, got {text!r}")
    return int(parts[0]), int(parts[1])


def _parser():
    p = Parser(prog=console.prog("synth"),
               description="Write a synthetic twin of the mask/gender/age data set.")
    p.add_argument("out_dir", help="folder to write train/, eval/, noise.csv, preview.png into")
    p.add_argument("--people", type=int, default=300, help="train person folders (default 300)")
    p.add_argument("--eval-people", type=int, default=None,
                   help="eval people (default round(people*2/3), like the real 2700/1800)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="384x512", help="WIDTHxHEIGHT of each photo (default 384x512)")
    p.add_argument("--workers", type=int, default=None, help="drawing processes (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@cli
def main(argv):
    # SIGTERM (`timeout`, `kill`) ends the drawing as Ctrl-C does: workers stopped, the partial folder
    # removed, "fastmask: interrupted" and exit 130 (cli), instead of a silent death and orphaned workers
    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        return _main(argv)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old)


def _main(argv):
    args = _parser().parse_args(argv)
    size = parse_size(args.size)
    start = time.perf_counter()
    out = make_twin(args.out_dir, people=args.people, eval_people=args.eval_people,
                    seed=args.seed, size=size, progress=not args.quiet, workers=args.workers)
    n_eval = default_eval_people(args.people) if args.eval_people is None else args.eval_people
    print(f"wrote twin to {out}: {args.people} train folders, {n_eval} eval people, "
          f"{size[0]}x{size[1]}, seed {args.seed}, in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main(sys.argv[1:])

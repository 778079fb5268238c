"""Cold start: seconds from `python -m fastmask.run` to its first training batch, divided by the
seconds of a bare `python -c "import fastai.vision.all"`, measured alternately in one run.

    python bench/coldstart.py [--rounds 3] [--recipe recipes/person_split.py]

The run is watched until it prints "run folder:", which it does right before the first batch
(the default twin and its image cache are made first, outside the timed rounds)."""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}


def to_first_batch(recipe, runs):
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "fastmask.run", recipe, "--runs", runs, "--set", "epochs=1"],
                         cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        if line.startswith("run folder:"):
            dt = time.perf_counter() - t
            break
    else:
        raise SystemExit("the run ended before training started")
    p.kill()
    p.wait()
    return dt


def bare_import():
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import fastai.vision.all"], env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--recipe", default="recipes/person_split.py")
    a = ap.parse_args()
    import tempfile
    runs = tempfile.mkdtemp(prefix="coldstart-runs-")
    to_first_batch(a.recipe, runs)  # makes the twin and the cache if missing; warms the file cache
    fm, bare = [], []
    for _ in range(a.rounds):
        fm.append(to_first_batch(a.recipe, runs))
        bare.append(bare_import())
    fm, bare = min(fm), min(bare)
    print(f"to first batch {fm:.2f} s, bare fastai import {bare:.2f} s, ratio {fm / bare:.2f} (best of {a.rounds})")


if __name__ == "__main__":
    main()

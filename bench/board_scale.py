"""How the board's cost grows with the runs folder: N fake finished run folders (no training), the board built
in-process as `fastmask board` builds it (the rows, the tree, the table, index.html), imports done beforehand.

The folder is a team's: N/4 hypotheses, each a parent recipe and a child recipe with two seeds apiece (parent
seed 0, child seed 0, parent seed 1, child seed 1, in that order). The first child run's recorded verdict was
written before the second seeds came in, so the board re-judges it (judgement.stale); the second's is current.
Every folder holds what a finished run leaves for the board: config.json, status.json, metrics.json,
history.csv and valid_preds.csv.

    OMP_NUM_THREADS=1 python bench/board_scale.py [--sizes 20,200] [--rounds 1] [--root /tmp/board_scale]

Prints, per size, the seconds to build the board, seconds per run, and the files opened per run folder
(builtins.open / io.open counted while the board is built); then the time ratio of the largest size to the
smallest. Linear growth: the per-run time stays flat (time ratio = size ratio)."""
import argparse
import builtins
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PEOPLE = 40  # validation people a run predicted (7 photos each)


def fields():
    from fastmask.recipe import Recipe
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in Recipe().fields().items()}


def valid_rows(acc, seed, salt):
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(salt)
    rows = []
    for i in range(PEOPLE):
        label, right = i % 18, rng.random() < acc
        rows += [dict(path=f"/d/{i:04d}/{k}.jpg", person=f"{i:06d}", label=label,
                      pred=label if right else (label + 1 + k) % 18, seed=seed) for k in range(7)]
    return pd.DataFrame(rows)


def make_run(runs, folder, seed, acc, base, parent=None, verdict=None):
    """A finished run folder `folder` (<stamp>-<recipe>) as the board reads it."""
    d = Path(runs) / folder
    name = folder.split("-", 1)[1]
    d.mkdir(parents=True)
    cfg = {"name": name, "parent": parent, "fields": {**base, "seed": seed, "replicates": 1},
           "parent_fields": base if parent else None, "data_fingerprint": "fp1", "n_people": 300,
           "hypothesis": f"{name} helps." if parent else None, "overrides": {}, "data": "/d/twin"}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "status.json").write_text(json.dumps({"status": "finished", "started": "2026-01-01T00:00:00+00:00",
                                               "minutes": 1.5}))
    m = {"macro_f1": acc, "accuracy": acc, "holdout_macro_f1": acc - 0.05, "epochs_run": 3}
    if verdict:
        m["verdict"] = verdict
    (d / "metrics.json").write_text(json.dumps(m))
    (d / "history.csv").write_text("epoch,train_loss,valid_loss,macro_f1,accuracy,time\n"
                                   + "".join(f"{e},1.0,0.9,{acc - 0.1 + 0.05 * e:.3f},0.5,00:05\n" for e in range(3)))
    valid_rows(acc, seed, salt=sum(folder.encode())).to_csv(d / "valid_preds.csv", index=False)


def make_folder(runs, n):
    """n run folders (a multiple of 4): n/4 hypotheses of two seeds each, on both sides."""
    base = fields()
    stamps = (f"20260101T{i:06d}Z" for i in range(1, 10 * n))
    for k in range(n // 4):
        p, c = f"base{k:04d}", f"child{k:04d}"
        p0, c0, p1, c1 = (f"{next(stamps)}-{name}" for name in (p, c, p, c))
        make_run(runs, p0, 0, 0.4, base)
        make_run(runs, c0, 0, 0.5, base, parent=p,  # judged before the second seeds: stale now
                 verdict={"verdict": "unreplicated", "delta": 0.1, "parent_run": p0, "parent_runs": [p0],
                          "child_runs": [c0]})
        make_run(runs, p1, 1, 0.4, base)
        make_run(runs, c1, 1, 0.5, base, parent=p,  # judged on all four: current
                 verdict={"verdict": "inconclusive", "delta": 0.1, "parent_run": p1, "parent_runs": [p1, p0],
                          "child_runs": [c1, c0]})


class Opens:
    """Counts the files opened under `root` (builtins.open and io.open: pathlib and pandas go through them)."""

    def __init__(self, root):
        self.root, self.n = str(Path(root).resolve()), 0
        self.real = builtins.open

    def _open(self, file, *a, **k):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(os.fspath(file)).startswith(self.root):
            self.n += 1
        return self.real(file, *a, **k)

    def __enter__(self):
        builtins.open = io.open = self._open
        return self

    def __exit__(self, *exc):
        builtins.open = io.open = self.real


def build(runs):
    """What `fastmask board RUNS` does, its console into a string."""
    from rich.console import Console

    from fastmask.views.board import board
    return board(runs, html_out=True, console=Console(file=io.StringIO(), width=200))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20,200")
    ap.add_argument("--rounds", type=int, default=1, help="boards built per size (the best kept)")
    ap.add_argument("--root", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "board_scale"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    make_folder(root / "warm", 4)
    build(root / "warm")  # imports (fastai's, through the re-judging) and first-call costs: not timed
    out = {}
    for n in sizes:
        runs = root / f"runs{n}"
        make_folder(runs, n)
        best, opens = None, None
        for _ in range(args.rounds):
            with Opens(runs) as count:
                t = time.perf_counter()
                rows = build(runs)
                took = time.perf_counter() - t
            best = took if best is None else min(best, took)
            opens = count.n
        assert len(rows) == n, (len(rows), n)
        out[n] = best
        print(f"N={n}: board {best:.2f} s, {1000 * best / n:.1f} ms per run, {opens / n:.1f} file opens per run folder",
              flush=True)
    lo, hi = min(sizes), max(sizes)
    print(f"time ratio N={hi} / N={lo}: {out[hi] / out[lo]:.1f} (size ratio {hi / lo:g}; per-run time ratio "
          f"{(out[hi] / hi) / (out[lo] / lo):.2f})")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

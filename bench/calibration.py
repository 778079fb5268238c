"""The verdict's false-claim and detection rates on real runs of the twin (tests/test_calibration.py does the
same on planted prediction tables).

    python bench/calibration.py [--seeds 8] [--decide 4] [--comparisons 200] [--data DIR] [--runs DIR]
                                [--run RUN_DIR] [--set key=value ...]

1. Trains one run of `--recipe` (default recipes/person_split.py, `--no-parent`) with `--replicates SEEDS` at
   tiny settings (test_resnet, 32x24, a few epochs; `--set` overrides them) on `--data` (default: a twin of
   300 people at 48x64 drawn under --runs). `--run` reuses a finished run folder with several seeds instead.
2. A/A: draws `--comparisons` splits of those seeds into a "child" and a "parent" of `--decide` seeds each
   (relabelled 0..M-1, so seed s of one pairs with seed s of the other: the same recipe, independent
   training noise) and runs the `--decide` loop on each (judge at 2, 3, ... M paired seeds, stop at the first
   supported / refuted / no effect, the design capped at M). Every claim is false.
3. Planted effect: the same splits, with a share q of the validation images (the same in each of the child's
   seeds) predicted right, q chosen so the mean planted delta is `--times` (2) x the median MDE the A/A
   verdicts stated at M seeds, then x the MDE the verdicts on the planted splits themselves state (a
   planted gain is uneven across people, so it raises the MDE it is judged with); the share of decide loops
   that say "supported".

The splits reuse the same few trained models, so they are not independent: read the rates as a check of
the order of magnitude, not to a binomial standard error. Prints the figures; writes nothing but the run.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TINY = {"arch": "test_resnet", "size": "32,24", "epochs": "4", "bs": "16", "pretrained": "false"}
DECIDED = ("supported", "refuted", "no effect")


def train(args):
    """The run folder with the seeds: `--run`, else a fresh run of the recipe with --replicates."""
    if args.run:
        return Path(args.run)
    runs = Path(args.runs)
    data = Path(args.data) if args.data else runs / "twin"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}  # fastmask/__init__ sets NO_ALBUMENTATIONS_UPDATE
    if not (data / "train").is_dir():
        subprocess.run([sys.executable, "-m", "fastmask.synth", str(data), "--people", "300", "--size", "48x64"],
                       check=True, env=env, cwd=REPO)
    sets = {**TINY, **dict(s.split("=", 1) for s in args.set)}
    cmd = [sys.executable, "-m", "fastmask.run", args.recipe, "--no-parent", "--quiet", "--replicates", str(args.seeds),
           "--data", str(data), "--runs", str(runs / "runs"), *[x for k, v in sets.items() for x in ("--set", f"{k}={v}")]]
    print("$", " ".join(cmd[1:]), flush=True)
    before = set((runs / "runs").glob("*")) if (runs / "runs").is_dir() else set()
    t = time.time()
    subprocess.run(cmd, check=True, env=env, cwd=REPO)
    (run,) = set((runs / "runs").glob("*")) - before
    print(f"trained {args.seeds} seeds in {(time.time() - t) / 60:.1f} min: {run}")
    return run


def relabel(frame, seeds):
    """The rows of `seeds`, their seed values relabelled 0..len-1 in that order."""
    rows = frame[frame["seed"].isin(seeds)].copy()
    rows["seed"] = rows["seed"].map({s: i for i, s in enumerate(seeds)})
    return rows


def plant(frame, q, rng):
    """A share q of the validation images (the same ones in every seed: a systematic gain spread over the
    people) predicted right."""
    paths = frame["path"].unique()
    fixed = rng.choice(paths, int(round(q * len(paths))), replace=False)
    out = frame.copy()
    hit = out["path"].isin(fixed)
    out.loc[hit, "pred"] = out.loc[hit, "label"]
    return out


def final_look(child, parent, m, n):
    from fastmask.report.verdict import compare
    from fastmask.store.run_folder import RunFolder
    return compare(RunFolder(Path("child"), config={"fields": {"seed": 0}}, metrics={}, valid=child),
                   RunFolder(Path("parent"), config={"fields": {"seed": 0}}, metrics={}, valid=parent), max_seeds=m, n=n)


def decide(child, parent, m, n):
    from fastmask.report.verdict import compare
    from fastmask.store.run_folder import RunFolder

    def record(name, frame, k):
        return RunFolder(Path(name), config={"fields": {"seed": 0}}, metrics={}, valid=frame[frame["seed"] < k])
    for k in range(2, m + 1):
        v = compare(record("child", child, k), record("parent", parent, k), max_seeds=m, n=n)
        if v is None or v["verdict"] in DECIDED or v["verdict"] == "neither learned":
            break
    return v


def calibrate(valid, splits, m, args, mde=None):
    """(q, mean planted delta, median MDE the planted verdicts state at m seeds) with the delta about
    args.times x `mde`, or x the planted verdicts' own MDE when `mde` is None: bisection on q."""
    lo, hi = 0.0, 1.0
    for _ in range(10):
        q = (lo + hi) / 2
        r = np.random.default_rng(1)
        got = [final_look(plant(relabel(valid, list(s[:m])), q, r), relabel(valid, list(s[m:])), m, args.boot)
               for s in splits]
        effect, stated = float(np.mean([v["delta"] for v in got])), float(np.median([v["mde"] for v in got]))
        lo, hi = (q, hi) if effect < args.times * (stated if mde is None else mde) else (lo, q)
    return q, effect, stated


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="recipes/person_split.py")
    ap.add_argument("--seeds", type=int, default=8, help="seeds to train (at least 2 x --decide)")
    ap.add_argument("--decide", type=int, default=4, help="paired seeds per side: the decide loop's cap M")
    ap.add_argument("--comparisons", type=int, default=200, help="splits of the seeds into child and parent")
    ap.add_argument("--times", type=float, default=2.0, help="the planted effect in units of the stated MDE")
    ap.add_argument("--boot", type=int, default=400, help="bootstrap draws per verdict")
    ap.add_argument("--data"), ap.add_argument("--runs", default="/tmp/fastmask-calibration"), ap.add_argument("--run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the tiny settings")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import pandas as pd
    from sklearn.metrics import f1_score

    from fastmask.report.verdict import chance_f1

    run = train(args)
    valid = pd.read_csv(Path(run) / "valid_preds.csv", dtype={"person": str})
    seeds = sorted(valid["seed"].unique())
    m = args.decide
    if len(seeds) < 2 * m:
        sys.exit(f"{run}: {len(seeds)} seeds; the A/A splits need 2 x --decide = {2 * m}")
    f1 = [f1_score(g.label, g.pred, average="macro", zero_division=0) for _, g in valid.groupby("seed")]
    frames = [g for _, g in valid.groupby("seed")]
    print(f"{run.name}: {len(seeds)} seeds, {valid.person.nunique()} validation people; macro F1 "
          f"{np.mean(f1):.3f} +- {np.std(f1, ddof=1):.3f} (seed sd), chance level {chance_f1(frames):.3f}")
    rng = np.random.default_rng(0)
    splits = [rng.permutation(seeds)[: 2 * m] for _ in range(args.comparisons)]
    t = time.time()
    aa = [decide(relabel(valid, list(s[:m])), relabel(valid, list(s[m:])), m, args.boot) for s in splits]
    words = pd.Series([v["verdict"] if v else "no test" for v in aa]).value_counts().to_dict()
    claims = sum(v is not None and v["verdict"] in ("supported", "refuted") for v in aa)
    mdes = [v["mde"] for v in aa if v and v.get("seeds", 0) == m and v.get("mde") is not None]
    mde = float(np.median(mdes)) if mdes else float("nan")
    print(f"A/A: {args.comparisons} splits of {len(seeds)} seeds into {m} + {m}, decide loop capped at {m}: "
          f"false claims {claims} ({claims / len(aa):.1%}); verdicts {json.dumps(words)}; "
          f"median MDE at {m} seeds {mde:.3f} ({time.time() - t:.0f} s)")
    if not mdes:
        return 0
    for reference in ("a/a", "planted"):
        q, effect, stated = calibrate(valid, splits[:20], m, args, mde if reference == "a/a" else None)
        r = np.random.default_rng(2)
        planted = [decide(plant(relabel(valid, list(s[:m])), q, r), relabel(valid, list(s[m:])), m, args.boot)
                   for s in splits]
        found = sum(v is not None and v["verdict"] == "supported" for v in planted)
        words = pd.Series([v["verdict"] if v else "no test" for v in planted]).value_counts().to_dict()
        ref = (f"the A/A's MDE {mde:.3f}" if reference == "a/a" else
               f"the MDE {stated:.3f} stated on these planted splits at {m} seeds")
        print(f"planted, {args.times:g} x {ref}: {q:.3f} of the images made right in each child seed, mean delta "
              f"{effect:+.3f} ({effect / (mde if reference == 'a/a' else stated):.2f} x); supported in {found} of "
              f"{len(planted)} ({found / len(planted):.0%}); verdicts {json.dumps(words)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost growth with the training set: twins of 300, 900 and 2,700 people with photos at the real 384x512.

For each size: drawing the twin, building the input cache at full resolution (384x288: time, disk, peak
memory), one epoch at 64x48 and at 128x96 (fastai's epoch time from history.csv, and the whole command),
and a 5-fold run of one epoch per fold (the whole command). Then, once (the work does not depend on the
training set): drawing a 12,600-image eval folder (1,800 people, as the real one) and predicting it plain and
with TTA n=4. Every step is its own process, timed alone, its peak memory measured by GNU time.

    python bench/scale.py [--people 300,900,2700] [--root /tmp/scale] [--out bench/scale.json]

Growth factors (time at 3x the people / time at 1x) are the point: linear growth is 3.0."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def timed(cmd, env=None):
    """(seconds, peak RSS in MiB: the largest of the process and the workers it waited for, by GNU time)."""
    mark = Path(os.environ.get("TMPDIR", "/tmp")) / f"scale-rss-{os.getpid()}"
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(mark), *map(str, cmd)], cwd=REPO,
                       env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - t
    if p.returncode:
        sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stderr[-2000:]}")
    return took, int(mark.read_text().split()[-1]) / 1024


def epoch_seconds(runs, before):
    """fastai's time for epoch 0 of the newest run folder made after `before` (mm:ss in history.csv)."""
    (d,) = [d for d in Path(runs).iterdir() if d.is_dir() and d.name not in before]
    import pandas as pd
    mm, ss = str(pd.read_csv(d / "history.csv")["time"].iloc[0]).split(":")
    return int(mm) * 60 + int(ss), d


def run(recipe, data, runs, sets, env):
    before = {d.name for d in Path(runs).iterdir()} if Path(runs).exists() else set()
    cmd = [PY, "-m", "fastmask.run", recipe, "--data", str(data), "--runs", str(runs)]
    for s in sets:
        cmd += ["--set", s]
    took, peak = timed(cmd, env)
    return took, peak, before


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", default="300,900,2700")
    ap.add_argument("--root", default="/tmp/scale")
    ap.add_argument("--out", default=str(REPO / "bench" / "scale.json"))
    ap.add_argument("--skip-kfold", action="store_true")
    ap.add_argument("--eval-people", type=int, default=1800, help="the eval folder's people (7 photos each)")
    args = ap.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    env = {"FASTMASK_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    rows = []
    for n in map(int, args.people.split(",")):
        twin, runs = root / f"twin{n}", root / f"runs{n}"
        row = {"people": n}
        row["gen_s"], row["gen_mib"] = timed([PY, "-m", "fastmask.synth", str(twin), "--people", str(n),
                                              "--eval-people", "0", "--quiet"], env)
        shutil.rmtree(twin / "eval")  # empty: the runs predict no holdout (the eval folder is timed once, below)
        import pandas as pd
        row["images"] = len(pd.read_csv(twin / "train" / "train.csv")) * 7
        row["twin_mb"] = sum(f.stat().st_size for f in twin.rglob("*") if f.is_file()) / 1e6
        cache_before = set((root / "cache").glob("*.npy"))
        code = ("import sys; from fastmask.data import read_train; from fastmask.data.cache import build; "
                "build(read_train(sys.argv[1])['path'], (384, 288), progress=False)")
        row["cache_s"], row["cache_mib"] = timed([PY, "-c", code, str(twin / "train")], env)
        (f,) = set((root / "cache").glob("*.npy")) - cache_before
        row["cache_gb"] = f.stat().st_size / 1e9
        for size in ("64,48", "128,96"):
            took, peak, before = run("recipes/person_split.py", twin, runs, ["epochs=1", f"size={size}"], env)
            row[f"epoch_{size}_s"], d = epoch_seconds(runs, before)
            row[f"run_{size}_s"], row[f"run_{size}_mib"] = took, peak
            if n == int(args.people.split(",")[0]) and size == "64,48":
                model_run = d
        if not args.skip_kfold:
            row["kfold5_s"], row["kfold5_mib"], _ = run("recipes/person_split.py", twin, runs,
                                                        ["epochs=1", "size=64,48", "split=kfold:5"], env)
        rows.append(row)
        print(json.dumps(row), flush=True)
    ev = root / "evalset"
    once = {}
    once["eval_gen_s"], _ = timed([PY, "-m", "fastmask.synth", str(ev), "--people", "30",
                                "--eval-people", str(args.eval_people),
                                   "--quiet"], env)
    once["eval_images"] = len(pd.read_csv(ev / "eval" / "info.csv"))
    for tta in (0, 4):
        once[f"predict_tta{tta}_s"], once[f"predict_tta{tta}_mib"] = timed(
            [PY, "-m", "fastmask.predict", str(model_run), "--eval", str(ev / "eval"), "--tta", str(tta),
             "--out", str(root / f"sub{tta}.csv")], env)
    print(json.dumps(once), flush=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "once": once}, indent=1) + "\n")


if __name__ == "__main__":
    main()

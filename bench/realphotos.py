"""Real-photo benchmark: the recipes a user tries first, at their defaults, on real faces.

For each seed and training size, lays ../shared/realphotos out as the competition's folders (bench/realtree.py:
made-up people, only the mask signal real), trains each recipe with `python -m fastmask.run` (no parent run:
the figure is the recipe's own), predicts the held-out people through `python -m fastmask.predict` with TTA,
and scores the submission as masked-vs-unmasked balanced accuracy (always answering "masked" scores 0.5),
with unmasked recall and the minutes the run took. Prints a markdown table (each row, then mean and range over
seeds) and writes the rows to --out as JSON.

    python bench/realphotos.py                                   # 75 and 150 people, seeds 0 1 2, four recipes
    python bench/realphotos.py --people 75 --seeds 0 --recipes person_split --set epochs=20
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realtree import lay_out  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["person_split", "oversample", "oversample_cutmix", "face_crop"]


def score(submission, answers):
    """(balanced accuracy masked vs unmasked, unmasked recall, masked recall), rows joined by ImageID."""
    sub = pd.read_csv(submission).merge(pd.read_csv(answers), on="ImageID", suffixes=("_pred", ""))
    truth_unmasked = sub["ans"] // 6 == 2
    pred_unmasked = sub["ans_pred"] // 6 == 2
    unmasked = float((pred_unmasked & truth_unmasked).sum() / truth_unmasked.sum())
    masked = float((~pred_unmasked & ~truth_unmasked).sum() / (~truth_unmasked).sum())
    return (unmasked + masked) / 2, unmasked, masked


def newest_run(runs, recipe):
    found = sorted(p for p in Path(runs).iterdir() if p.is_dir() and p.name.endswith("-" + recipe))
    return found[-1] if found else None


def one(tree, recipe, sets, tta, log):
    runs = tree / "runs"
    cmd = [sys.executable, "-m", "fastmask.run", str(ROOT / "recipes" / f"{recipe}.py"), "--data", str(tree),
           "--runs", str(runs), "--no-parent", "--quiet", *[a for s in sets for a in ("--set", s)]]
    t = time.time()
    r = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    minutes = (time.time() - t) / 60
    run = newest_run(runs, recipe)
    if r.returncode != 0 or run is None:
        return dict(status=f"failed ({r.returncode})", minutes=minutes)
    sub = tree / f"submission-{run.name}.csv"
    r = subprocess.run([sys.executable, "-m", "fastmask.predict", str(run), "--eval", str(tree / "eval"),
                        "--tta", str(tta), "--out", str(sub), "--quiet"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        return dict(status=f"predict failed ({r.returncode})", minutes=minutes)
    ba, unmasked, masked = score(sub, tree / "eval" / "answers.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    epochs = len(pd.read_csv(run / "history.csv")) if (run / "history.csv").exists() else None
    return dict(status="ok", balanced_accuracy=ba, unmasked_recall=unmasked, masked_recall=masked, minutes=minutes,
                valid_macro_f1=metrics.get("macro_f1"), epochs_run=epochs, run=str(run))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", default=str(ROOT.parent / "shared" / "realphotos"))
    p.add_argument("--people", type=int, nargs="+", default=[75, 150])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recipes", nargs="+", default=RECIPES)
    p.add_argument("--set", action="append", default=[], help="a recipe override for every run")
    p.add_argument("--tta", type=int, default=4)
    p.add_argument("--work", default="/tmp/fastmask-realbench")
    p.add_argument("--out", default=None, help="rows as JSON (default: WORK/results.json)")
    p.add_argument("--label", default="", help="a name for this configuration in the table")
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(work / "log.txt", "a") as log:
        for people in a.people:
            for seed in a.seeds:
                tree = work / f"p{people}-s{seed}"
                if not (tree / "eval" / "answers.csv").exists():
                    lay_out(a.photos, tree, people, seed=seed)
                for recipe in a.recipes:
                    log.write(f"\n=== {recipe} people={people} seed={seed} sets={a.set}\n")
                    log.flush()
                    row = dict(label=a.label, recipe=recipe, people=people, seed=seed, sets=a.set,
                               **one(tree, recipe, a.set, a.tta, log))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    out = Path(a.out or work / "results.json")
    old = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps(old + rows, indent=1))
    print(table(rows))


def table(rows):
    df = pd.DataFrame(rows)
    lines = ["| recipe | people | seeds | balanced acc. mean [min, max] | unmasked recall mean [min, max] | minutes mean |",
             "|---|---|---|---|---|---|"]
    for (recipe, people), g in df.groupby(["recipe", "people"], sort=False):
        ok = g[g["status"] == "ok"]
        if ok.empty:
            lines.append(f"| {recipe} | {people} | {len(g)} | failed | | |")
            continue
        ba, ur = ok["balanced_accuracy"], ok["unmasked_recall"]
        lines.append(f"| {recipe} | {people} | {len(ok)} | {ba.mean():.3f} [{ba.min():.3f}, {ba.max():.3f}] | "
                     f"{ur.mean():.3f} [{ur.min():.3f}, {ur.max():.3f}] | {ok['minutes'].mean():.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()

"""Time to a decision: real hypothesis pairs on the twin through `fastmask run CHILD --decide N --effect E`, each in
a fresh runs folder, and what the plan chose, how many models it trained, the minutes and the verdict.

    python bench/decide.py [--pairs large medium small] [--people 300] [--decide 6] [--effect 0.05]
                           [--anyway] [--set key=value ...] [--out bench/decide.json]

Pairs (child against parent):
- large:  `long` (person_split at the recipe's epochs) against `short` (person_split at 2 epochs): the same recipe
          trained much less, an effect of tenths;
- medium: `oversample` against `person_split` (the retrospective's oversampling);
- small:  `oversample_cutmix` against `oversample` (the retrospective's CutMix).
`long` and `short` are written into a copy of recipes/ in the bench's own folder, so the repository is not touched.
On paper beside it: the same design on the full 2,700-person set, from the minutes per model measured here
scaled by the images a model sees (the twin's people against 2,700)."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAIRS = {"large": "long", "medium": "oversample", "small": "oversample_cutmix"}
EXTRA = {"short.py": '"""person_split trained for 2 epochs: the weak parent of the large-effect pair."""\n'
                     "from recipes.person_split import recipe as parent\n\nrecipe = parent.but(epochs=2)\n",
         "long.py": '"""Training for the recipe\'s epochs instead of 2 raises macro F1: a large effect."""\n'
                    "from recipes.short import recipe as parent\nfrom recipes.person_split import recipe as full\n\n"
                    "recipe = parent.but(epochs=full.epochs)\n"}


def recipes_copy(root):
    dst = root / "recipes"
    shutil.copytree(REPO / "recipes", dst, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in EXTRA.items():
        (dst / name).write_text(text)
    return dst


def one(pair, recipes, data, runs, args, env):
    cmd = [sys.executable, "-m", "fastmask.run", str(recipes / f"{PAIRS[pair]}.py"), "--decide", str(args.decide),
           "--effect", str(args.effect), "--data", str(data), "--runs", str(runs), "--quiet",
           *(["--anyway"] if args.anyway else []),
           *[x for s in args.set for x in ("--set", s)]]
    print("$", " ".join(cmd[1:]), flush=True)
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    minutes = (time.perf_counter() - t) / 60
    said = [x for x in p.stdout.splitlines() if x.startswith("decide: ")]
    plan = " / ".join(x for x in said if x.startswith(("decide: plan", "decide: none", "decide: to resolve",
                                                       "decide: the effect measured")))
    final = next((x for x in reversed(p.stdout.splitlines()) if x.startswith("decide: ") and " min (" in x), "")
    models = len([d for d in runs.iterdir() if d.is_dir() and not d.name.startswith(".")]) if runs.is_dir() else 0
    per_model = [json.loads((d / "status.json").read_text()).get("minutes") for d in runs.iterdir()
                 if (d / "status.json").is_file()]
    folds = sum(int(m.group(1)) if (m := re.search(r"kfold:(\d+)", json.loads((d / "config.json").read_text())
                                                     .get("fields", {}).get("split", ""))) else 1
                for d in runs.iterdir() if (d / "config.json").is_file())
    row = {"pair": pair, "child": PAIRS[pair], "exit": p.returncode, "plan": plan, "final": final,
           "run_folders": models, "models": folds, "minutes": round(minutes, 1),
           "model_minutes": round(sum(m for m in per_model if m) / max(folds, 1), 2)}
    if p.returncode:
        row["error"] = (p.stderr.strip().splitlines() or [""])[-1]
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    ap.add_argument("--people", type=int, default=300)
    ap.add_argument("--decide", type=int, default=6)
    ap.add_argument("--effect", type=float, default=0.05)
    ap.add_argument("--anyway", action="store_true", help="train the best design the budget allows when none "
                                                          "resolves --effect (the one that decides the effect "
                                                          "measured so far, if any)")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", default=str(REPO / "bench" / "decide.json"))
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="decide-bench-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    data = root / "twin"
    subprocess.run([sys.executable, "-m", "fastmask.synth", str(data), "--people", str(args.people)], check=True,
                   env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    recipes = recipes_copy(root)
    rows = [one(pair, recipes, data, root / f"runs-{pair}", args, env) for pair in args.pairs]
    scale = 2700 / args.people
    print(f"\n| pair | design | models | minutes | verdict | on paper, 2,700 people (x{scale:.0f} images a model) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        plans = re.findall(r"decide: plan (.+?): \d+ models? a side", r["plan"])
        design = plans[-1] if plans else ("none within the budget" if r["plan"] else "(no plan: decided first)")
        paper = r["model_minutes"] * r["models"] * scale
        print(f"| {r['pair']} ({r['child']}) | {design} | {r['models']} | {r['minutes']} | "
              f"{re.sub(r'^decide: ', '', r['final'])} | {paper:.0f} min on this CPU |")
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

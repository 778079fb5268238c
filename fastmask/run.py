"""python -m fastmask.run RECIPE.py [--set key=value ...] [--data DIR] [--runs DIR] [--skip-bad]

Trains one recipe and records it in its own run folder."""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m fastmask.run", description=__doc__.splitlines()[2])
    ap.add_argument("recipe", help="a recipe file, e.g. recipes/person_split.py")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe field (repeatable), e.g. --set epochs=1 --set size=64,48")
    ap.add_argument("--data", help="folder holding train/ and eval/ (default: the synthetic twin under data/)")
    ap.add_argument("--runs", default="runs", help="runs folder (default: runs/)")
    ap.add_argument("--skip-bad", action="store_true", help="skip unreadable images and bad folders instead of stopping")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap.parse_args(argv)


def main(argv):
    args = parse(argv)
    from .errors import FastmaskError
    from .recipe import load_recipe, parse_sets
    recipe = load_recipe(args.recipe, parse_sets(args.sets))
    from .model import check_arch
    check_arch(recipe.arch)  # before any data work or run folder
    from .train import load_data
    if args.data is not None and not Path(args.data).exists():
        raise FastmaskError(f"--data {args.data}: no such folder")
    data = load_data(args.data, skip_bad=args.skip_bad)
    train_and_record(recipe, data, args.runs, overrides=parse_sets(args.sets))
    return 0


def train_and_record(recipe, data, runs_dir="runs", overrides=None):
    """Train `recipe` on `data` into a new run folder; returns the folder. Ctrl-C keeps the best so far."""
    import numpy as np
    import pandas as pd
    from fastai.callback.progress import CSVLogger

    from . import card, plots
    from .data import fingerprint
    from .metrics import scores
    from .record import Run, atomic_write, environment, write_json
    from .train import build_dls, build_learner, fit, predict, valid_frame

    dls = build_dls(recipe, data.train)
    learn = build_learner(recipe, dls)
    run = Run(runs_dir, recipe)
    cfg = {**recipe.config(), "hypothesis": recipe.hypothesis, "overrides": overrides or {},
           "data": str(data.root), "data_fingerprint": fingerprint(data.train), "n_images": len(data.train),
           "n_people": int(data.train["person"].nunique()), "environment": environment()}
    write_json(run.path("config.json"), cfg)
    print(f"run folder: {run.dir}")
    learn.path, learn.model_dir = run.dir, "models"
    status = "finished"
    try:
        cfg["lr_used"] = fit(recipe, learn, cbs=[CSVLogger(fname="history.csv")])
    except KeyboardInterrupt:
        status = "interrupted"
        best = run.path("models/best.pth")
        if best.exists():  # SaveModelCallback wrote the best epoch so far; keep that, not the half epoch
            learn.load("best", with_opt=False)
    write_json(run.path("config.json"), cfg)
    rows, probs = valid_frame(learn)
    pred = probs.argmax(1)
    metrics = scores(rows["label"].to_numpy(), pred)
    hist = pd.read_csv(run.path("history.csv")) if run.path("history.csv").exists() else pd.DataFrame()
    metrics["epochs_run"] = int(len(hist))
    vp = rows[["path", "person", "label"]].assign(pred=pred)
    atomic_write(run.path("valid_preds.csv"), pd.concat([vp.reset_index(drop=True),
                 pd.DataFrame(probs.round(5), columns=[f"p{i}" for i in range(probs.shape[1])])], axis=1).to_csv(index=False))
    if data.eval is not None and data.answers is not None and status == "finished":
        hp = predict(learn, data.eval["path"]).argmax(1)
        h = scores(data.answers["ans"].to_numpy(), hp)
        metrics.update(holdout_macro_f1=h["macro_f1"], holdout_accuracy=h["accuracy"],
                       holdout_task_f1={k: h[f"{k}_f1"] for k in ("mask", "gender", "age")})
    plots.save_confusion(rows["label"].to_numpy(), pred, run.path("confusion.png"))
    if len(hist):
        plots.save_curves(hist, run.path("curves.png"))
    export(learn, run.path("model.pkl"))
    atomic_write(run.path("card.md"), card.write_card(run, cfg, metrics, status, runs_dir))
    write_json(run.path("metrics.json"), metrics)
    run.mark(status)
    headline(run, metrics, status)
    if status == "interrupted":
        raise KeyboardInterrupt
    return run.dir


def export(learn, path):
    """learn.export through a temp name, without the training-only callbacks."""
    from fastai.callback.progress import CSVLogger
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, CSVLogger)])
    tmp = path.with_name(f".{path.name}.tmp")
    learn.export(tmp)
    os.replace(tmp, path)


def headline(run, metrics, status):
    line = f"{run.recipe.name} [{status}]: validation macro F1 {metrics['macro_f1']:.3f}, accuracy {metrics['accuracy']:.3f}"
    if "holdout_macro_f1" in metrics:
        line += f"; holdout macro F1 {metrics['holdout_macro_f1']:.3f}, accuracy {metrics['holdout_accuracy']:.3f}"
    v = metrics.get("verdict")
    if v:
        line += f"; vs parent: {v['verdict']}" + (f" ({v['delta']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}])" if "delta" in v else "")
    print(line)
    print(f"card: {run.path('card.md')}")


if __name__ == "__main__":
    from .errors import cli
    sys.exit(cli(main)())

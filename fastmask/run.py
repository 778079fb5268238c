"""python -m fastmask.run RECIPE.py [--set key=value ...] [--data DIR] [--runs DIR] [--skip-bad]

Trains one recipe (one model, or one per fold with split="kfold:K") and records it in its own run folder."""
import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

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
    from .distributed import main_first, setup
    setup(recipe)  # several processes (accelerate launch): check and join them; nothing otherwise
    from .kfold import n_folds
    from .train import load_data, preflight
    preflight(recipe)  # bad field values fail before any data work or run folder
    n_folds(recipe)
    if args.data is not None and not Path(args.data).exists():
        raise FastmaskError(f"--data {args.data}: no such folder")
    with main_first():
        data = load_data(args.data, skip_bad=args.skip_bad)
    d = train_and_record(recipe, data, args.runs, overrides=parse_sets(args.sets))
    if d is None:  # a rank > 0 of a data-parallel run: rank 0 records and reports
        return 0
    from .record import STATUS, read_json
    return 0 if read_json(d / STATUS, {}).get("status") == "finished" else 1  # partial: some folds failed


def train_and_record(recipe, data, runs_dir="runs", overrides=None, cbs=(), info=None):
    """Train `recipe` on `data` into a new run folder; returns the folder. Ctrl-C keeps the best so far.

    One model for a single split, one per fold for `split="kfold:K"`; both are recorded by `record`.
    `cbs`: extra fastai callbacks for fit; one that sets `run_status` (the search's pruning callback sets
    "pruned") stops the folds and names a run that would otherwise be "finished". `info`: extra
    config.json entries. Ranks > 0 of a data-parallel run train beside rank 0, write nothing, return None."""
    from .distributed import follow, is_main, share
    from .kfold import folds, n_folds
    from .tracking import tracker
    if not is_main():
        return follow(recipe, data, cbs)
    trk = tracker(runs_dir)  # None unless FASTMASK_MLFLOW is set; exit 2 if mlflow is missing
    run, cfg = start_run(recipe, data, runs_dir, overrides, info)
    share(run.dir)  # the other ranks load rank 0's best epoch from this folder
    parts = []
    for fold in folds(recipe):
        if fold is not None:
            run.mark("running", fold=fold, folds=len(folds(recipe)))
        part = train_part(recipe, data, run, fold, trk, cbs)
        parts.append(part)
        if part.status == "interrupted" or (part.status == "failed" and not part.keep_going) or asked_status(cbs):
            break
    status = run_status(parts)
    if status == "finished" and asked_status(cbs):
        status = asked_status(cbs)
    cfg["lr_used"] = parts[0].lr if len(parts) == 1 else [p.lr for p in parts]
    failed = {p.fold: p.error for p in parts if p.status == "failed"}
    extra = {"failed_folds": {str(k): v for k, v in failed.items()}} if failed and n_folds(recipe) else {}
    metrics, recorded = None, False
    try:
        write_json_cfg(run, cfg)
        metrics = record(run, cfg, parts, data, status, runs_dir) if any(p.rows is not None for p in parts) else None
        recorded = True
    finally:  # a crash or Ctrl-C while recording never leaves the run looking alive
        run.mark(status if recorded else "interrupted" if status == "interrupted" else "failed", **extra)
    if trk is not None:
        trk.finish(run.dir, status)
    if metrics is not None:
        headline(run, metrics, status)
    if status == "interrupted":
        raise KeyboardInterrupt
    if status == "failed":
        raise next(p.exc for p in parts if p.exc is not None)
    for fold, err in failed.items():
        print(f"fastmask: warning: fold {fold} failed ({err}); the run keeps the other folds", file=sys.stderr)
    return run.dir


def asked_status(cbs):
    """The run status an extra callback asks for (e.g. "pruned"), or None."""
    return next((s for cb in cbs if (s := getattr(cb, "run_status", None))), None)


def start_run(recipe, data, runs_dir, overrides, info=None):
    """The run folder and its config.json, written before any training."""
    from .data import fingerprint
    from .record import Run, environment
    run = Run(runs_dir, recipe)
    cfg = {**recipe.config(), "hypothesis": recipe.hypothesis, "overrides": overrides or {},
           "data": str(data.root), "data_fingerprint": fingerprint(data.train), "n_images": len(data.train),
           "n_people": int(data.train["person"].nunique()), "environment": environment(), **(info or {})}
    write_json_cfg(run, cfg)
    print(f"run folder: {run.dir}")
    return run, cfg


def write_json_cfg(run, cfg):
    from .record import write_json
    write_json(run.path("config.json"), cfg)


@dataclass
class Part:
    """One trained model of a run: the single split's, or fold `fold`'s."""
    fold: Optional[int]
    status: str = "finished"        # finished / interrupted / failed
    model: Optional[Path] = None    # the exported learner
    rows: Any = None                # validation rows (path, person, label, ...) as the learner saw them
    probs: Any = None               # their class probabilities
    eval_probs: Any = None          # holdout probabilities (data with answers, finished parts only)
    history: Any = None             # per-epoch history (a DataFrame, empty when none was written)
    lr: Any = None
    error: Optional[str] = None
    exc: Optional[BaseException] = None
    keep_going: bool = False        # a failed fold lets the next folds run (not for bad input)

    @property
    def name(self):
        return "model" if self.fold is None else f"fold{self.fold}"


def train_part(recipe, data, run, fold, trk=None, cbs=()):
    """Build, fit, predict and export one model. Ctrl-C keeps its best epoch; a crash is recorded, not raised.

    Under several processes every rank fits (fastai's distrib_ctx); only rank 0 logs, predicts and exports."""
    import gc

    import pandas as pd
    from fastai.callback.progress import CSVLogger

    from .distributed import context, is_main
    from .errors import FastmaskError
    from .kfold import fold_recipe
    from .infer import predict_probs
    from .train import build_dls, build_learner, fit, valid_frame

    part, main = Part(fold), is_main()
    hist_name = "history.csv" if fold is None else f"history_{part.name}.csv"
    r = fold_recipe(recipe, fold)
    if fold is not None:
        print(f"fold {fold}: training")
    learn = None
    try:
        learn = build_learner(r, build_dls(r, data.train))
        learn.path, learn.model_dir = run.dir, "models" if fold is None else f"models/{part.name}"
        trained = True
        try:
            log = [CSVLogger(fname=hist_name), *([trk.for_fold(fold)] if trk else [])] if main else []
            with context(learn):
                part.lr = fit(r, learn, cbs=[*log, *cbs])
        except KeyboardInterrupt:
            part.status = "interrupted"
            trained = (run.dir / learn.model_dir / "best.pth").exists()
            if trained:  # SaveModelCallback wrote the best epoch so far; keep that, not the half epoch
                learn.load("best", with_opt=False)
        if main and (trained or fold is None):  # an untrained fold would spoil the OOF figures and the fold ensemble
            part.rows, part.probs = valid_frame(learn)
            if data.eval is not None and data.answers is not None and part.status == "finished":
                part.eval_probs = predict_probs(learn, data.eval["path"])
            part.model = run.path(f"{part.name}.pkl")
            export(learn, part.model)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside fit: nothing of this part is kept
        part.status, part.rows = "interrupted", None
    except Exception as e:  # noqa: BLE001  (recorded in status.json; re-raised when no fold finished)
        part.status, part.exc = "failed", e
        part.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
        part.keep_going = fold is not None and not isinstance(e, FastmaskError)
        part.rows = part.probs = part.eval_probs = None
    finally:
        del learn
        gc.collect()
    h = run.path(hist_name)
    part.history = pd.read_csv(h) if main and h.exists() else pd.DataFrame()
    return part


def run_status(parts):
    """interrupted > failed (nothing usable) > partial (some folds failed) > finished."""
    if any(p.status == "interrupted" for p in parts):
        return "interrupted"
    done = [p for p in parts if p.status == "finished"]
    if not done:
        return "failed"
    return "partial" if len(done) < len(parts) else "finished"


def record(run, cfg, parts, data, status, runs_dir):
    """Everything a run folder holds beside config.json, the same for one model or k folds: validation
    (out-of-fold) predictions, metrics, holdout figures from the soft vote of the finished models,
    plots and card, plus the k-fold extras. Returns the metrics."""
    from . import card, plots
    from .kfold import oof_frame, probs_of
    from .metrics import scores
    from .record import atomic_write, write_json

    kfold = parts[0].fold is not None
    oof = oof_frame([(p.fold, p.rows, p.probs) for p in parts if p.rows is not None])
    pred = probs_of(oof).argmax(1)
    metrics = scores(oof["label"].to_numpy(), pred)
    hist = history(parts, kfold)
    metrics["epochs_run"] = int(hist.groupby("fold").size().max()) if kfold and len(hist) else int(len(hist))
    write_predictions(run, oof, pred, kfold)
    if status in ("finished", "partial"):
        metrics.update(holdout(parts, data, kfold))
    if kfold:
        atomic_write(run.path("history.csv"), hist.to_csv(index=False))
        metrics.update(fold_figures(parts, oof, pred))
        metrics.update(record_suspects(run, oof, data))
        link_first_fold(run, parts)
    plots.save_confusion(oof["label"].to_numpy(), pred, run.path("confusion.png"),
                         title="out of fold" if kfold else "validation")
    if len(hist):  # k folds: the per-epoch mean over folds
        plots.save_curves(hist.groupby("epoch", as_index=False).mean(numeric_only=True) if kfold else hist,
                          run.path("curves.png"))
    atomic_write(run.path("card.md"), card.write_card(run, cfg, metrics, status, runs_dir))
    write_json(run.path("metrics.json"), metrics)
    return metrics


def history(parts, kfold):
    """The parts' per-epoch histories as one frame (with a `fold` column for k folds)."""
    import pandas as pd
    frames = [p.history.assign(fold=p.fold) if kfold else p.history for p in parts if len(p.history)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_predictions(run, oof, pred, kfold):
    """valid_preds.csv (path, person, label, pred, p0..p17[, fold]: the verdict's input) and, for k
    folds, oof.csv (path, person, label, p0..p17, fold: every training image once)."""
    import pandas as pd
    from .record import atomic_write
    vp = pd.concat([oof[["path", "person", "label"]].assign(pred=pred),
                    oof.drop(columns=["path", "person", "label", *([] if kfold else ["fold"])])], axis=1)
    atomic_write(run.path("valid_preds.csv"), vp.to_csv(index=False))
    if kfold:
        atomic_write(run.path("oof.csv"), oof.to_csv(index=False))


def holdout(parts, data, kfold):
    """Holdout figures of the soft vote of the finished models (one model for a single split)."""
    from .infer import soft_vote
    from .metrics import macro_f1, scores
    done = [p for p in parts if p.eval_probs is not None]
    if not done:
        return {}
    h = scores(data.answers["ans"].to_numpy(), soft_vote([p.eval_probs for p in done]).argmax(1))
    out = {"holdout_macro_f1": h["macro_f1"], "holdout_accuracy": h["accuracy"],
           "holdout_task_f1": {k: h[f"{k}_f1"] for k in ("mask", "gender", "age")}}
    if kfold:
        out["holdout_folds"] = [macro_f1(data.answers["ans"], p.eval_probs.argmax(1)) for p in done]
        out["holdout_models"] = [p.name for p in done]
    return out


def fold_figures(parts, oof, pred):
    """Per-fold macro F1, their mean and std, and each fold's status."""
    from .kfold import cv_summary
    from .metrics import macro_f1
    per = [macro_f1(oof["label"][oof["fold"] == f], pred[(oof["fold"] == f).to_numpy()]) for f in oof["fold"].unique()]
    return {**cv_summary(per), "fold_status": {str(p.fold): p.status for p in parts}}


def record_suspects(run, oof, data):
    """suspects.csv from the OOF predictions; precision against the twin's noise.csv when there is one."""
    from . import suspects
    m = suspects.record(oof, run.path("suspects.csv"), data.root)
    print(suspects.line(m))
    return m


def link_first_fold(run, parts):
    """model.pkl: the first exported fold's learner, as a hard link (a copy where links fail)."""
    import shutil
    first = next((p.model for p in parts if p.model is not None and p.model.exists()), None)
    if first is None:
        return
    tmp = run.path(".model.pkl.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(first, tmp)
    except OSError:
        shutil.copyfile(first, tmp)
    os.replace(tmp, run.path("model.pkl"))


def export(learn, path):
    """learn.export through a temp name, without the training-only callbacks."""
    from fastai.callback.progress import CSVLogger
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, CSVLogger)])
    tmp = path.with_name(f".{path.name}.tmp")
    learn.export(tmp)
    os.replace(tmp, path)


def headline(run, metrics, status):
    from .card import headline as line
    print(line(metrics, run.recipe.name, status))
    print(f"card: {run.path('card.md')}")


if __name__ == "__main__":
    from .errors import cli
    sys.exit(cli(main)())

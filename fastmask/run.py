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
    ap.add_argument("--replicates", type=int, metavar="N",
                    help="train N seeds on the same split (same as --set replicates=N)")
    ap.add_argument("--skip-bad", action="store_true", help="skip unreadable images and bad folders instead of stopping")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap.parse_args(argv)


def main(argv):
    args = parse(argv)
    if args.replicates is not None:
        args.sets.append(f"replicates={args.replicates}")
    terminate_as_interrupt()
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


def terminate_as_interrupt():
    """SIGTERM (`timeout`, a scheduler, `kill`) ends a run the way Ctrl-C does: cleanly, status recorded."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def train_and_record(recipe, data, runs_dir="runs", overrides=None, cbs=(), info=None):
    """Train `recipe` on `data` into a new run folder; returns the folder. Ctrl-C keeps the best so far.

    One model for a single split, one per fold for `split="kfold:K"`; both are recorded by `record`.
    `cbs`: extra fastai callbacks for fit; one that sets `run_status` (the search's pruning callback sets
    "pruned") stops the folds and names a run that would otherwise be "finished". `info`: extra
    config.json entries. Ranks > 0 of a data-parallel run train beside rank 0, write nothing, return None."""
    from .distributed import follow, is_main
    from .tracking import tracker
    if not is_main():
        return follow(recipe, data, cbs)
    trk = tracker(runs_dir)  # None unless FASTMASK_MLFLOW is set; exit 2 if mlflow is missing
    run, cfg = start_run(recipe, data, runs_dir, overrides, info)
    try:
        status, parts, metrics = train_parts(recipe, data, run, cfg, trk, cbs, runs_dir)
    except KeyboardInterrupt:  # outside a fit (building data, recording): nothing half-done is kept as finished
        final(run, "interrupted")
        raise
    except BaseException as e:
        final(run, "failed", error=one_line(e))
        raise
    if trk is not None:
        trk.finish(run.dir, status)
    if metrics is not None:
        headline(run, metrics, status)
    if status == "interrupted":
        raise KeyboardInterrupt
    if status == "failed":
        raise next(p.exc for p in parts if p.exc is not None)
    for p in parts:
        if p.status == "failed":
            print(f"fastmask: warning: fold {p.fold} failed ({p.error}); the run keeps the other folds", file=sys.stderr)
    return run.dir


def train_parts(recipe, data, run, cfg, trk, cbs, runs_dir):
    """Train every model of the run, then record it; the run's final status is written here."""
    from .distributed import share
    from .kfold import n_folds
    share(run.dir)  # the other ranks learn which folder is the run's (they write nothing into it)
    parts = []
    for fold, seed in units(recipe):
        if fold is not None:
            run.mark("running", fold=fold, folds=n_folds(recipe))
        elif recipe.replicates > 1:
            run.mark("running", seed=seed, seeds=recipe.replicates)
        part = train_part(recipe, data, run, fold, trk, cbs, seed=seed)
        parts.append(part)
        if part.status == "interrupted" or (part.status == "failed" and not part.keep_going) or asked_status(cbs):
            break
    status = run_status(parts)
    if status == "finished" and asked_status(cbs):
        status = asked_status(cbs)
    cfg["lr_used"] = parts[0].lr if len(parts) == 1 else [p.lr for p in parts]
    failed = {p.fold: p.error for p in parts if p.status == "failed"}
    extra = {"failed_folds": {str(k): v for k, v in failed.items()}} if failed and n_folds(recipe) else {}
    if status == "failed":
        extra["error"] = next(p.error for p in parts if p.error)
    write_json_cfg(run, cfg)
    metrics = record(run, cfg, parts, data, status, runs_dir) if any(p.rows is not None for p in parts) else None
    final(run, status, **extra)
    return status, parts, metrics


def final(run, status, **extra):
    """The run's last status, written with Ctrl-C and SIGTERM held back, so a signal cannot leave it half-said."""
    import signal
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        run.mark(status, **extra)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def one_line(e):
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:300]


def units(recipe):
    """(fold, seed) of every model a run trains: the folds of a k-fold split, or the seeds of its replicates."""
    from .kfold import folds, n_folds
    if n_folds(recipe):
        return [(f, recipe.seed) for f in folds(recipe)]
    return [(None, recipe.seed + i) for i in range(recipe.replicates)]


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
    seed: Optional[int] = None      # the init seed (replicates train several on one split)
    replicate: bool = False         # one of several seeds: named by its seed
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
        return f"fold{self.fold}" if self.fold is not None else f"seed{self.seed}" if self.replicate else "model"


def train_part(recipe, data, run, fold, trk=None, cbs=(), seed=None):
    """Build, fit, predict and export one model. Ctrl-C keeps its best epoch; a crash is recorded, not raised.

    Under several processes every rank fits (fastai's distrib_ctx); only rank 0 logs, predicts and exports."""
    import gc

    import pandas as pd
    from fastai.callback.progress import CSVLogger

    from .distributed import context, is_main
    from .errors import FastmaskError
    from .kfold import fold_recipe
    from .infer import predict_probs
    from .train import KeepBest, build_dls, build_learner, fit, valid_frame

    r = fold_recipe(recipe, fold)
    seed = r.seed if seed is None else seed
    if seed != r.seed:
        r = r.variant(seed=seed)
    part, main = Part(fold, seed, replicate=recipe.replicates > 1), is_main()
    hist_name = "history.csv" if part.name == "model" else f"history_{part.name}.csv"
    if fold is not None:
        print(f"fold {fold}: training")
    elif part.replicate:
        print(f"seed {seed}: training")
    learn = None
    try:
        learn = build_learner(r, build_dls(r, data.train))
        learn.path = run.dir
        trained = True
        try:
            log = [CSVLogger(fname=hist_name), *([trk.for_fold(fold)] if trk else [])] if main else []
            with context(learn):
                part.lr = fit(r, learn, cbs=[*log, *cbs])
        except KeyboardInterrupt:
            part.status = "interrupted"
            # the best epoch so far, not the half epoch (put back already unless a second Ctrl-C hit)
            trained = any(cb.restore() for cb in learn.cbs if isinstance(cb, KeepBest))
        if main and (trained or fold is None):  # an untrained fold would spoil the OOF figures and the fold ensemble
            part.rows, part.probs = valid_frame(learn)
            if data.eval is not None and data.answers is not None and part.status == "finished":
                part.eval_probs = predict_probs(learn, data.eval["path"])
            if fold is not None or seed == recipe.seed:  # replicates: the first seed's model is the run's
                part.model = run.path(f"{'model' if fold is None else part.name}.pkl")
                export(learn, part.model, r)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside fit: nothing of this part is kept
        part.status, part.rows = "interrupted", None
    except Exception as e:  # noqa: BLE001  (recorded in status.json; re-raised when no fold finished)
        part.status, part.exc, part.error = "failed", e, one_line(e)
        part.keep_going = fold is not None and not isinstance(e, FastmaskError)
        part.rows = part.probs = part.eval_probs = None
    finally:
        del learn
        gc.collect()
    part.history = read_history(run.path(hist_name)) if main else pd.DataFrame()
    return part


def read_history(path):
    """history.csv as a frame; empty when training failed before CSVLogger wrote a line."""
    import pandas as pd
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def run_status(parts):
    """interrupted > failed (nothing usable) > partial (some folds failed) > finished."""
    if any(p.status == "interrupted" for p in parts):
        return "interrupted"
    done = [p for p in parts if p.status == "finished"]
    if not done:
        return "failed"
    return "partial" if len(done) < len(parts) else "finished"


def record(run, cfg, parts, data, status, runs_dir):
    """Everything a run folder holds beside config.json, the same for one model, k folds or several seeds:
    validation (out-of-fold) predictions, metrics, holdout figures and predictions, plots and card, plus
    the k-fold extras. Returns the metrics."""
    import numpy as np

    from . import card, plots
    from .kfold import oof_frame, probs_of
    from .record import atomic_write, write_json

    kfold = parts[0].fold is not None
    kept = [p for p in parts if p.rows is not None]
    oof = oof_frame([(p.fold, p.rows, p.probs) for p in kept])
    oof["seed"] = np.repeat([p.seed for p in kept], [len(p.rows) for p in kept])
    pred = probs_of(oof).argmax(1)
    metrics = seed_scores(oof, pred)
    hist = history(parts, kfold)
    group = "fold" if kfold else "seed"
    metrics["epochs_run"] = int(hist.groupby(group).size().max()) if group in hist else int(len(hist))
    write_predictions(run, oof, pred, kfold)
    if status in ("finished", "partial"):
        metrics.update(holdout(parts, data, kfold))
        write_holdout_preds(run, parts, data, kfold)
    if kfold:
        metrics.update(fold_figures(parts, oof, pred))
        metrics.update(record_suspects(run, oof, data))
        link_first_fold(run, parts)
    if group in hist:
        atomic_write(run.path("history.csv"), hist.to_csv(index=False))
    first = (oof["seed"] == oof["seed"].iloc[0]).to_numpy()  # one seed's errors, not the same image N times
    plots.save_confusion(oof["label"].to_numpy()[first], pred[first], run.path("confusion.png"),
                         title="out of fold" if kfold else "validation")
    if len(hist):  # k folds or seeds: the per-epoch mean
        plots.save_curves(hist.groupby("epoch", as_index=False).mean(numeric_only=True) if group in hist else hist,
                          run.path("curves.png"))
    atomic_write(run.path("card.md"), card.write_card(run, cfg, metrics, status, runs_dir, history=hist))
    write_json(run.path("metrics.json"), metrics)
    return metrics


def seed_scores(oof, pred):
    """Scores of the validation rows; with several seeds, each figure is the mean over seeds, and
    `replicates` holds each seed's macro F1 and their standard deviation."""
    import numpy as np

    from .metrics import scores
    seeds = list(dict.fromkeys(oof["seed"]))
    per = [scores(oof["label"].to_numpy()[m], pred[m]) for m in ((oof["seed"] == s).to_numpy() for s in seeds)]
    if len(per) == 1:
        return per[0]
    out = mean_of(per)
    f1 = [p["macro_f1"] for p in per]
    out["replicates"] = {"seeds": [int(s) for s in seeds], "macro_f1": f1}
    out["seed_std"] = float(np.std(f1, ddof=1))
    return out


def mean_of(dicts):
    """The mean of each number (also inside nested dicts) over `dicts` of one shape."""
    first = dicts[0]
    return {k: mean_of([d[k] for d in dicts]) if isinstance(v, dict) else sum(d[k] for d in dicts) / len(dicts)
            for k, v in first.items()}


def history(parts, kfold):
    """The parts' per-epoch histories as one frame (with a `fold` or `seed` column for several models)."""
    import pandas as pd
    group = "fold" if kfold else "seed" if len(parts) > 1 or parts[0].replicate else None
    frames = [p.history.assign(**{group: p.fold if kfold else p.seed}) if group else p.history
              for p in parts if len(p.history)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_predictions(run, oof, pred, kfold):
    """valid_preds.csv (path, person, label, pred, p0..p17, seed[, fold]: the verdict's input) and, for k
    folds, oof.csv (path, person, label, p0..p17, fold: every training image once)."""
    import pandas as pd
    from .record import atomic_write
    vp = pd.concat([oof[["path", "person", "label"]].assign(pred=pred),
                    oof.drop(columns=["path", "person", "label", *([] if kfold else ["fold"])])], axis=1)
    atomic_write(run.path("valid_preds.csv"), vp.to_csv(index=False))
    if kfold:
        atomic_write(run.path("oof.csv"), oof.drop(columns="seed").to_csv(index=False))


def holdout(parts, data, kfold):
    """Holdout figures: of the soft vote of the finished folds, or the mean over seeds (one model: its own)."""
    from .infer import soft_vote
    from .metrics import macro_f1, scores
    done = [p for p in parts if p.eval_probs is not None]
    if not done:
        return {}
    y = data.answers["ans"].to_numpy()
    if kfold:
        per = [scores(y, soft_vote([p.eval_probs for p in done]).argmax(1))]
    else:
        per = [scores(y, p.eval_probs.argmax(1)) for p in done]
    h = mean_of(per)
    out = {"holdout_macro_f1": h["macro_f1"], "holdout_accuracy": h["accuracy"],
           "holdout_task_f1": {k: h[f"{k}_f1"] for k in ("mask", "gender", "age")}}
    if kfold:
        out["holdout_folds"] = [macro_f1(y, p.eval_probs.argmax(1)) for p in done]
        out["holdout_models"] = [p.name for p in done]
    elif len(per) > 1:
        out["holdout_replicates"] = [p["macro_f1"] for p in per]
    return out


def write_holdout_preds(run, parts, data, kfold):
    """holdout_preds.csv (ImageID, label, pred, seed[, person]): what the verdict compares when two runs
    validated on different people. k folds: the soft vote, as the holdout figures use it."""
    import pandas as pd

    from .infer import soft_vote
    from .record import atomic_write
    done = [p for p in parts if p.eval_probs is not None]
    if not done:
        return
    ans = data.answers.reset_index(drop=True)
    keep = ["ImageID"] + (["person"] if "person" in ans else [])
    tables = [(done[0].seed, soft_vote([p.eval_probs for p in done]))] if kfold else [(p.seed, p.eval_probs) for p in done]
    frame = pd.concat([ans[keep].assign(label=ans["ans"].to_numpy(), pred=probs.argmax(1), seed=seed)
                       for seed, probs in tables], ignore_index=True)
    atomic_write(run.path("holdout_preds.csv"), frame.to_csv(index=False))


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


def export(learn, path, recipe):
    """One model's files, each through a temp name: STEM.safetensors + STEM.json (no code: what predict
    opens) and STEM.pkl at `path` (fastai's load_learner; a pickle, for files one trusts)."""
    from .errors import FastmaskError
    from .infer import export_pickle
    from .safe_model import save
    try:
        save(learn, recipe, path.with_suffix(""))
    except FastmaskError as e:  # e.g. an A.Compose holding a Lambda: the model is still kept, as a pickle
        print(f"fastmask: warning: {path.stem}.safetensors not written ({e}); predict needs --trust-pickle "
              f"for {path.name}", file=sys.stderr)
    export_pickle(learn, path)


def headline(run, metrics, status):
    from .card import headline as line
    print(line(metrics, run.recipe.name, status))
    print(f"card: {run.path('card.md')}")


if __name__ == "__main__":
    from .errors import cli
    sys.exit(cli(main)())

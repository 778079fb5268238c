"""What a run folder holds beside config.json, the same for one model, k folds or several seeds:
validation (out-of-fold) predictions, metrics, holdout figures and predictions, plots and the card."""
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.errors import one_line
from fastmask.io import atomic_write, replacing
from fastmask.labels import N_CLASSES, TASKS
from fastmask.learn.metrics import macro_f1, scores
from fastmask.models.votes import soft_vote
from fastmask.report import card, plots, suspects
from fastmask.report.folds import cv_summary, oof_frame, probs_of
from fastmask.report.judgement import judge, same_verdict
from fastmask.runs.cards import card_text
from fastmask.store.folder import (
    BATCHES_PLOT,
    CARD,
    CONFUSION_PLOT,
    CURVES_PLOT,
    HISTORY,
    HOLDOUT_PREDS,
    LR_FIND_PLOT,
    METRICS,
    MODEL_PKL,
    OOF,
    PER_CLASS_F1_PLOT,
    PLOTS,
    SUSPECTS,
    TOP_LOSSES,
    VALID_PREDS,
    write_json,
)
from fastmask.store.index import RunIndex
from fastmask.store.run_folder import RunFolder


def record(run, cfg, parts, data, status, runs_dir, lr_used=None):
    """Everything a run folder holds beside config.json, the same for one model, k folds or several seeds:
    validation (out-of-fold) predictions, metrics, holdout figures and predictions, plots and card, plus
    the k-fold extras. Validation and holdout predictions reach the verdict and the card in memory.
    Returns the metrics."""
    kfold = parts[0].fold is not None
    kept = [p for p in parts if p.rows is not None]
    oof = oof_frame([(p.fold, p.rows, p.probs) for p in kept])
    oof["seed"] = np.repeat([p.seed for p in kept], [len(p.rows) for p in kept])
    pred = probs_of(oof).argmax(1)
    metrics = seed_scores(oof, pred)
    hist = history(parts, kfold)
    group = "fold" if kfold else "seed"
    metrics["epochs_run"] = int(hist.groupby(group).size().max()) if group in hist else int(len(hist))
    # (a test's stand-in part may lack kept_epoch)
    kept = [p.kept_epoch for p in parts if getattr(p, "kept_epoch", None) is not None]
    sources = next((p.face_sources for p in parts if getattr(p, "face_sources", None)), None)
    if sources:
        metrics["face_boxes"] = sources
    if len(parts) == 1 and kept:
        metrics["kept_epoch"] = kept[0]  # counted from 1, as the log, the plots and the card count
    elif kept:
        metrics["kept_epochs"] = kept
    vp = write_predictions(run, oof, pred, kfold)
    held = None
    if status in ("finished", "partial"):
        metrics.update(holdout(parts, data, kfold))
        held = write_holdout_preds(run, parts, data, kfold)
    if kfold:
        metrics.update(fold_figures(parts, oof, pred))
        metrics.update(record_suspects(run, oof, data))
        link_first_fold(run, parts)
    if lr_used is not None:
        metrics["lr_used"] = lr_used
    if group in hist:
        atomic_write(run.path(HISTORY), hist.to_csv(index=False))
    first = (oof["seed"] == oof["seed"].iloc[0]).to_numpy()  # one seed's errors, not the same image N times
    drawn = draw_plots(run, parts, metrics, hist, group, oof["label"].to_numpy()[first], pred[first], kfold)
    this = RunFolder(run.dir, config=cfg, metrics=metrics, history=hist, valid=vp, holdout=held, minutes=run.minutes())
    text, entry = card_and_verdict(this, runs_dir, status, drawn)
    if entry is not None:
        metrics["verdict"] = entry
    atomic_write(run.path(CARD), text)
    write_json(run.path(METRICS), metrics)
    return metrics


def draw_plots(run, parts, metrics, hist, group, y_true, y_pred, kfold):
    """The run's plots beside its card (report.plots); returns the names drawn. The per-batch and lr-finder
    plots need what fastai's Recorder kept (Part.recorder); the lr finder's curve exists only for lr="find"."""
    seeds = len((metrics.get("replicates") or {}).get("seeds", []))
    plots.save_confusion(y_true, y_pred, run.path(CONFUSION_PLOT), title="out of fold" if kfold else
                         f"validation, first of {seeds} seeds" if seeds > 1 else "validation")
    drawn = [CONFUSION_PLOT]
    what = "out of fold" if kfold else f"validation, mean of {seeds} seeds" if seeds > 1 else "validation"
    if plots.save_per_class_f1(metrics, run.path(PER_CLASS_F1_PLOT), title=what):
        drawn.append(PER_CLASS_F1_PLOT)
    if len(hist):  # k folds or seeds: each one's curve, their mean and spread
        plots.save_curves(hist, run.path(CURVES_PLOT), group=group if group in hist else None,
                          kept=metrics.get("kept_epoch"))
        drawn.append(CURVES_PLOT)
    traced = [p for p in parts if p.recorder]
    valid_loss = [list(p.history["valid_loss"]) if p.history is not None and "valid_loss" in p.history else []
                  for p in traced]
    if plots.save_batches([(p.name, {**p.recorder, "valid_loss": v}) for p, v in zip(traced, valid_loss)],
                          run.path(BATCHES_PLOT)):
        drawn.append(BATCHES_PLOT)
    finds = [(p.name, p.recorder["lr_find"]) for p in traced if p.recorder.get("lr_find")]
    if finds and plots.save_lr_find(finds, run.path(LR_FIND_PLOT)):
        drawn.append(LR_FIND_PLOT)
    return drawn


def seed_scores(oof, pred):
    """Scores of the validation rows; with several seeds, each figure is the mean over seeds, and
    `replicates` holds each seed's macro F1 and their standard deviation."""

    seeds = list(dict.fromkeys(oof["seed"]))
    per = [scores(oof["label"].to_numpy()[m], pred[m]) for m in ((oof["seed"] == s).to_numpy() for s in seeds)]
    if len(per) == 1:
        return per[0]
    out = mean_of(per)
    out["per_class_support"] = per[0]["per_class_support"]  # one split: every seed saw the same images
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
    group = "fold" if kfold else "seed" if len(parts) > 1 or parts[0].replicate else None
    frames = [p.history.assign(**{group: p.fold if kfold else p.seed}) if group else p.history
              for p in parts if len(p.history)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_predictions(run, oof, pred, kfold):
    """valid_preds.csv (path, person, label, pred, p0..p17, seed[, fold]: the verdict's input) and, for k
    folds, oof.csv (path, person, label, p0..p17, fold: every training image once)."""
    vp = pd.concat([oof[["path", "person", "label"]].assign(pred=pred),
                    oof.drop(columns=["path", "person", "label", *([] if kfold else ["fold"])])], axis=1)
    atomic_write(run.path(VALID_PREDS), vp.to_csv(index=False))
    if kfold:
        atomic_write(run.path(OOF), oof.drop(columns="seed").to_csv(index=False))
    return vp


def holdout(parts, data, kfold):
    """Holdout figures: of the soft vote of the finished folds, or the mean over seeds (one model: its own)."""
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
           "holdout_task_f1": {k: h[f"{k}_f1"] for k in TASKS}}
    if kfold:
        out["holdout_folds"] = [macro_f1(y, p.eval_probs.argmax(1)) for p in done]
        out["holdout_models"] = [p.name for p in done]
    elif len(per) > 1:
        out["holdout_replicates"] = [p["macro_f1"] for p in per]
    return out


def write_holdout_preds(run, parts, data, kfold):
    """holdout_preds.csv (ImageID, label, pred, seed[, person]): what the verdict compares when two runs
    validated on different people. k folds: the soft vote, as the holdout figures use it."""

    done = [p for p in parts if p.eval_probs is not None]
    if not done:
        return None
    ans = data.answers.reset_index(drop=True)
    keep = ["ImageID"] + (["person"] if "person" in ans else [])
    tables = [(done[0].seed, soft_vote([p.eval_probs for p in done]))] if kfold else [(p.seed, p.eval_probs) for p in done]
    frame = pd.concat([ans[keep].assign(label=ans["ans"].to_numpy(), pred=probs.argmax(1), seed=seed)
                       for seed, probs in tables], ignore_index=True)
    atomic_write(run.path(HOLDOUT_PREDS), frame.to_csv(index=False))
    return frame


def fold_figures(parts, oof, pred):
    """Per-fold macro F1, their mean and std, and each fold's status."""
    per = [macro_f1(oof["label"][oof["fold"] == f], pred[(oof["fold"] == f).to_numpy()]) for f in oof["fold"].unique()]
    return {**cv_summary(per), "fold_status": {str(p.fold): p.status for p in parts}}


def record_suspects(run, oof, data):
    """suspects.csv from the OOF predictions; precision against the twin's noise.csv when there is one."""
    m = suspects.record(oof, run.path(SUSPECTS), data.root)
    print(suspects.line(m))
    return m


def link_first_fold(run, parts):
    """model.pkl: the first exported fold's learner, as a hard link (a copy where links fail)."""
    first = next((p.model for p in parts if p.model is not None and p.model.exists()), None)
    if first is None:
        return
    tmp = run.path(f".{MODEL_PKL}.link")
    tmp.unlink(missing_ok=True)  # a killed earlier call's: os.link will not write over it
    with replacing(run.path(MODEL_PKL), tmp):
        try:
            os.link(first, tmp)
        except OSError:
            shutil.copyfile(first, tmp)


def card_and_verdict(this, runs_dir, status, plots_drawn):
    """card.md's text for RunFolder `this` and metrics.json's "verdict" entry (None without a parent run):
    the judgement against the parent's newest comparable run in `runs_dir`, and top_losses.png,
    class_delta.png and flips.png drawn beside the card from the validation predictions."""
    judgement = judge(this, runs_dir)
    return card_text(this, judgement, status, plots_drawn, draw_top_losses(this), runs_dir), judgement.entry


def draw_top_losses(this, k=16):
    """top_losses.png in the run folder: how many images it shows, or why it was not drawn (None: no data)."""
    vp = card.analysed_rows(this.valid)
    if vp is None or not {f"p{i}" for i in range(N_CLASSES)} <= set(vp.columns):
        return None
    try:
        return plots.save_top_losses(vp, this.dir / TOP_LOSSES, k=k)
    except (OSError, ValueError) as e:
        return str(e)


def rejudge(run_dir, runs_dir, write=True, decision=None):
    """Judge a finished run again on the evidence there is now; when the verdict changed and `write`,
    rewrite its card and metrics.json's "verdict" (the old one appended to "verdict_history"). `decision`
    (what --decide trained and why it stopped) is recorded as metrics.json's "decision". Returns the new
    Judgement."""
    d = Path(run_dir)
    this = RunFolder(d)
    j = judge(this, runs_dir)
    old = this.metrics.get("verdict")
    if not write or (same_verdict(j.entry, old) and decision is None):
        return j
    metrics = dict(this.metrics)
    if decision is not None:
        metrics["decision"] = decision
    history = list(metrics.get("verdict_history") or [])
    if old and not same_verdict(j.entry, old):
        history.append(old)
    metrics["verdict_history"] = history
    if j.entry is None:
        metrics.pop("verdict", None)
    else:
        metrics["verdict"] = j.entry
    status = this.status_json.get("status", "finished")
    drawn = [n for n, _ in PLOTS if (d / n).exists()]
    text = card_text(this.but(metrics=metrics), j, status, drawn, draw_top_losses(this), runs_dir)
    atomic_write(d / CARD, text)
    write_json(d / METRICS, metrics)
    return j


def rejudge_children(runs_dir, name, fingerprint):
    """After a run of recipe `name` finished: re-judge the finished runs of its child recipes (and of its
    own setup) on the same data whose verdict it changes. Returns the folders rewritten."""
    out, index = [], RunIndex(runs_dir)  # read once: the staleness of every run asks it
    for e in index.finished(fingerprint=fingerprint):
        if (e.config.get("parent") == name or e.recipe == name) and index.stale(e):
            try:
                rejudge(e.dir, runs_dir)
            except Exception as err:  # noqa: BLE001  (a damaged older run never costs this run its status)
                warnings.warn(f"re-judging {e.dir.name}: {one_line(err)}")
                continue
            out.append(e.dir)
    return out

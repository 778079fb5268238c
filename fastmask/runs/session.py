"""One run session: the folder, every model it trains (one, one per fold, or one per seed) and its final
status, the same on every rank of a data-parallel run (ranks > 0 train beside rank 0 and write nothing)."""
import errno
import gc
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from fastai.callback.progress import CSVLogger

from fastmask.data.dls import build_dls, check_data
from fastmask.errors import FastmaskError, StopNow, one_line, redelivered
from fastmask.learn.build import build_learner, fit, valid_frame
from fastmask.learn.distributed import alone, context, is_main, rank, share
from fastmask.learn.tracker import KeepBest
from fastmask.models.export import export
from fastmask.models.predict import predict_probs
from fastmask.report.card import headline as headline_line
from fastmask.report.folds import fold_recipe, folds, n_folds
from fastmask.runs.outputs import record
from fastmask.runs.tracking import track, tracking_uri
from fastmask.store.folder import CARD, CONFIG, HISTORY, MODEL_PKL, Run, environment, write_json
from fastmask.store.run_folder import RunFolder


def train_and_record(recipe, data, runs_dir="runs", overrides=None, cbs=(), info=None):
    """Train `recipe` on `data` into a new run folder; returns it as a RunFolder holding the config, metrics
    and status it wrote (nothing read back). Ctrl-C keeps the best so far.

    One model for a single split, one per fold for `split="kfold:K"`; both are recorded by `record`.
    `cbs`: extra fastai callbacks for fit; one that sets `run_status` (the search's pruning callback sets
    "pruned") stops the folds and names a run that would otherwise be "finished". `info`: extra
    config.json entries. Ranks > 0 of a data-parallel run train beside rank 0, write nothing, return None."""
    if not is_main():
        return follow(recipe, data, cbs)
    uri = tracking_uri(runs_dir)  # None unless FASTMASK_MLFLOW is set; exit 2 if mlflow is missing
    check_data(fold_recipe(recipe, units(recipe)[0][0]), data.train)  # bs and cache size: before the run folder
    run, cfg = start_run(recipe, data, runs_dir, overrides, info)
    try:
        with Signals() as signals:
            status, parts, metrics = train_parts(recipe, data, run, cfg, cbs, runs_dir, signals)
    except KeyboardInterrupt:  # outside a fit (building data, recording): nothing half-done is kept as finished
        final(run, "interrupted")
        raise
    except BaseException as e:
        # a FastmaskError's message says it all, as the console's line does; another needs its type's name
        final(run, "failed", error=one_line(e, named=not isinstance(e, FastmaskError), limit=300))
        raise
    if uri is not None:
        track(run.dir, uri)
    if metrics is not None:
        headline(run, metrics, status)
    if status == "interrupted" or signals.hits:  # a signal during the card: recorded whole, yet the user asked to stop
        raise KeyboardInterrupt
    if status == "failed":
        raise next(p.exc for p in parts if p.exc is not None)
    for p in parts:
        if p.status == "failed":
            print(f"fastmask: warning: fold {p.fold} failed ({p.error}); the run keeps the other folds", file=sys.stderr)
    return RunFolder(run.dir, config=cfg, metrics=metrics or {}, status_json=run.state)


def train_parts(recipe, data, run, cfg, cbs, runs_dir, signals=None):
    """Train every model of the run, then record it; the run's final status is written here."""
    signals = signals or Signals()
    share(run.dir)  # the other ranks learn which folder is the run's (they write nothing into it)
    parts = []
    for fold, seed in units(recipe):
        if fold is not None:
            run.mark("running", fold=fold, folds=n_folds(recipe))
        elif recipe.replicates > 1:
            run.mark("running", seed=seed, seeds=recipe.replicates)
        part = train_part(recipe, data, run, fold, cbs, seed=seed, signals=signals)
        parts.append(part)
        if part.status == "interrupted" or (part.status == "failed" and not part.keep_going) or asked_status(cbs):
            break
    with signals.held():
        return finish(recipe, run, cfg, cbs, runs_dir, parts, data)


def finish(recipe, run, cfg, cbs, runs_dir, parts, data):
    status = run_status(parts)
    if status == "finished" and asked_status(cbs):
        status = asked_status(cbs)
    failed = {p.fold: p.error for p in parts if p.status == "failed"}
    extra = {"failed_folds": {str(k): v for k, v in failed.items()}} if failed and n_folds(recipe) else {}
    if status == "failed":
        extra["error"] = next(p.error for p in parts if p.error)
    lr_used = parts[0].lr if len(parts) == 1 else [p.lr for p in parts]
    metrics = record(run, cfg, parts, data, status, runs_dir, lr_used) if any(p.rows is not None for p in parts) else None
    final(run, status, **extra)
    return status, parts, metrics


def final(run, status, **extra):
    """The run's last status, written with Ctrl-C and SIGTERM held back, so a signal cannot leave it half-said."""
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        run.mark(status, **extra)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# a write the machine refused for want of room: the user's to fix, said in one line (status.json, console)
NO_ROOM = {errno.EFBIG: "the file-size limit, ulimit -f, is below the model's size",
           errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up"}


def exported(learn, path, recipe):
    """models.export, with a write refused for want of room (the file-size limit, a full disk) as one line
    naming the model: the run is failed, its status saying why, and the command exits 2 without a traceback."""
    try:
        export(learn, path, recipe)
    except OSError as e:
        if e.errno not in NO_ROOM:
            raise
        raise FastmaskError(f"{path.with_suffix('')}.*: exporting the model: {e.strerror} ({NO_ROOM[e.errno]})") from None


def units(recipe):
    """(fold, seed) of every model a run trains: the folds of a k-fold split, or the seeds of its replicates."""
    if n_folds(recipe):
        return [(f, recipe.seed) for f in folds(recipe)]
    return [(None, recipe.seed + i) for i in range(recipe.replicates)]


def asked_status(cbs):
    """The run status an extra callback asks for (e.g. "pruned"), or None."""
    return next((s for cb in cbs if (s := getattr(cb, "run_status", None))), None)


def start_run(recipe, data, runs_dir, overrides, info=None):
    """The run folder and its config.json, written before any training."""
    run = Run(runs_dir, recipe)
    # the recipe files and the data folder by absolute path: the commands a card prints must work from any folder
    cfg = {**recipe.config(), "hypothesis": recipe.hypothesis, "overrides": overrides or {},
           "recipe_file": recipe.file, "parent_file": recipe.parent.file if recipe.parent is not None else None,
           "data": str(Path(data.root).resolve()), "data_fingerprint": data.fingerprint, "n_images": len(data.train),
           "n_people": int(data.train["person"].nunique()), "environment": environment(),
           **({"relabel": data.relabel} if getattr(data, "relabel", None) else {}), **(info or {})}
    write_json(run.path(CONFIG), cfg)  # once, before training: what was asked, not what came out
    print(f"run folder: {run.dir}")
    return run, cfg



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
    recorder: Any = None            # what fastai's Recorder kept of fit (per-batch loss, lr, iters) and lr_find's curve
    lr: Any = None
    kept_epoch: Optional[int] = None  # the epoch whose weights KeepBest kept, counted from 1 as the log and plots do
    face_sources: Optional[dict] = None  # a face crop: how many boxes were detected, from the person, centre
    error: Optional[str] = None
    exc: Optional[BaseException] = None
    keep_going: bool = False        # a failed fold lets the next folds run (not for bad input)

    @property
    def name(self):
        return f"fold{self.fold}" if self.fold is not None else f"seed{self.seed}" if self.replicate else "model"


def train_part(recipe, data, run, fold, cbs=(), seed=None, signals=None):
    """Build, fit, predict and export one model. Ctrl-C keeps its best epoch; a crash is recorded, not raised.
    A signal once fit has returned is held (see Signals): the model is still exported, the part interrupted.

    Under several processes every rank fits (fastai's distrib_ctx); only rank 0 logs, predicts and exports."""
    signals = signals or Signals()
    r = fold_recipe(recipe, fold)
    seed = r.seed if seed is None else seed
    if seed != r.seed:
        r = r.variant(seed=seed)
    part, main = Part(fold, seed, replicate=recipe.replicates > 1), is_main()
    hist_name = HISTORY if part.name == "model" else f"history_{part.name}.csv"
    if fold is not None:
        print(f"fold {fold}: training")
    elif part.replicate:
        print(f"seed {seed}: training")
    learn = None
    try:
        learn = build_learner(r, build_dls(r, data.train), notify=say_once)
        learn.path = run.dir
        part.face_sources = getattr(learn.dls, "face_sources", None)
        trained = True
        try:
            log = [CSVLogger(fname=hist_name)] if main else []
            with context(learn):
                part.lr = fit(r, learn, cbs=[*log, *cbs])
                part.recorder = dict(loss=list(map(float, learn.recorder.losses)), lr=list(learn.recorder.lrs),
                                     iters=list(learn.recorder.iters), lr_find=getattr(learn, "lr_curve", None))
        except StopNow:
            raise
        except KeyboardInterrupt:
            part.status = "interrupted"
            signals.hits = max(signals.hits, 1)  # the next signal, during the export, means "stop now"
            trained = any(cb.restore() for cb in learn.cbs if isinstance(cb, KeepBest))  # the best epoch, not the half one
        part.kept_epoch = next((cb.best_epoch + 1 for cb in learn.cbs
                                if isinstance(cb, KeepBest) and cb.best_epoch is not None), None)
        with signals.held():
            if main and (trained or fold is None):  # an untrained fold would spoil the OOF figures and the fold ensemble
                with alone():
                    part.rows, part.probs = valid_frame(learn)
                    if data.eval is not None and data.answers is not None and part.status == "finished":
                        part.eval_probs = signals.unless_stopped(predict_probs, learn, data.eval["path"])
                    if fold is not None or seed == recipe.seed:  # replicates: the first seed's model is the run's
                        part.model = run.path(MODEL_PKL if fold is None else f"{part.name}.pkl")
                        exported(learn, part.model, r)
            if signals.hits and part.status == "finished":
                part.status = "interrupted"
    except KeyboardInterrupt:  # a second Ctrl-C, or one before fit: nothing of this part is kept
        part.status, part.rows = "interrupted", None
    except Exception as e:  # noqa: BLE001  (recorded in status.json; re-raised when no fold finished)
        part.status, part.exc, part.error = "failed", e, one_line(e, named=not isinstance(e, FastmaskError), limit=300)
        part.keep_going = fold is not None and not isinstance(e, FastmaskError)
        part.rows = part.probs = part.eval_probs = None
    finally:
        del learn
        gc.collect()
    part.history = read_history(run.path(hist_name)) if main else pd.DataFrame()
    return part



class Signals:
    """Ctrl-C and SIGTERM in one run session outside fit (StopOnInterrupt has them inside it).

    Before a model is trained, and while a later fold builds its data, a signal interrupts at once. Once a
    fit has returned, inside `held()` (the validation and holdout predictions, the export, the card), the
    first signal is held: the work finishes, so the best model and its record are kept, and the run ends
    interrupted. The holdout prediction, figures only, is the one step it cuts short (`unless_stopped`). A
    second signal stops at once (StopNow); the session's handlers still write the status. Signals are
    only caught in the main thread (Python delivers them there)."""
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.hits, self.holding, self.cut_short, self.old = 0, False, False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, old in self.old.items():
            signal.signal(s, old)
        self.old = {}
        return False

    def _handler(self, signum, frame):
        lost = redelivered()
        if lost is not None:  # the first signal's interrupt, which a finalizer swallowed: not a second signal
            raise lost
        self.hits += 1
        if self.hits > 1:
            raise StopNow
        if not self.holding or self.cut_short:
            raise KeyboardInterrupt
        print("fastmask: interrupted: finishing the model files and the card (once more to stop now)",
              file=sys.stderr, flush=True)

    @contextmanager
    def held(self):
        was, self.holding = self.holding, True
        try:
            yield self
        finally:
            self.holding = was

    def unless_stopped(self, fn, *args):
        """fn(*args), or None when a signal came before or comes during it."""
        if self.hits:
            return None
        self.cut_short = True
        try:
            return fn(*args)
        except StopNow:
            raise
        except KeyboardInterrupt:
            if self.hits != 1:  # not ours: a KeyboardInterrupt raised by fn itself
                raise
            print("fastmask: interrupted: holdout prediction stopped; keeping the model and writing the card",
                  file=sys.stderr, flush=True)
            return None
        finally:
            self.cut_short = False


_SAID = set()


def say_once(line):
    """A notice said once per process: each fold, seed or search trial builds a learner, and "no pretrained
    weights ..." or "precision: fp32 ..." would otherwise repeat for every one."""
    if line and line not in _SAID and is_main():  # ranks > 0 would say it again
        _SAID.add(line)
        print(line)

def read_history(path):
    """history.csv as a frame; empty when training failed before CSVLogger wrote a line."""
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


def headline(run, metrics, status):
    print(headline_line(metrics, run.recipe.name, status))
    print(f"card: {run.path(CARD)}")



class Follower:
    """A rank > 0's stand-in for `store.folder.Run`: rank 0's folder, no writes."""
    def __init__(self, run_dir):
        if run_dir is None:
            raise RuntimeError(f"rank {rank()}: rank 0 shared no run folder")
        self.dir = Path(run_dir)

    def path(self, name):
        return self.dir / name

    def mark(self, *a, **k):
        pass


def follow(recipe, data, cbs=()):
    """A rank > 0 of `train_and_record`: fit every fold beside rank 0 and write nothing. Returns None."""
    run = Follower(share(None))
    for fold, seed in units(recipe):
        part = train_part(recipe, data, run, fold, cbs, seed=seed)
        if part.status == "interrupted":
            raise KeyboardInterrupt
        if part.status == "failed" and not part.keep_going:
            raise part.exc
    return None

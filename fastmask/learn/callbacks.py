"""The recipe's training callbacks: keep-best, peak-aware early stopping, the NaN guard, clean Ctrl-C/SIGTERM,
plus the mixing and precision callbacks its fields name; and ConsoleProgress, which shows training as
fastmask.console's mode asks (bars, one line per epoch, or nothing)."""
import signal
import threading

import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.schedule import ParamScheduler
from fastai.callback.tracker import EarlyStoppingCallback, TrackerCallback
from fastai.torch_core import get_model  # the model inside DDP: its weights are named `module.*`, the fit ends unwrapped
from fastai.imports import noop  # the noop of Learner.no_logging (fastcore has its own)

from fastmask import console
from fastmask.errors import FastmaskError, StopNow
from fastmask.learn.distributed import is_main
from fastmask.learn.mixing import mixing_callbacks
from fastmask.learn.precision import precision_callbacks


def training_callbacks(recipe, learn, notify=print):
    """The recipe's training callbacks, all marked `recipe_cb` so an export can leave them behind:
    mixing, precision, keep-best and early stopping on macro F1, the NaN guard and clean Ctrl-C/SIGTERM."""
    train_y = np.asarray(learn.dls.train.items["y"])
    prec, line = precision_callbacks(recipe.precision, learn.dls.device)
    if not console.quiet():
        notify(line)
    cbs = [KeepBest(), NanGuard(), StopOnInterrupt(),
           *mixing_callbacks(recipe.cutmix, recipe.mixup, labels=train_y, p=recipe.mix_prob), *prec]
    if recipe.patience:
        cbs.append(PeakAwareEarlyStopping(monitor="macro_f1", comp=np.greater, patience=recipe.patience))
    for cb in cbs:
        cb.recipe_cb = True
    return cbs


def recipe_cbs(learn):
    return [cb for cb in learn.cbs if getattr(cb, "recipe_cb", False)]


class NanGuard(Callback):
    "Stop at the first non-finite training loss with a message naming the epoch and the likely cause"
    order = 100

    def before_fit(self):
        # lr_find drives the lr up until the loss diverges on purpose: not a fault there
        self.active = not hasattr(self.learn, "lr_finder")

    def after_loss(self):
        if self.active and self.training and not torch.isfinite(self.loss).all():
            lr = self.opt.hypers[-1]["lr"] if self.opt else float("nan")
            raise FastmaskError(f"training loss became {self.loss.item()} at epoch {self.epoch + 1}, batch "
                                f"{self.iter + 1} (lr {lr:.2g}): the learning rate is likely too high; "
                                f"try --set lr={lr / 10:.1g}")


class KeepBest(TrackerCallback):
    """The weights of the best epoch by validation macro F1, kept in memory and put back at the end of
    fit (also when it is cancelled, e.g. by Ctrl-C). In memory rather than in models/best.pth: nothing
    left beside the export, and nothing written into a REPL's working folder."""
    order = TrackerCallback.order + 1

    def __init__(self, monitor="macro_f1", comp=np.greater):
        super().__init__(monitor=monitor, comp=comp)
        self.state, self.best_epoch = None, None

    def before_fit(self):
        super().before_fit()
        self.state, self.best_epoch = None, None

    def after_epoch(self):
        super().after_epoch()
        if self.new_best:
            self.best_epoch = self.epoch
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in get_model(self.learn.model).state_dict().items()}
            if is_main() and console.mode() == console.BARS:  # lines mode marks the epoch's line (ConsoleProgress)
                print(f"Better model found at epoch {self.epoch} with {self.monitor} value: {self.best:.4f}.")

    def improves(self, value):
        """Whether `value` of the monitored figure beats the best so far (what after_epoch will decide)."""
        return bool(self.comp(value - self.min_delta, self.best))

    def after_fit(self):
        self.restore()

    def restore(self):
        """Put the best epoch's weights back (once: the copy is dropped, so an export does not carry it);
        False when no epoch finished."""
        if self.state is not None:
            get_model(self.learn.model).load_state_dict(self.state)
            self.state = None
        return self.best_epoch is not None


class PeakAwareEarlyStopping(EarlyStoppingCallback):
    """Early stopping that only counts epochs after one-cycle's lr peak: before it the lr is still
    rising and validation scores are at their noisiest, so a dip there says nothing about the plateau."""
    def after_epoch(self):
        TrackerCallback.after_epoch(self)
        sched = next((cb for cb in self.learn.cbs if isinstance(cb, ParamScheduler)), None)
        peak = 0.25 if sched is None else _peak(sched)
        if self.new_best or (self.epoch + 1) / self.n_epoch <= peak:
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            if is_main() and console.mode() == console.BARS:  # the bars' table counts epochs from 0
                print(f"No improvement since epoch {self.epoch - self.wait}: early stopping")
            elif is_main() and not console.quiet():
                print(f"early stopping after epoch {self.epoch + 1}/{self.n_epoch}: no improvement since "
                      f"epoch {self.epoch - self.wait + 1}", flush=True)
            raise CancelFitException()


def _peak(sched):
    """Where the lr schedule peaks, as a fraction of training (one-cycle's pct_start)."""
    f = sched.scheds.get("lr")
    if f is None:
        return 0.0
    xs = np.linspace(0, 0.999, 200)
    return float(xs[int(np.argmax([np.max(np.atleast_1d(f(x))) for x in xs]))])


class StopOnInterrupt(Callback):
    """Ctrl-C or SIGTERM ends training at the next batch through fastai's cancel path, so every callback
    cleans up (CutMix restores the loss, CSVLogger closes its file, KeepBest reloads the best epoch)
    before `fit` raises KeyboardInterrupt. A second signal stops at once (StopNow), the handlers that
    were there before put back first. Only a real fit is watched: get_preds calls before_fit too, and a
    cancel raised there would escape it as an error (the holdout prediction after training)."""
    order = 0
    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    hit, old = False, {}  # until the first fit (never changed in place)

    def before_fit(self):
        if hasattr(self.learn, "gather_preds"):
            self.run = False  # fastai turns it back on after this get_preds
            return
        self.hit, self.old = False, {}
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}

    def _handler(self, signum, frame):
        if self.hit:
            self._put_back()
            raise StopNow
        self.hit = True

    def _put_back(self):
        for s, old in self.old.items():
            signal.signal(s, old)
        self.old = {}

    def after_batch(self):
        if self.hit:
            raise CancelFitException

    def after_fit(self):
        self._put_back()
        if self.hit:  # raising here would skip the cleanup of later callbacks: `fit` raises instead
            print("interrupted: the learner holds its best epoch so far")


class ConsoleProgress(Callback):
    """Training on the console as `console.mode()` asks, decided at each fit. "bars": fastai's
    ProgressCallback, its table's figures rounded to 4 decimals. "lines" (stdout a pipe or a file): the bars
    off and one plain line per epoch instead, no carriage returns; "best" marks a KeepBest improvement.
    "quiet": neither. fastai's ProgressCallback stays on the learner (only switched off for the fit), so
    `no_bar`, `tta` and an export (which keeps fastai's default callbacks only) see what they expect."""
    order = 55  # after the Recorder (50) has its metric names; before the bars and CSVLogger (60) start

    def before_fit(self):
        self.shown, self.old_logger = console.mode(), None
        self.bar = getattr(self.learn, "progress", None)
        if self.shown == console.BARS:
            if self.bar is not None:  # its before_fit hands self._write_stats to the learner as its logger
                self.bar._write_stats = self._table_row
            return
        if self.bar is not None:
            self.bar.run = False  # for this fit only: fastai turns a callback back on after each fit
        if self.learn.logger != noop:  # noop: lr_find, get_preds, ranks > 0 of a data-parallel fit
            self.old_logger, self.learn.logger = self.learn.logger, self._line

    def after_fit(self):
        if self.bar is not None:
            self.bar.__dict__.pop("_write_stats", None)
        if self.old_logger is not None:
            for cb in self.learn.cbs:  # a CSVLogger puts back the logger it found (ours) after this: not that
                if getattr(cb, "old_logger", None) == self._line:
                    cb.old_logger = self.old_logger
            self.learn.logger, self.old_logger = self.old_logger, None

    def _table_row(self, log):
        if getattr(self.bar, "mbar", False):
            self.bar.mbar.write([console.figure(x) for x in log], table=True)

    def _line(self, log):
        if self.shown != console.LINES:
            return
        names, log = list(self.recorder.metric_names), list(log)
        if not log or len(log) != len(names):  # a cancelled train or valid phase: no names to pair
            print("epoch " + "  ".join(map(console.figure, log)), flush=True)
            return
        head = f"epoch {log[0] + 1}/{self.n_epoch}"
        figures = [f"{n} {console.figure(x)}" for n, x in zip(names[1:], log[1:])]
        print("  ".join([head, *figures, *self._best()]), flush=True)

    def _best(self):
        keep = next((cb for cb in self.learn.cbs if isinstance(cb, KeepBest)), None)
        if keep is None or not keep.run or getattr(keep, "idx", None) is None or not self.recorder.values:
            return []
        return ["best"] if keep.improves(self.recorder.values[-1][keep.idx]) else []

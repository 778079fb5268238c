"""The recipe's training callbacks: keep-best, peak-aware early stopping, the NaN guard, clean Ctrl-C/SIGTERM,
plus the mixing and precision callbacks its fields name."""
import signal
import threading

import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.schedule import ParamScheduler
from fastai.callback.tracker import EarlyStoppingCallback, TrackerCallback

from fastmask.errors import FastmaskError
from fastmask.learn.mixing import mixing_callbacks
from fastmask.learn.precision import precision_callbacks


def training_callbacks(recipe, learn, notify=print):
    """The recipe's training callbacks, all marked `recipe_cb` so an export can leave them behind:
    mixing, precision, keep-best and early stopping on macro F1, the NaN guard and clean Ctrl-C/SIGTERM."""
    train_y = np.asarray(learn.dls.train.items["y"])
    prec, line = precision_callbacks(recipe.precision, learn.dls.device)
    notify(line)
    cbs = [KeepBest(), NanGuard(), StopOnInterrupt(),
           *mixing_callbacks(recipe.cutmix, recipe.mixup, labels=train_y), *prec]
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
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in self.learn.model.state_dict().items()}
            print(f"Better model found at epoch {self.epoch} with {self.monitor} value: {self.best:.4f}.")

    def after_fit(self):
        self.restore()

    def restore(self):
        """Put the best epoch's weights back (once: the copy is dropped, so an export does not carry it);
        False when no epoch finished."""
        if self.state is not None:
            self.learn.model.load_state_dict(self.state)
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
            print(f"No improvement since epoch {self.epoch - self.wait}: early stopping")
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
    before `fit` raises KeyboardInterrupt. A second signal interrupts at once."""
    order = 0
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def before_fit(self):
        self.hit, self.old = False, {}
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handler) for s in self.SIGNALS}

    def _handler(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def after_batch(self):
        if self.hit:
            raise CancelFitException

    def after_fit(self):
        for s, old in self.old.items():
            signal.signal(s, old)
        if self.hit:  # raising here would skip the cleanup of later callbacks: `fit` raises instead
            print("interrupted: the learner holds its best epoch so far")

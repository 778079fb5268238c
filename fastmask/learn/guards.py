"""Callbacks that guard a fit: the first non-finite loss stops it with the likely cause, Ctrl-C or SIGTERM
ends it through fastai's cancel path so every callback cleans up, and lr_find leaves no folder behind."""
import os
import signal
import threading

import torch
from fastai.callback.core import Callback, CancelFitException

from fastmask.errors import FastmaskError, StopNow


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


class NoStrayModelsFolder(Callback):
    """fastai's lr_find saves the weights into a temp folder under `learn.path/learn.model_dir` ("models/")
    and removes the temp folder but not "models/": a REPL's `learn.lr_find()` left an empty folder in the
    project. Runs after the LRFinder (order 60) at both ends, so it sees the folder the finder made."""
    order = 61

    def before_fit(self):
        finder = getattr(self.learn, "lr_finder", None)
        folder = self.path / self.model_dir
        # nothing else in it than the finder's temp folder: made by the finder (or empty before), so ours to remove
        self.folder = folder if finder is not None and folder.is_dir() and set(os.listdir(folder)) == {
            os.path.basename(finder.tmp_d.name)} else None

    def after_fit(self):
        if self.folder is not None and self.folder.is_dir() and not os.listdir(self.folder):
            self.folder.rmdir()
        self.folder = None

"""How a fit shows on the console (as fastai's callback/progress.py): ConsoleProgress follows fastmask.console's
mode (bars, one line per epoch, or nothing); Quiet silences a search trial's fit whatever the mode."""
import contextlib

from fastai.callback.core import Callback
from fastai.imports import noop  # the noop of Learner.no_logging (fastcore has its own)

from fastmask import console
from fastmask.learn.tracker import KeepBest


def hand_back_logger(learn, ours, original):
    """A CSVLogger started inside our logger swap puts back the logger it found (ours) at its after_fit,
    which runs after ours: point it at the original instead, so the learner (and its export) keep that."""
    for cb in learn.cbs:
        if getattr(cb, "old_logger", None) == ours:
            cb.old_logger = original


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
            hand_back_logger(self.learn, self._line, self.old_logger)
            self.learn.logger, self.old_logger = self.old_logger, None

    def _table_row(self, log):
        if getattr(self.bar, "mbar", False):
            log = list(log)
            if log and isinstance(log[0], int):  # epochs counted from 1 on screen, as the lines, plots and card count
                log[0] += 1
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


class Quiet(Callback):
    """No per-epoch lines or progress bar in a trial's fit: fastai's `no_logging()`, and ProgressCallback
    sits the fit out (`run=False`, reset by fastai after it: `no_bar()` cannot leave a fit under way)."""
    order = -20  # before the Recorder, ProgressCallback and CSVLogger start

    def before_fit(self):
        self.stack = contextlib.ExitStack()
        self.stack.enter_context(self.learn.no_logging())
        self.silent = self.learn.logger
        if hasattr(self.learn, "progress"):
            self.learn.progress.run = False

    def after_fit(self):
        self.stack.close()
        hand_back_logger(self.learn, self.silent, self.learn.logger)

"""Callbacks that track validation macro F1 (as fastai's callback/tracker.py): the kept epoch's weights held
in memory and put back, and early stopping that waits for one-cycle's lr peak.

Both wait out validation noise. Macro F1 over 18 classes on a few dozen validation people jumps from epoch
to epoch by more than training changes it (15 people: 0.135 -> 0.048 -> 0.126), so "the best epoch" is often
a lucky draw, and "no better for 3 epochs" says nothing. An epoch is judged against the best so far by the
paired person bootstrap the verdicts use (the same people, both epochs' predictions drawn together): it is
"credibly worse" only when the best leads it by more than Z of that difference's standard errors. The kept
epoch is the latest one not credibly worse than the best (on a plateau, the most trained), and patience
counts only credibly worse epochs. On a large validation set this is ordinary keep-best."""
import numpy as np
from fastai.callback.core import CancelFitException
from fastai.callback.schedule import ParamScheduler
from fastai.callback.tracker import EarlyStoppingCallback, TrackerCallback
from fastai.torch_core import get_model  # the model inside DDP: its weights are named `module.*`, the fit ends unwrapped

from fastmask import console
from fastmask.learn.distributed import is_main
from fastmask.learn.metrics import paired_difference

Z = 2.0  # "credibly worse": the best leads by more than this many standard errors of the paired difference


class KeepBest(TrackerCallback):
    """The weights of the latest epoch not credibly worse than the best by validation macro F1 (see the module
    docstring; `z=0` keeps the best epoch itself), kept in memory and put back at the end of fit (also when it
    is cancelled, e.g. by Ctrl-C). In memory rather than in models/best.pth: nothing left beside the export,
    and nothing written into a REPL's working folder. `best_epoch` is the kept epoch (0-based, as fastai's)."""
    order = TrackerCallback.order + 1

    def __init__(self, monitor="macro_f1", comp=np.greater, z=None):
        super().__init__(monitor=monitor, comp=comp)
        self.z, self.state, self.best_epoch = (Z if z is None else z), None, None

    def before_fit(self):
        super().before_fit()
        self.state, self.best_epoch, self.best_preds, self._judged = None, None, None, (None, None)

    def after_epoch(self):
        value = self.recorder.values[-1][self.idx] if self.recorder.values else None
        keep = value is not None and self.improves(value)
        super().after_epoch()
        if self.new_best:
            self.best_preds = self._preds()
        if keep:
            moved = self.best_epoch is not None and not self.new_best
            self.best_epoch = self.epoch
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in get_model(self.learn.model).state_dict().items()}
            if is_main() and console.mode() == console.BARS:  # lines mode marks the epoch's line (ConsoleProgress)
                print(f"Better model found at epoch {self.epoch + 1} with {self.monitor} value: {self.best:.4f}."
                      if not moved else f"Keeping epoch {self.epoch + 1} ({self.monitor} {value:.4f}): within "
                      f"validation noise of the best, {self.best:.4f}.")

    def improves(self, value):
        """Whether this epoch, scoring `value`, is kept: a new best, or not credibly worse than the best (what
        after_epoch will decide; early stopping and the progress line ask it before)."""
        if self.comp(value - self.min_delta, self.best):
            return True
        if self.z <= 0 or self.best_preds is None:
            return False
        if self._judged[0] != (self.epoch, value):  # asked by several callbacks in one epoch: judge once
            self._judged = ((self.epoch, value), self._within_noise(value))
        return self._judged[1]

    def _preds(self):
        """(true classes, predicted classes, validation people) of this epoch, from the macro F1 metric's
        accumulated predictions; None when they cannot be paired with the validation people (e.g. several
        processes, each holding part of them)."""
        metric = next((m for m in self.learn.metrics if getattr(m, "name", None) == self.monitor), None)
        items = getattr(self.dls.valid, "items", None)
        if metric is None or not getattr(metric, "preds", None) or items is None or "person" not in items:
            return None
        p = np.concatenate([t.argmax(-1).cpu().numpy() for t in metric.preds])
        y = np.concatenate([t.cpu().numpy() for t in metric.targs])
        people = items["person"].to_numpy()
        return (y, p, people) if len(y) == len(people) else None

    def _within_noise(self, value):
        now = self._preds()
        if now is None or not np.array_equal(now[0], self.best_preds[0]):
            return False
        _, se = paired_difference(now[0], self.best_preds[1], now[1], now[2])
        return self.best - value <= self.z * se  # reached only below the best

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
    """Early stopping that only counts epochs after one-cycle's lr peak (before it the lr is still rising and
    validation scores are at their noisiest, so a dip there says nothing about the plateau), and among those
    only the epochs KeepBest would not keep: credibly worse than the best, not merely below it."""
    def after_epoch(self):
        keep = next((cb for cb in self.learn.cbs if isinstance(cb, KeepBest)), None)
        value = self.recorder.values[-1][self.idx] if self.recorder.values and self.idx is not None else None
        kept = keep is not None and value is not None and keep.improves(value)
        TrackerCallback.after_epoch(self)
        sched = next((cb for cb in self.learn.cbs if isinstance(cb, ParamScheduler)), None)
        peak = 0.25 if sched is None else _peak(sched)
        if self.new_best or kept or (self.epoch + 1) / self.n_epoch <= peak:
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            if is_main() and console.mode() == console.BARS:  # epochs counted from 1, as the table shows them
                print(f"No improvement since epoch {self.epoch - self.wait + 1}: early stopping")
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

"""Callbacks that track validation macro F1 (as fastai's callback/tracker.py): the best epoch's weights kept
in memory and put back, and early stopping that waits for one-cycle's lr peak."""
import numpy as np
from fastai.callback.core import CancelFitException
from fastai.callback.schedule import ParamScheduler
from fastai.callback.tracker import EarlyStoppingCallback, TrackerCallback
from fastai.torch_core import get_model  # the model inside DDP: its weights are named `module.*`, the fit ends unwrapped

from fastmask import console
from fastmask.learn.distributed import is_main


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
                print(f"Better model found at epoch {self.epoch + 1} with {self.monitor} value: {self.best:.4f}.")

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

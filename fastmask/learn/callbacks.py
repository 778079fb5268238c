"""The recipe's training callbacks, assembled: keep-best and peak-aware early stopping (tracker), the NaN
guard and clean Ctrl-C/SIGTERM (guards), plus the mixing and precision callbacks its fields name. How a fit
shows on the console is progress.py's."""
import numpy as np

from fastmask import console
from fastmask.learn.guards import NanGuard, StopOnInterrupt
from fastmask.learn.mixing import mixing_callbacks
from fastmask.learn.precision import precision_callbacks
from fastmask.learn.progress import ConsoleProgress  # noqa: F401  (a learner exported before the split names it here)
from fastmask.learn.tracker import KeepBest, PeakAwareEarlyStopping


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

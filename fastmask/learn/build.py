"""recipe -> Learner -> fit (the DataLoaders come from data.dls). Everything here is what a REPL user gets too."""
import tempfile
from pathlib import Path

import fastai.callback.schedule  # noqa: F401  (patches fit_one_cycle and lr_find onto Learner)
import numpy as np
from fastai.data.transforms import Normalize
from fastai.metrics import accuracy
from fastai.vision.core import imagenet_stats
from fastcore.basics import patch

from fastmask.choices import check_choices
from fastmask.data import faces
from fastmask.errors import FastmaskError, one_line
from fastmask.labels import N_CLASSES
from fastmask.learn.callbacks import training_callbacks
from fastmask.learn.guards import NoStrayModelsFolder, StopOnInterrupt
from fastmask.learn.heads import HEADS
from fastmask.learn.losses import build_loss
from fastmask.learn.metrics import MacroF1
from fastmask.learn.mixing import mixing_callbacks
from fastmask.learn.model import check_arch, check_size, resolve_weights, timm_kwargs
from fastmask.learn.precision import precision_callbacks
from fastmask.learn.progress import ConsoleProgress
from fastmask.recipe import Recipe


def preflight(recipe):
    """Recipe values that can only be judged against the libraries fail here, before data or a run folder."""
    check_choices(recipe)
    check_arch(recipe.arch)
    check_size(recipe.arch, recipe.size)  # a ViT/MaxViT at a size it cannot take: one line naming one it can
    if faces.margin_of(recipe.crop) is not None:
        faces.detector()  # crop="face" without the [face] extra: one line now, not after the data is read
    if recipe.pretrained not in ("auto", False, None):
        weights, _ = resolve_weights(recipe.arch, recipe.pretrained)  # a missing file, or True offline: fail fast
        if weights and isinstance(recipe.pretrained, str):
            check_weights_file(weights)
    build_loss(recipe.loss, recipe.heads, recipe.task_weights)
    mixing_callbacks(recipe.cutmix, recipe.mixup, labels=np.arange(N_CLASSES), p=recipe.mix_prob)
    precision_callbacks(recipe.precision)
    if recipe.replicates > 1 and recipe.split.n_folds:
        raise FastmaskError("recipe field replicates: k-fold already trains one model per fold; "
                            "use replicates with a single split (person or random)")


def build_learner(recipe, dls, notify=print, train=True):
    """The recipe's Learner. With `train` (the default), the recipe's training callbacks are on
    `learn.cbs` and its lr is `learn.lr`, so `fit_one_cycle`, `fine_tune` and `lr_find` in a REPL train
    the hypothesis exactly as `python -m fastmask.run` does; `train=False` builds a bare predictor.
    Progress shows as fastmask.console's mode asks: bars on a terminal, one line per epoch into a pipe."""
    check_arch(recipe.arch)
    if train:  # a REPL's r.learner() meets the size check preflight gives a run (cached: once per arch and size)
        check_size(recipe.arch, recipe.size)
    weights, notice = resolve_weights(recipe.arch, recipe.pretrained if train else False)
    if notice and train:
        notify(notice)
    if weights and train and isinstance(recipe.pretrained, str) and recipe.pretrained != "auto":
        check_weights_file(weights)
    extra = timm_kwargs(recipe.arch, recipe.size, weights)  # the recipe's size, weights file: see learn.model
    loss = build_loss(recipe.loss, recipe.heads, recipe.task_weights)
    common = dict(loss_func=loss, metrics=[MacroF1(), accuracy], wd=recipe.wd)
    learn = HEADS[recipe.heads](dls, recipe.arch, pretrained=weights is not None, **common, **extra)
    if not dls.after_batch.fs.filter(lambda t: isinstance(t, Normalize)):
        # fastai normalises only for pretrained models; from scratch we still want centred inputs
        dls.add_tfms([Normalize.from_stats(*imagenet_stats)], "after_batch")
    learn.add_cbs([ConsoleProgress(), NoStrayModelsFolder()])
    if train:
        learn.add_cbs(training_callbacks(recipe, learn, notify))
        learn.lr = pick_lr(recipe, learn)
    return learn


_CHECKED = set()  # (path, size, mtime) of weights files opened once already in this process


def check_weights_file(path):
    """A user's weights file opened as timm will open it (torch's weights_only, or safetensors), so a file
    it refuses is one line naming it rather than an unpickling traceback. weights_only runs no code.
    Each file is opened once per process (until it changes), not once per fold, seed or trial."""
    import torch
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _CHECKED:
        return
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            load_file(str(path))
        else:
            torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (UnpicklingError, SafetensorError, EOFError, RuntimeError: all the file's)
        raise FastmaskError(f"recipe field pretrained: {path} is not a weights file torch opens safely "
                            f"({type(e).__name__}: {one_line(e, named=False, limit=160)})") from None
    _CHECKED.add(key)


def pick_lr(recipe, learn):
    """The recipe's lr; for `lr="find"`, lr_find's valley, found once when the learner is built."""
    if recipe.lr != "find":
        return float(recipe.lr)
    # lr_find saves the weights to learn.path/models and restores them: keep that out of the user's folder
    path = learn.path
    with tempfile.TemporaryDirectory(prefix="fastmask-lr-find-") as tmp:
        learn.path = Path(tmp)
        try:
            lr = float(learn.lr_find(show_plot=False).valley)
        except (IndexError, ValueError):  # too few batches for a curve on tiny data
            lr = None
        finally:
            learn.path = path
    # the finder's curve for lr_find.png (report.plots), kept before fit resets the recorder
    learn.lr_curve = dict(lrs=[float(x) for x in learn.recorder.lrs],
                          losses=[float(x) for x in learn.recorder.losses], suggestion=lr)
    return 1e-3 if lr is None else lr


def fit(recipe, learn, cbs=()):
    """fit_one_cycle over the recipe's epochs at `learn.lr`, with the recipe's callbacks already on
    `learn` (see build_learner). Ctrl-C: the learner is left clean at its best epoch so far, then
    KeyboardInterrupt is raised. Returns the lr used."""
    cbs, logger = list(cbs), learn.logger
    try:
        learn.fit_one_cycle(recipe.epochs, learn.lr, cbs=cbs)
    except KeyboardInterrupt:  # a second signal (StopNow): fastai ran no after_fit, so undo what they would have
        tidy_after_stop(learn, cbs, logger)
        raise
    if any(getattr(cb, "hit", False) for cb in learn.cbs if isinstance(cb, StopOnInterrupt)):
        raise KeyboardInterrupt
    check_trained(learn.recorder.losses)
    return learn.lr


def check_trained(losses):
    """FastmaskError unless some training batch gave a finite, non-zero loss: a model that learnt nothing
    must not be recorded as a finished run."""
    losses = [float(x) for x in losses]
    if not losses:
        raise FastmaskError("training ran no batch (fewer training images than bs?): nothing was learnt")
    if all(x == 0 or not np.isfinite(x) for x in losses):
        raise FastmaskError(f"every training loss of the {len(losses)} batches was 0 or NaN: nothing was learnt "
                            "(check the recipe's loss and task_weights)")


def tidy_after_stop(learn, cbs, logger):
    """The learner as after a whole fit, when fit ended by an exception fastai does not cancel on: without
    this a CSVLogger's open file stays its logger (an export then fails to pickle it) and the progress
    callbacks stay switched off for the next fit."""
    for cb in [*learn.cbs, *cbs]:
        if isinstance(cb, ConsoleProgress) and "bar" in vars(cb):  # its before_fit ran
            cb.after_fit()
        f = getattr(cb, "file", None)
        if f is not None and hasattr(f, "close"):
            f.close()
        cb.run = True
    learn.logger = logger


def valid_frame(learn):
    """The validation rows (true labels in `label`) with their probabilities, as the learner saw them."""
    probs, _ = learn.get_preds(ds_idx=1)
    return learn.dls.valid.items, probs.numpy()


@patch
def learner(self: Recipe, data=None, dls=None):
    """The Learner `python -m fastmask.run` trains: the recipe's callbacks (CutMix, precision,
    keep-best, early stopping, ...) are on `learn.cbs` and its lr is `learn.lr`."""
    return build_learner(self, dls if dls is not None else self.dls(data))

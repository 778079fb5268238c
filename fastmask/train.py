"""recipe -> DataLoaders -> Learner -> fit. Everything here is what a REPL user gets too."""
import signal
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import fastai.callback.schedule  # noqa: F401  (patches fit_one_cycle and lr_find onto Learner)
import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.schedule import ParamScheduler
from fastai.callback.tracker import EarlyStoppingCallback, TrackerCallback
from fastai.data.block import CategoryBlock, DataBlock, TransformBlock
from fastai.data.transforms import ColReader, IndexSplitter, IntToFloatTensor, Normalize
from fastai.learner import Learner
from fastai.metrics import accuracy
from fastai.torch_core import set_seed
from fastai.vision.core import imagenet_stats
from fastai.vision.learner import vision_learner

from . import cache
from . import data as fmdata
from .cache import Prepare
from .errors import FastmaskError
from .augment import augmentation
from .heads import multi_head_for, separate_models, separate_splitter
from .labels import AGE_THRESHOLD, N_CLASSES, label_of
from .losses import build_loss
from .metrics import MacroF1
from .mixing import mixing_callbacks
from .model import check_arch, resolve_weights
from .precision import precision_callbacks
from .sampling import class_weights, oversample
from .split import Splitter

def default_data():
    """data/twin in the source checkout (an editable install, as the README sets up), else under the
    current folder: an installed package must not write into site-packages."""
    top = Path(__file__).resolve().parent.parent
    return (top if (top / "pyproject.toml").exists() else Path.cwd()) / "data" / "twin"


@dataclass
class Data:
    train: pd.DataFrame
    eval: Optional[pd.DataFrame]
    answers: Optional[pd.DataFrame]
    root: Path


def load_data(data=None, skip_bad=False, progress=True):
    """The competition folder at `data` (holding train/ and eval/), or the default twin, made on first use."""
    if data is None:
        from .synth import ensure_twin
        root = ensure_twin(default_data(), progress=progress)
    else:
        root = Path(data)
    train_root, eval_root = fmdata.locate(root)
    df = fmdata.read_train(train_root, skip_bad=skip_bad)
    ev = fmdata.read_eval(eval_root) if eval_root else None
    ans = fmdata.read_answers(eval_root) if eval_root else None
    return Data(df, ev, ans, root)


def build_dls(recipe, df):
    """DataLoaders for `recipe`: person split, training-only labels, sampling and augmentation.

    The split is drawn once on the roster, then fixed by position, so oversampled copies (appended at
    the end) stay on the training side and validation keeps the true labels."""
    set_seed(recipe.seed, reproducible=True)
    df = df.reset_index(drop=True)
    train_idx, valid_idx = Splitter(recipe.split, recipe.valid_pct, recipe.split_seed)(df)
    df = df.assign(y=df["label"])
    if recipe.age_threshold != AGE_THRESHOLD:  # a training-time choice: validation keeps the true labels
        moved = label_of_rows(df.iloc[train_idx], recipe.age_threshold)
        df.loc[df.index[train_idx], "y"] = moved
    kind, _, arg = (recipe.sampler or "").partition(":")
    if kind == "oversample":
        df, train_idx = oversample(df, train_idx, target_share=float(arg) if arg else 0.5 / N_CLASSES,
                                   seed=recipe.seed, label_col="y")
    size = tuple(recipe.size)
    paths = df["path"].unique()  # oversampled copies share their original's cached pixels
    array = cache.build(paths, size, recipe.crop) if recipe.cache else None
    images = TransformBlock(type_tfms=Prepare(size, recipe.crop, paths, array), batch_tfms=IntToFloatTensor)
    block = DataBlock(
        blocks=(images, CategoryBlock(vocab=list(range(N_CLASSES)))),
        get_x=ColReader("path"), get_y=ColReader("y"),
        splitter=IndexSplitter(valid_idx),  # training: every other row, oversampled copies included
        # crop and resize happen once in Prepare; only the per-epoch augmentation is left here
        item_tfms=augmentation(recipe.augment, size, seed=recipe.seed))
    kw = dict(bs=recipe.bs, num_workers=recipe.num_workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if kind == "weighted":
            w = class_weights(df["y"].to_numpy(), power=float(arg) if arg else 1.0, idx=train_idx)
            return block.weighted_dataloaders(df, w, **kw)
        return block.dataloaders(df, **kw)


def label_of_rows(rows, threshold):
    return [label_of(m, g, a, threshold) for m, g, a in zip(rows["mask"], rows["gender"], rows["age"])]


def preflight(recipe):
    """Recipe values that can only be judged against the libraries fail here, before data or a run folder."""
    check_arch(recipe.arch)
    if recipe.pretrained not in ("auto", False, None):
        resolve_weights(recipe.arch, recipe.pretrained)  # a missing file, or True offline: fail fast
    build_loss(recipe.loss, "multi" if recipe.heads != "single" else "single", recipe.task_weights)
    mixing_callbacks(recipe.cutmix, recipe.mixup, labels=np.arange(N_CLASSES))
    precision_callbacks(recipe.precision)
    if recipe.replicates > 1 and recipe.split.startswith("kfold") and "/" not in recipe.split:
        raise FastmaskError("recipe field replicates: k-fold already trains one model per fold; "
                            "use replicates with a single split (person or random)")


def build_learner(recipe, dls, notify=print, train=True):
    """The recipe's Learner. With `train` (the default), the recipe's training callbacks are on
    `learn.cbs` and its lr is `learn.lr`, so `fit_one_cycle`, `fine_tune` and `lr_find` in a REPL train
    the hypothesis exactly as `python -m fastmask.run` does; `train=False` builds a bare predictor."""
    check_arch(recipe.arch)
    weights, notice = resolve_weights(recipe.arch, recipe.pretrained if train else False)
    if notice and train:
        notify(notice)
    extra = {"pretrained_cfg_overlay": dict(file=str(weights))} if weights else {}
    loss = build_loss(recipe.loss, "multi" if recipe.heads != "single" else "single", recipe.task_weights)
    common = dict(loss_func=loss, metrics=[MacroF1(), accuracy], wd=recipe.wd)
    if recipe.heads == "separate":
        model = separate_models(recipe.arch, pretrained=weights is not None, **extra)
        learn = Learner(dls, model, splitter=separate_splitter, **common)
    else:
        if recipe.heads == "multi":
            extra["custom_head"] = multi_head_for(recipe.arch)
        # with weights, vision_learner adds the model's own Normalize (not always ImageNet's)
        learn = vision_learner(dls, recipe.arch, pretrained=weights is not None, n_out=N_CLASSES, **common, **extra)
        learn.unfreeze()  # every recipe trains the whole network, so runs compare like with like
    if not dls.after_batch.fs.filter(lambda t: isinstance(t, Normalize)):
        # fastai normalises only for pretrained models; from scratch we still want centred inputs
        dls.add_tfms([Normalize.from_stats(*imagenet_stats)], "after_batch")
    if train:
        learn.add_cbs(training_callbacks(recipe, learn, notify))
        learn.lr = pick_lr(recipe, learn)
    return learn


def pick_lr(recipe, learn):
    """The recipe's lr; for `lr="find"`, lr_find's valley, found once when the learner is built."""
    if recipe.lr != "find":
        return float(recipe.lr)
    # lr_find saves the weights to learn.path/models and restores them: keep that out of the user's folder
    path = learn.path
    with tempfile.TemporaryDirectory(prefix="fastmask-lr-find-") as tmp:
        learn.path = Path(tmp)
        try:
            return float(learn.lr_find(show_plot=False).valley)
        except (IndexError, ValueError):  # too few batches for a curve on tiny data
            return 1e-3
        finally:
            learn.path = path


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


def fit(recipe, learn, cbs=()):
    """fit_one_cycle over the recipe's epochs at `learn.lr`, with the recipe's callbacks already on
    `learn` (see build_learner). Ctrl-C: the learner is left clean at its best epoch so far, then
    KeyboardInterrupt is raised. Returns the lr used."""
    learn.fit_one_cycle(recipe.epochs, learn.lr, cbs=list(cbs))
    if any(getattr(cb, "hit", False) for cb in learn.cbs if isinstance(cb, StopOnInterrupt)):
        raise KeyboardInterrupt
    return learn.lr


def valid_frame(learn):
    """The validation rows (true labels in `label`) with their probabilities, as the learner saw them."""
    probs, _ = learn.get_preds(ds_idx=1)
    return learn.dls.valid.items, probs.numpy()

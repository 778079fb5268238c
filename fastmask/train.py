"""recipe -> DataLoaders -> Learner -> fit. Everything here is what a REPL user gets too."""
import signal
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
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
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
    train_idx, valid_idx = Splitter(recipe.split, recipe.valid_pct, recipe.seed)(df)
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


def build_learner(recipe, dls, notify=print):
    check_arch(recipe.arch)
    weights, notice = resolve_weights(recipe.arch, recipe.pretrained)
    if notice:
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
    return learn


def pick_lr(recipe, learn):
    if recipe.lr != "find":
        return float(recipe.lr)
    try:
        return float(learn.lr_find(show_plot=False).valley)
    except (IndexError, ValueError):  # too few batches for a curve on tiny data
        return 1e-3


def training_callbacks(recipe, learn, notify=print):
    """The recipe's training-only callbacks: mixing and precision (passed to fit, so not exported)."""
    train_y = np.asarray(learn.dls.train.items["y"])
    prec, line = precision_callbacks(recipe.precision, learn.dls.device)
    notify(line)
    return [*mixing_callbacks(recipe.cutmix, recipe.mixup, labels=train_y), *prec]


class NanGuard(Callback):
    "Stop at the first non-finite training loss with a message naming the epoch and the likely cause"
    order = 100

    def after_loss(self):
        if self.training and not torch.isfinite(self.loss).all():
            lr = self.opt.hypers[-1]["lr"] if self.opt else float("nan")
            raise FastmaskError(f"training loss became {self.loss.item()} at epoch {self.epoch + 1}, batch "
                                f"{self.iter + 1} (lr {lr:.2g}): the learning rate is likely too high; "
                                f"try --set lr={lr / 10:.1g}")


class KeepBest(SaveModelCallback):
    "SaveModelCallback that tolerates a fit cancelled before its first saved epoch"
    def after_fit(self, **kwargs):
        if (self.path / self.model_dir / f"{self.fname}.pth").exists():
            super().after_fit(**kwargs)


class StopOnInterrupt(Callback):
    """Ctrl-C ends training at the next batch through fastai's cancel path, so every callback cleans
    up (CutMix restores the loss, CSVLogger closes its file, KeepBest reloads the best epoch) before
    `fit` raises KeyboardInterrupt. A second Ctrl-C interrupts at once."""
    order = 0

    def before_fit(self):
        self.hit, self.old = False, None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def after_batch(self):
        if self.hit:
            raise CancelFitException

    def after_fit(self):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


def fit(recipe, learn, cbs=(), notify=print):
    """fit_one_cycle with the best epoch by validation macro F1 kept (and early stopping if asked).

    Ctrl-C: the learner is left clean at its best epoch so far, then KeyboardInterrupt is raised."""
    stop = StopOnInterrupt()
    cbs = [KeepBest(monitor="macro_f1", comp=np.greater, fname="best"), NanGuard(), stop,
           *training_callbacks(recipe, learn, notify), *cbs]
    if recipe.patience:
        cbs.append(EarlyStoppingCallback(monitor="macro_f1", comp=np.greater, patience=recipe.patience))
    lr = pick_lr(recipe, learn)
    learn.fit_one_cycle(recipe.epochs, lr, cbs=cbs)
    if stop.hit:
        raise KeyboardInterrupt
    return lr


def valid_frame(learn):
    """The validation rows (true labels in `label`) with their probabilities, as the learner saw them."""
    probs, _ = learn.get_preds(ds_idx=1)
    return learn.dls.valid.items, probs.numpy()

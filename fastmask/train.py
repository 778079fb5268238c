"""recipe -> DataLoaders -> Learner -> fit. Everything here is what a REPL user gets too."""
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import fastai.callback.schedule  # noqa: F401  (patches fit_one_cycle and lr_find onto Learner)
import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.data.block import CategoryBlock, DataBlock, TransformBlock
from fastai.data.transforms import ColReader, IntToFloatTensor, Normalize
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

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "data" / "twin"


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
        root = ensure_twin(DEFAULT_DATA, progress=progress)
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
        splitter=FixedSplitter(train_idx, valid_idx),
        # crop and resize happen once in Prepare; only the per-epoch augmentation is left here
        item_tfms=augmentation(recipe.augment, size, seed=recipe.seed),
        # Normalize always: fastai adds it only for pretrained models, and from-scratch ones train worse without.
        batch_tfms=Normalize.from_stats(*imagenet_stats))
    kw = dict(bs=recipe.bs, num_workers=recipe.num_workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if kind == "weighted":
            w = class_weights(df["y"].to_numpy(), power=float(arg) if arg else 1.0, idx=train_idx)
            return block.weighted_dataloaders(df, w, **kw)
        return block.dataloaders(df, **kw)


class FixedSplitter:
    """A fastai splitter returning split positions drawn earlier (picklable, unlike a lambda)."""
    def __init__(self, train_idx, valid_idx):
        self.train_idx, self.valid_idx = list(map(int, train_idx)), list(map(int, valid_idx))

    def __call__(self, items):
        return self.train_idx, self.valid_idx


def label_of_rows(rows, threshold):
    return [label_of(m, g, a, threshold) for m, g, a in zip(rows["mask"], rows["gender"], rows["age"])]


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
        return Learner(dls, model, splitter=separate_splitter, **common)
    if recipe.heads == "multi":
        extra["custom_head"] = multi_head_for(recipe.arch)
    learn = vision_learner(dls, recipe.arch, pretrained=weights is not None, n_out=N_CLASSES, **common, **extra)
    learn.unfreeze()  # every recipe trains the whole network, so runs compare like with like
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


def fit(recipe, learn, cbs=(), notify=print):
    """fit_one_cycle with the best epoch by validation macro F1 kept (and early stopping if asked)."""
    cbs = [SaveModelCallback(monitor="macro_f1", comp=np.greater, fname="best"), NanGuard(),
           *training_callbacks(recipe, learn, notify), *cbs]
    if recipe.patience:
        cbs.append(EarlyStoppingCallback(monitor="macro_f1", comp=np.greater, patience=recipe.patience))
    lr = pick_lr(recipe, learn)
    learn.fit_one_cycle(recipe.epochs, lr, cbs=cbs)
    return lr


def predict(learn, paths):
    """Class probabilities for image paths, in order."""
    dl = learn.dls.test_dl(list(paths), num_workers=0)
    probs, _ = learn.get_preds(dl=dl)
    return probs.numpy()


def valid_frame(learn):
    """The validation rows (true labels in `label`) with their probabilities, as the learner saw them."""
    probs, _ = learn.get_preds(ds_idx=1)
    return learn.dls.valid.items, probs.numpy()

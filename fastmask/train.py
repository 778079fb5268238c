"""recipe -> DataLoaders -> Learner -> fit. Everything here is what a REPL user gets too."""
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import fastai.callback.schedule  # noqa: F401  (patches fit_one_cycle and lr_find onto Learner)
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.transforms import ColReader
from fastai.metrics import accuracy
from fastai.torch_core import set_seed
from fastai.vision.augment import Resize
from fastai.vision.core import imagenet_stats
from fastai.vision.data import ImageBlock
from fastai.data.transforms import Normalize
from fastai.vision.learner import vision_learner

from . import data as fmdata
from .errors import FastmaskError
from .labels import N_CLASSES
from .metrics import MacroF1
from .model import check_arch, resolve_weights
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
    set_seed(recipe.seed, reproducible=True)
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=list(range(N_CLASSES)))),
        get_x=ColReader("path"), get_y=ColReader("label"),
        splitter=Splitter(recipe.split, recipe.valid_pct, recipe.seed),
        item_tfms=Resize(tuple(recipe.size), method="squish"),
        # Normalize always: fastai adds it only for pretrained models, and from-scratch ones train worse without.
        batch_tfms=Normalize.from_stats(*imagenet_stats))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return block.dataloaders(df, bs=recipe.bs, num_workers=recipe.num_workers)


def build_learner(recipe, dls, notify=print):
    check_arch(recipe.arch)
    weights, notice = resolve_weights(recipe.arch, recipe.pretrained)
    if notice:
        notify(notice)
    extra = {"pretrained_cfg_overlay": dict(file=str(weights))} if weights else {}
    learn = vision_learner(dls, recipe.arch, pretrained=weights is not None, n_out=N_CLASSES,
                           metrics=[MacroF1(), accuracy], wd=recipe.wd, **extra)
    learn.unfreeze()  # every recipe trains the whole network, so runs compare like with like
    return learn


def pick_lr(recipe, learn):
    if recipe.lr != "find":
        return float(recipe.lr)
    try:
        return float(learn.lr_find(show_plot=False).valley)
    except (IndexError, ValueError):  # too few batches for a curve on tiny data
        return 1e-3


def fit(recipe, learn, cbs=()):
    """fit_one_cycle with the best epoch by validation macro F1 kept (and early stopping if asked)."""
    cbs = [SaveModelCallback(monitor="macro_f1", comp=np.greater, fname="best"), *cbs]
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


def valid_frame(learn, df):
    """The validation rows with their probabilities, as the learner saw them."""
    probs, _ = learn.get_preds(ds_idx=1)
    idx = learn.dls.valid.items.index if isinstance(learn.dls.valid.items, pd.DataFrame) else None
    rows = df.loc[idx] if idx is not None else df
    if len(rows) != len(probs):
        raise FastmaskError("validation predictions and rows disagree")
    return rows, probs.numpy()

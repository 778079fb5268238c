"""Learners -> class probabilities for image paths (plain or with TTA) -> the ensemble's class ids.

Every model outputs one tensor of 18 class scores, so fastai's `get_preds` and `Learner.tta` work on
every learner this package exports. What `learn.tta(dl=..., n=N)` does with our pipelines:

- it runs N passes with the *training* transforms switched on (split_idx 0), averages them, and
  returns `0.75 * mean(augmented) + 0.25 * plain` (fastai's `beta=0.25`);
- our only training-only transform is the recipe's albumentations pipeline (`augment="light"` or
  `"strong"`); `Resize` and `Normalize` run on both sides. With `augment="none"` every augmented pass
  would equal the plain one, so such models get a horizontal flip as their one TTA pass instead
  (`HFlip`), and N does not matter for them;
- the albumentations generator is reseeded before each TTA call, so the same call gives the same
  numbers twice; `tta=0` is exactly `get_preds` (fastai's tta cannot take n=0)."""
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from fastai.data.transforms import Transform
from fastai.torch_core import TensorImage
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fastmask.data.augment import Albumentations, reseed
from fastmask.errors import FastmaskError
from fastmask.models.votes import vote


def _hflip_transform():

    class HFlip(Transform):
        """Mirror images left-right; training split only, so it runs in TTA's augmented passes."""
        split_idx, order = 0, 99

        def encodes(self, x: TensorImage):
            return x.flip(-1)
    return HFlip()


def train_only_tfms(dl):
    """Transforms of `dl` that run on the training side only (what TTA switches on)."""
    return [t for t in (*dl.after_item.fs, *dl.after_batch.fs) if getattr(t, "split_idx", None) == 0]


def tta_dl(dl):
    """`dl` ready for TTA: albumentations reseeded (the same call gives the same numbers), and a
    horizontal flip added when the pipeline has no training-only transform (else TTA is a no-op).
    Returns (dl, augmented passes that differ from each other)."""
    extra = train_only_tfms(dl)
    for t in extra:
        if isinstance(t, Albumentations):
            reseed(t.tfm, t.seed)
    if extra:
        return dl, None
    return dl.new(after_batch=[*dl.after_batch.fs, _hflip_transform()]), 1


def predict_probs(learn, paths, tta=0, bs=None):
    """(n, classes) probabilities for image paths, in order. tta=0: one plain pass (exactly
    `get_preds` on `test_dl`); tta=N: fastai's `learn.tta(dl, n=N)` (see the module docstring)."""
    if tta < 0:
        raise FastmaskError(f"--tta: {tta} is negative")
    kw = {"num_workers": 0, **({"bs": bs} if bs else {})}
    dl = learn.dls.test_dl(list(map(str, paths)), **kw)
    with learn.no_bar(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if tta == 0:
            probs, _ = learn.get_preds(dl=dl)
        else:
            dl, passes = tta_dl(dl)
            probs, _ = learn.tta(dl=dl, n=passes or tta)
    return probs.float().cpu().numpy()


@dataclass
class Prediction:
    models: list
    tables: list = field(default_factory=list)  # one (n, 18) probability table per model
    ans: Optional[np.ndarray] = None             # class ids, one per image


def predict(models, paths, tta=0, how="soft", bs=None, progress=True):
    """Every model's probabilities for `paths` and the ensemble's class ids, with a progress bar over models."""
    out = Prediction(models)
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=Console(stderr=True), disable=not progress, transient=False) as bar:
        task = bar.add_task(f"predicting {len(paths)} images" + (f", TTA {tta}" if tta else ""), total=len(models))
        for m in models:
            out.tables.append(predict_probs(m.learn, paths, tta=tta, bs=bs))
            bar.advance(task)
    pos = vote(out.tables, [m.weight for m in models], how)
    out.ans = np.asarray(models[0].codes)[pos]
    return out

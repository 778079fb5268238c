"""DataLoaders: for training a recipe (person split, training-only labels, sampling, augmentation, the
input cache) and for a model file's predictor (its saved pipeline on one dummy item). Both are one DataBlock
shape: Prepare (decode + crop + resize, cached) as the image block's type transform, then the class."""
import warnings

import numpy as np
import pandas as pd
import torch
from fastai.data.block import CategoryBlock, DataBlock, TransformBlock
from fastai.data.transforms import ColReader, IndexSplitter, IntToFloatTensor
from fastai.torch_core import set_seed
from fastcore.basics import patch

from fastmask import console
from fastmask.data import cache, faces
from fastmask.data.augment import augmentation
from fastmask.data.cache import Prepare
from fastmask.data.load import load_data
from fastmask.data.relabel import labels_of
from fastmask.data.sampling import resample
from fastmask.data.split import Splitter
from fastmask.errors import FastmaskError
from fastmask.labels import AGE_THRESHOLD, CLASS_NAMES
from fastmask.recipe import Recipe

DUMMY = "fastmask-safe-model:no-image"  # the one item a model file's DataLoaders are set up on


class ClassName:
    """get_y: a row's class code (`y`) as its class name, so the learner's vocabulary is the class names in
    code order and fastai's own tools (most_confused, plot_top_losses, show_results, predict) say
    "female 30-59 no-mask", not 12. A class, not a lambda: an exported learner pickles it."""
    def __call__(self, row):
        return CLASS_NAMES[int(row["y"])]


def image_block(prep, vocab, valid_idx, item_tfms=None, batch_tfms=None, get_y=None):
    """The DataBlock every fastmask DataLoaders is: images through `prep` (a Prepare), the class from `y`.
    The vocabulary keeps its given order (sorting the names would scramble the class code)."""
    return DataBlock(blocks=(TransformBlock(type_tfms=prep, batch_tfms=IntToFloatTensor),
                             CategoryBlock(vocab=vocab, sort=False)),
                     get_x=ColReader("path"), get_y=get_y or ColReader("y"), splitter=IndexSplitter(valid_idx),
                     item_tfms=item_tfms, batch_tfms=batch_tfms)


def build_dls(recipe, df):
    """DataLoaders for `recipe`: person split, training-only labels, sampling and augmentation.

    The split is drawn once on the roster, then fixed by position, so oversampled copies (appended at
    the end) stay on the training side and validation keeps the true labels."""
    set_seed(recipe.seed, reproducible=True)
    df = df.reset_index(drop=True)
    train_idx, valid_idx = Splitter(recipe.split, recipe.valid_pct, recipe.split_seed)(df)
    df = df.assign(y=df["label"])
    # training-time choices (validation keeps the corrected, true labels): the age threshold, and whether
    # the training rows learn the data folder's corrections (relabel.csv) or the labels given
    if recipe.age_threshold != AGE_THRESHOLD or (not recipe.relabel and "given_label" in df):
        rows = df.iloc[train_idx]
        moved = labels_of(rows, recipe.age_threshold, given=not recipe.relabel)
        df.loc[df.index[train_idx], "y"] = moved
    df, train_idx, weights = resample(recipe.sampler, df, train_idx, seed=recipe.seed, label_col="y")
    check_bs(recipe.bs, len(train_idx))
    size = tuple(recipe.size)
    paths = df["path"].unique()  # oversampled copies share their original's cached pixels
    bar = console.mode() == console.BARS  # piped, a rich bar is an empty line; quiet, nothing
    boxes, sources, typical = None, None, None
    if faces.margin_of(recipe.crop) is not None:  # every training and validation photo's face, found once
        rows = df.drop_duplicates("path")
        boxes, sources, typical = faces.boxes_for(rows, progress=bar)
    array = cache.build(paths, size, recipe.crop, progress=bar, boxes=boxes) if recipe.cache else None
    # training: every row but the validation ones, oversampled copies included; crop and resize happen
    # once in Prepare, so only the per-epoch augmentation is left as an item transform
    block = image_block(Prepare(size, recipe.crop, paths, array, boxes, typical), CLASS_NAMES, valid_idx, get_y=ClassName(),
                        item_tfms=augmentation(recipe.augment, size, seed=recipe.seed))
    kw = dict(bs=recipe.bs, num_workers=recipe.num_workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dls = block.weighted_dataloaders(df, weights, **kw) if weights is not None else block.dataloaders(df, **kw)
    dls.face_sources = sources  # where a face crop's boxes came from (the card reports it); None otherwise
    return dls


def check_bs(bs, n_train):
    # fastai drops the last partial training batch: a bs above the training rows trains no batch at all
    if bs > n_train:
        raise FastmaskError(f"recipe field bs: {bs} is more than the {n_train} training images of this split, so "
                            f"no batch would be trained; use bs <= {n_train}")


def check_data(recipe, df):
    """What only the data can judge, before a run folder or a cache exists: the batch size against the
    training rows, and the cache's size against the free disk."""
    df = df.reset_index(drop=True)
    train_idx, _ = Splitter(recipe.split, recipe.valid_pct, recipe.split_seed)(df)
    _, train_idx, _ = resample(recipe.sampler, df.assign(y=df["label"]), train_idx, seed=recipe.seed, label_col="y")
    check_bs(recipe.bs, len(train_idx))
    if recipe.cache:
        cache.check_room(df["path"].unique(), tuple(recipe.size), recipe.crop)


def predictor_dls(size, crop, vocab, norm, item_tfms, bs, fallback=None):
    """DataLoaders with an exported learner's pipeline: Prepare at the saved size and crop, the vocabulary
    in its saved order (`norm` and `item_tfms` as saved; `fallback`: a face crop's typical box).

    fastai sets a pipeline up by running one item through it; that item is a black image served from
    a one-row in-memory cache, and both are dropped afterwards, as an export drops its items."""
    prep = Prepare(size, crop, [DUMMY], np.zeros((1, *size, 3), np.uint8), fallback=fallback)
    block = image_block(prep, vocab, [1], item_tfms=item_tfms, batch_tfms=[norm])
    items = pd.DataFrame({"path": [DUMMY, DUMMY], "y": [vocab[0], vocab[0]]})
    dls = block.dataloaders(items, bs=bs, num_workers=0, device=torch.device("cpu"))
    dls = dls.new_empty()  # (sets itself up on the dummy item, so before the cache goes)
    prep.index, prep.array = {}, None
    return dls


@patch
def dls(self: Recipe, data=None):
    """The DataLoaders `python -m fastmask.run` trains on, from the data folder `data` (the twin by default)."""
    return build_dls(self, load_data(data).train)

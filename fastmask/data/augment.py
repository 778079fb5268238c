"""Albumentations presets and the fastai item transforms that apply them.

A recipe's `augment` field is a preset name ("none", "light", "strong"), None, or an `A.Compose`;
`augmentation` turns it into the DataBlock's item_tfms; cropping and resizing happen once, in `cache.Prepare`."""
import copy
import random

import albumentations as A
import numpy as np
from fastai.data.transforms import Transform  # fasttransform's, as fastai exports it
from fastai.vision.core import PILImage
from torch.utils.data import get_worker_info

from fastmask.errors import FastmaskError


def _base(shift, zoom, degrees, p_affine, light):
    """Flip, small affine and brightness/contrast: what every preset does, at its own strength."""
    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(translate_percent=(-shift, shift), scale=(1 - zoom, 1 + zoom), rotate=(-degrees, degrees),
                 border_mode=0, fill=0, p=p_affine),
        A.RandomBrightnessContrast(brightness_limit=light, contrast_limit=light, p=0.5),
    ]


def _light(height, width, strict=False):
    return A.Compose(_base(shift=0.05, zoom=0.05, degrees=10, p_affine=0.5, light=0.15), strict=strict)


def _strong(height, width, strict=False):
    return A.Compose([
        *_base(shift=0.08, zoom=0.1, degrees=15, p_affine=0.7, light=0.2),
        # Hue stays small: mask colour is part of what the model must read.
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03, p=0.5),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5), p=1.0),
                 A.GaussNoise(std_range=(0.02, 0.08), p=1.0)], p=0.3),
        # Small holes only: a large one can erase the mask or the face that decides the label.
        A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.12),
                        hole_width_range=(0.05, 0.12), fill=0, p=0.3),
    ], strict=strict)


# name -> builder(height, width, strict=False) -> A.Compose, or None for no augmentation.
PRESETS = {"none": None, "light": _light, "strong": _strong}


def reseed(comp, seed):
    """Seed `comp` with one random stream shared by all its transforms.

    `A.Compose(seed=...)` (albumentations 2.0.8) gives every child its own generator with the same
    seed, so their draws coincide: two flips with the same p would always fire together."""
    comp.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return comp


def preset(name, size, seed=None, strict=False):
    """The `A.Compose` for preset `name` at `size` (height, width), or None for "none"."""
    if name not in PRESETS:
        raise FastmaskError(f"recipe field augment: unknown preset {name!r} "
                            f"(presets: {', '.join(PRESETS)}; or pass an A.Compose)")
    build = PRESETS[name]
    return None if build is None else reseed(build(*size, strict=strict), seed)


class Albumentations(Transform):
    """An albumentations pipeline on training images only (after Resize, before ToTensor)."""
    split_idx, order = 0, 2

    def __init__(self, tfm, seed=0):
        super().__init__()
        self.tfm, self.seed, self._worker = tfm, seed, None
        reseed(tfm, seed)

    def _reseed_in_worker(self):
        # Each DataLoader worker gets a copy of the same generator and would repeat the others' draws;
        # torch gives each worker, each epoch, its own seed derived from the main (seeded) process.
        info = get_worker_info()
        if info is not None and self._worker != info.seed:
            self._worker = info.seed
            reseed(self.tfm, int(np.random.SeedSequence([self.seed, info.seed]).generate_state(1)[0]))

    def encodes(self, x: PILImage):
        self._reseed_in_worker()
        return PILImage.create(self.tfm(image=np.asarray(x))["image"])


def augmentation(augment, size, seed=0):
    """[Albumentations(...)] for a recipe's `augment` field, or [] for none.

    `augment` is a preset name, None, or an `A.Compose` (a copy is seeded with `seed`, so the
    recipe's object is left as it was); `size` (height, width)."""
    if augment is None:
        return []
    if isinstance(augment, str):
        comp = preset(augment, size, seed=seed)
    elif isinstance(augment, (A.BaseCompose, A.BasicTransform)):
        # A copy: seeding reaches into the transforms, and the recipe's object should stay as written.
        comp = copy.deepcopy(augment if isinstance(augment, A.Compose) else A.Compose([augment]))
    else:
        raise FastmaskError(f"recipe field augment: {augment!r} is neither a preset name "
                            f"({', '.join(PRESETS)}) nor an A.Compose")
    return [] if comp is None else [Albumentations(comp, seed=seed)]

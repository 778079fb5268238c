"""CutMix variants as fastai callbacks: box (fastai's), face halves, and rare-class partners; and MixUp.

All subclass fastai's MixHandler, so the loss is mixed as fastai mixes it:
`torch.lerp(loss(partner's y), loss(own y), self.lam)`, `lam` being the share of the image kept.
Targets stay class ids and the output one 18-vector per image, so the factorised multi-head
output needs nothing special. Every mixer mixes a batch with probability `p` (the recipe's `mix_prob`,
timm's Mixup `prob`); a batch left alone trains on the plain loss (lam 1)."""
import numpy as np
import torch
from fastai.callback import mixup as fastai_mixup
from fastai.callback.mixup import MixHandler

from fastmask.choices import Choices
from fastmask.errors import FastmaskError
from fastmask.labels import N_CLASSES


def _paste_half(x, x1, right):
    """x with its left (or right) width//2 columns taken from x1, and the share of x kept."""
    w = x.shape[-1]
    half = w // 2
    cols = slice(w - half, w) if right else slice(0, half)
    out = x.clone()
    out[..., cols] = x1[..., cols]
    return out, (w - half) / w


def _paste_box(cb, x, x1):
    # fastai's own box sampler; it only reads `cb.x` for the device.
    h, w = x.shape[-2:]
    x_1, y_1, x_2, y_2 = fastai_mixup.CutMix.rand_bbox(cb, w, h, cb.distrib.sample((1,)).to(x.device))
    out = x.clone()
    out[..., y_1:y_2, x_1:x_2] = x1[..., y_1:y_2, x_1:x_2]
    return out, float(1 - (x_2 - x_1) * (y_2 - y_1) / (w * h))


def skip_batch(cb):
    """With probability 1 - `cb.p` (timm's Mixup `prob`), leave this batch unmixed: lam 1 and the own targets
    as the partner's, so fastai's `torch.lerp(loss(yb1), loss(yb), lam)` is the plain loss. True when skipped.
    p >= 1 draws nothing, so the random stream is fastai's own."""
    if cb.p >= 1 or torch.rand(()) < cb.p:
        return False
    cb.lam, cb.yb1 = 1.0, tuple(cb.yb)
    return True


# fastai's own two, each on a share `p` of the batches; same names, so `learn.cut_mix` / `learn.mix_up` stay.
class CutMix(fastai_mixup.CutMix):
    """fastai's CutMix (a random box from the partner) on a share `p` of the batches."""
    def __init__(self, alpha=1.0, p=1.0):
        super().__init__(alpha)
        self.p = p

    def before_batch(self):
        if not skip_batch(self):
            super().before_batch()


class MixUp(fastai_mixup.MixUp):
    """fastai's MixUp (Beta(alpha, alpha) blends) on a share `p` of the batches."""
    def __init__(self, alpha=0.4, p=1.0):
        super().__init__(alpha)
        self.p = p

    def before_batch(self):
        if not skip_batch(self):
            super().before_batch()


# What partners may have to share. "mask": the mask status, the code's first digit (labels.decode): a half
# with a mask beside a half without one looks like an incorrectly worn mask, which neither label names.
MATCH = {None: None, "mask": lambda y: torch.div(y, 6, rounding_mode="floor")}


class _Paste(MixHandler):
    """Shared by the CutMix variants here: paste partners into the batch and set lam and yb1."""
    def __init__(self, mode="halves", alpha=1.0, p=1.0, match=None):
        if mode not in ("halves", "box"):
            raise FastmaskError(f"cutmix: mode {mode!r} is not 'halves' or 'box'")
        if match not in MATCH:
            raise FastmaskError(f"cutmix: match {match!r} is not one of {', '.join(map(str, MATCH))}")
        super().__init__(alpha)
        self.mode, self.p, self.match = mode, p, match

    def _groups(self, y):
        """One key per image that its partner must share, or None when any partner will do."""
        key = MATCH[self.match]
        # A plain tensor: fastai's TensorCategory keys would index TensorImage batches, which torch refuses.
        return None if key is None else key(torch.as_tensor(y).as_subclass(torch.Tensor))

    def _mix(self, x1, y1):
        if skip_batch(self):
            return
        if self.mode == "halves":
            x, self.lam = _paste_half(self.x, x1, right=bool(torch.rand(()) < 0.5))
        else:
            x, self.lam = _paste_box(self, self.x, x1)
        self.learn.xb = (x, *self.xb[1:])
        self.yb1 = (y1,)
        if not self.stack_y:  # a loss that takes soft targets: mix the targets instead
            self.learn.yb = (torch.lerp(y1.float(), self.y.float(), self.lam),)

    def _shuffled(self):
        # Partners in one random cycle: every image gets another image of the batch (a plain randperm
        # leaves about one image per batch paired with itself, i.e. unmixed). A batch of one can't be helped.
        # With `match`, one cycle per key: partners share it, and an image alone with its key keeps itself.
        groups = self._groups(self.y)
        groups = torch.zeros_like(self.y) if groups is None else groups
        idx = torch.empty_like(groups, dtype=torch.long)
        for g in groups.unique():
            members = torch.nonzero(groups == g).flatten()
            order = members[torch.randperm(len(members), device=members.device)]
            idx[order] = order.roll(1)
        return self.x[idx], self.y[idx]


class CutMixHalves(_Paste):
    """With probability `p` per batch, each image's left or right half (one side per batch) becomes
    its shuffled partner's same half: the pasted part is face, where a random box often lands on
    background. lam = kept share = 0.5 (odd widths: (w - w//2) / w). With `match="mask"` (the recipe's
    "halves") partners share the mask status."""
    def __init__(self, p=1.0, match=None):
        super().__init__("halves", p=p, match=match)

    def before_batch(self):
        self._mix(*self._shuffled())


def rare_classes(labels, k=6, idx=None):
    """The `k` class ids with the fewest rows (among classes present; ties by id), sorted."""
    y = np.asarray(labels).astype(int)
    y = y if idx is None else y[np.asarray(idx)]
    counts = np.bincount(y, minlength=N_CLASSES)
    present = np.flatnonzero(counts)
    order = present[np.argsort(counts[present], kind="stable")]
    return tuple(sorted(int(c) for c in order[:k]))


class CutMixRare(_Paste):
    """CutMix ("halves" or "box") whose partners are images of the rarest classes.

    Training images of the `rare` classes (or `rare_classes(labels, k)`) from recent batches wait in a
    rolling buffer of `size` images (already augmented and normalised, on the batch's device); each
    image draws its partner from it, or from its own batch while the buffer is still empty. With
    `match="mask"`, from the buffer's images of its own mask status, or its batch's when the buffer has none."""
    def __init__(self, rare=None, labels=None, k=6, mode="halves", alpha=1.0, p=1.0, size=256, match=None):
        if rare is None:
            if labels is None:
                raise FastmaskError("cutmix rare: give the rare class ids or the training labels")
            rare = rare_classes(labels, k)
        super().__init__(mode, alpha, p, match)
        self.rare, self.size = tuple(int(c) for c in rare), size
        self._clear()

    def _clear(self):
        self.buf_x = self.buf_y = None

    def before_fit(self):
        self._clear()

    def after_fit(self):
        self._clear()  # an exported learner should not carry a buffer of images

    def _remember(self, x, y):
        keep = torch.isin(y, torch.tensor(self.rare, device=y.device))
        if not keep.any():
            return
        x, y = x[keep].detach().clone(), y[keep].detach().clone()
        if self.buf_x is None or self.buf_x.shape[1:] != x.shape[1:]:  # first batch, or a new image size
            self.buf_x, self.buf_y = x[-self.size:], y[-self.size:]
        else:
            self.buf_x = torch.cat([self.buf_x, x])[-self.size:]
            self.buf_y = torch.cat([self.buf_y, y])[-self.size:]

    def _partners(self):
        if self.buf_x is None or self.buf_x.shape[1:] != self.x.shape[1:]:
            return self._shuffled()
        groups = self._groups(self.y)
        if groups is None:
            idx = torch.randint(len(self.buf_y), (self.x.shape[0],), device=self.buf_y.device)
            return self.buf_x[idx], self.buf_y[idx]
        same = groups[:, None] == self._groups(self.buf_y)[None, :]  # (batch, buffer): allowed partners
        x1, y1 = self._shuffled()  # for images whose key the buffer lacks
        has = same.any(dim=1)
        if has.any():
            idx = torch.multinomial(same[has].float(), 1).squeeze(1)
            x1[has], y1[has] = self.buf_x[idx], self.buf_y[idx]
        return x1, y1

    def before_batch(self):
        # Partners come from earlier batches, so no image is pasted onto itself from the buffer.
        x1, y1 = self._partners()
        self._remember(self.x, self.y)
        self._mix(x1, y1)


CUTMIX = Choices("cutmix")  # the recipe field's names, registered on the callbacks each one adds


@CUTMIX.register(None)
def _no_cutmix(labels, rare, alpha, p):
    return []


@CUTMIX.register("box")
def _box(labels, rare, alpha, p):
    """fastai's CutMix: a random box from the partner (it often lands on background)."""
    return [CutMix(alpha, p)]


@CUTMIX.register("halves")
def _halves(labels, rare, alpha, p):
    """Face halves from a partner of the same mask status."""
    return [CutMixHalves(p, match="mask")]


@CUTMIX.register("rare")
def _rare(labels, rare, alpha, p):
    """Halves whose partners come from the rarest classes, of the same mask status when the buffer has one."""
    return [CutMixRare(rare, labels, mode="halves", alpha=alpha, p=p, match="mask")]


@CUTMIX.register("rare-box")
def _rare_box(labels, rare, alpha, p):
    return [CutMixRare(rare, labels, mode="box", alpha=alpha, p=p)]


def mixing_callbacks(cutmix=None, mixup=None, labels=None, rare=None, alpha=1.0, p=1.0):
    """The training callbacks for a recipe's `cutmix` and `mixup` fields (a list, maybe empty).

    cutmix: a name in CUTMIX (None: none); the rare ones need `rare` class ids or the training `labels`.
    mixup: None or a Beta alpha for fastai's MixUp. p: the share of batches mixed (the recipe's `mix_prob`), for
    every mixer. Not both cutmix and mixup: each MixHandler swaps the learner's loss, and
    the second then sees the first's wrapper (no `y_int`) and tries to interpolate integer targets."""
    cutmix = None if cutmix in (False, "none") else cutmix
    mix = CUTMIX[cutmix]  # an unknown name fails here, whatever mixup says
    if mixup in (None, False, 0):
        return mix(labels, rare, alpha, p)
    if cutmix is not None:
        raise FastmaskError("recipe fields cutmix and mixup: use one of them, not both")
    return [MixUp(float(mixup), p)]

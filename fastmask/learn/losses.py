"""Losses over the 18-way output and class-id targets, usable as a fastai `loss_func`.

Every loss here is fixed to the 18-class code and checks the output's width: the official baseline's
F1 and smoothing losses silently defaulted to 3 classes. Each has `y_int` (so fastai's MixUp/CutMix
mix losses, not targets), softmax `activation` and argmax `decodes` like CrossEntropyLossFlat, a
`reduction` that fastai's NoneReduce can switch, and pickles with an exported learner."""
import math

import torch.nn.functional as F
from torch import nn

from fastmask.errors import FastmaskError
from fastmask.labels import N_CLASSES
from fastmask.learn.heads import HEADS, task_logprobs


def _reduce(loss, reduction):
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


class Loss(nn.Module):
    """Base: `per_item(out, targ)` -> (bs,) losses, reduced by `reduction`."""
    y_int = True
    n_classes = N_CLASSES

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, out, targ):
        if out.shape[-1] != self.n_classes:
            raise ValueError(f"{type(self).__name__}: output has {out.shape[-1]} classes, the code has {self.n_classes}")
        return _reduce(self.per_item(out.reshape(-1, self.n_classes), targ.reshape(-1).long()), self.reduction)

    def activation(self, x):
        return F.softmax(x, dim=-1)

    def decodes(self, x):
        return x.argmax(dim=-1)


class CrossEntropy(Loss):
    """Cross-entropy; with `task_weights` (wm, wg, wa), the weighted sum of per-head cross-entropies.

    On FactorisedHead output, task_weights=(1, 1, 1) equals plain cross-entropy."""
    def __init__(self, task_weights=None, reduction="mean"):
        super().__init__(reduction)
        if task_weights is not None and len(task_weights) != 3:
            raise FastmaskError(f"task_weights: {task_weights!r} needs three weights (mask, gender, age)")
        self.task_weights = None if task_weights is None else tuple(float(w) for w in task_weights)

    def per_item(self, out, targ):
        if self.task_weights is None:
            return F.cross_entropy(out, targ, reduction="none")
        tasks = (targ // 6, (targ // 3) % 2, targ % 3)
        return sum(w * F.nll_loss(lp, t, reduction="none")
                   for w, lp, t in zip(self.task_weights, task_logprobs(out), tasks))

    def extra_repr(self):
        return "" if self.task_weights is None else f"task_weights={self.task_weights}"


class LabelSmoothing(Loss):
    """(1 - eps) * nll + eps * mean over the 18 classes of -log p."""
    def __init__(self, eps=0.1, reduction="mean"):
        super().__init__(reduction)
        self.eps = float(eps)

    def per_item(self, out, targ):
        logp = F.log_softmax(out, dim=-1)
        return (1 - self.eps) * F.nll_loss(logp, targ, reduction="none") - self.eps * logp.mean(-1)

    def extra_repr(self):
        return f"eps={self.eps}"


class Focal(Loss):
    """-(1 - p_t) ** gamma * log p_t: easy, confident items count less."""
    def __init__(self, gamma=2.0, reduction="mean"):
        super().__init__(reduction)
        self.gamma = float(gamma)

    def per_item(self, out, targ):
        logp_t = F.log_softmax(out, dim=-1).gather(1, targ[:, None])[:, 0]
        return -(1 - logp_t.exp()) ** self.gamma * logp_t

    def extra_repr(self):
        return f"gamma={self.gamma}"


class SoftF1(Loss):
    """1 - macro soft F1 over all 18 classes, from softmax probabilities over the batch.

    F1 belongs to the batch, not to an item: `per_item` gives every item the batch's value, so
    mean-reduced it is the batch loss and mixing (MixHandler's lerp) still works."""
    def __init__(self, eps=1e-7, reduction="mean"):
        super().__init__(reduction)
        self.eps = float(eps)

    def per_item(self, out, targ):
        p = F.softmax(out, dim=-1)
        hot = F.one_hot(targ, self.n_classes).to(p.dtype)
        tp, fp, fn = (p * hot).sum(0), (p * (1 - hot)).sum(0), ((1 - p) * hot).sum(0)
        f1 = 2 * tp / (2 * tp + fp + fn + self.eps)
        return (1 - f1.mean()).expand(len(targ))


class MixedLoss(Loss):
    """A weighted sum of losses, item by item."""
    def __init__(self, parts, weights, reduction="mean"):
        super().__init__(reduction)
        self.parts, self.weights = nn.ModuleList(parts), [float(w) for w in weights]

    def per_item(self, out, targ):
        return sum(w * p.per_item(out, targ) for w, p in zip(self.weights, self.parts))

    def extra_repr(self):
        return f"weights={self.weights}"


LOSSES = {"ce": CrossEntropy, "smooth": LabelSmoothing, "focal": Focal, "f1": SoftF1}
_PARAM = {"smooth": "eps", "focal": "gamma"}  # what "name:value" sets


def _part(name, task_weights=None):
    key, _, value = str(name).partition(":")
    if key not in LOSSES:
        raise FastmaskError(f"recipe field loss: unknown loss {name!r} (losses: {', '.join(LOSSES)}; "
                            f"smooth:EPS and focal:GAMMA take a value)")
    kw = {}
    if value:
        if key not in _PARAM:
            raise FastmaskError(f"recipe field loss: {key!r} takes no value (got {name!r})")
        kw[_PARAM[key]] = _number(name, value)
    if key == "ce" and task_weights is not None:
        kw["task_weights"] = task_weights
    return LOSSES[key](**kw)


def _number(name, value):
    try:
        v = float(value)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise FastmaskError(f"recipe field loss: {name!r}: {value!r} is not a finite number")
    return v


def mixed_loss(weights, task_weights=None):
    """{"ce": .6, "f1": .4} -> the weighted sum; names as in LOSSES, "smooth:0.05"/"focal:3" set a value."""
    if not weights:
        raise FastmaskError("recipe field loss: an empty dict names no loss")
    return MixedLoss([_part(n, task_weights) for n in weights], weights.values())


def build_loss(spec=None, heads="single", task_weights=None):
    """A loss_func from a recipe value: None ("ce"), a name, a {name: weight} dict, or a ready module.

    "name:value" sets a loss's value (smooth:EPS, focal:GAMMA) or, for one that takes none, weighs it
    (f1:0.4, as in {"f1": 0.4}). `task_weights` (mask, gender, age) weigh the per-head cross-entropies
    of a factorised output (a `heads` choice registered as factorised); they replace "ce"."""
    factorised = HEADS[heads].factorised  # an unknown heads name fails here
    if task_weights is not None:
        if not factorised:
            raise FastmaskError("recipe field task_weights: needs factorised heads "
                                f"({', '.join(n for n in HEADS.names() if HEADS[n].factorised)})")
        names = [spec] if isinstance(spec, str) or spec is None else list(spec) if isinstance(spec, dict) else []
        if not any(str(n or "ce").partition(":")[0] == "ce" for n in names):
            raise FastmaskError("recipe field task_weights: weighs the 'ce' loss, which the loss field lacks")
    if spec is None:
        spec = "ce"
    if isinstance(spec, str):
        key, _, value = spec.partition(":")
        if value and key in LOSSES and key not in _PARAM:
            return mixed_loss({key: _number(spec, value)}, task_weights)
        return _part(spec, task_weights)
    if isinstance(spec, dict):
        return mixed_loss(spec, task_weights)
    if isinstance(spec, nn.Module) or callable(spec):
        return spec
    raise FastmaskError(f"recipe field loss: {spec!r} is not a loss name, a dict of weights or a module")

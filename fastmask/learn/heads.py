"""Multi-head (mask / gender / age) as one 18-way output.

Three heads give 3 + 2 + 3 logits; `FactorisedHead` turns them into the 18 joint log-probabilities
of the class code, so metrics, get_preds, tta, CutMix and export see one ordinary output tensor,
and plain cross-entropy on it is the sum of the three per-head cross-entropies."""
import torch
import torch.nn.functional as F
from fastai.learner import Learner
from fastai.vision.learner import create_head, create_timm_model, vision_learner
from torch import nn

from fastmask.choices import Choices
from fastmask.labels import AGE_GROUPS, GENDERS, MASKS, N_CLASSES
from fastmask.learn.model import skeleton

SIZES = (len(MASKS), len(GENDERS), len(AGE_GROUPS))  # (3, 2, 3): the order of the class code


class FactorisedHead(nn.Module):
    """(bs, 8) task logits -> (bs, 18): out[:, m*6+g*3+a] = log p(m) + log p(g) + log p(a)."""
    def forward(self, x):
        m, g, a = (F.log_softmax(t, dim=-1) for t in x.split(SIZES, dim=-1))
        joint = m[:, :, None, None] + g[:, None, :, None] + a[:, None, None, :]
        return joint.flatten(1)


def task_logprobs(out):
    """(mask (bs,3), gender (bs,2), age (bs,3)) log-probabilities, marginalised from 18-way output.

    Exact for FactorisedHead output; for any other 18 logits it gives the marginals of their softmax."""
    z = out.reshape(-1, *SIZES)
    return tuple(F.log_softmax(z.logsumexp(dim=dims), dim=-1) for dims in ((2, 3), (1, 3), (1, 2)))


def multi_head(nf, pool=True, **create_head_kwargs):
    """A custom_head for vision_learner: fastai's head to 8 task logits, then FactorisedHead.

    `nf` is the body's feature count; `pool` whether the body's output is still a feature map
    (true for timm bodies that fastai runs with forward_features; `multi_head_for` reads both)."""
    return nn.Sequential(create_head(nf, sum(SIZES), pool=pool, **create_head_kwargs), FactorisedHead())


def multi_head_for(arch, timm_kwargs=None, **create_head_kwargs):
    """`multi_head` sized for the timm model `arch`, as fastai's create_timm_model would build its body
    with the same `timm_kwargs` (the input size, a channels-last body pooled by timm: see learn.model)."""
    m = skeleton(arch, **(timm_kwargs or {}))  # the feature count and config, not weights: no init cost
    # Mirrors fastai's TimmBody: models with a pool_size are run through forward_features (a map).
    return multi_head(m.num_features, pool=m.default_cfg.get("pool_size") is not None, **create_head_kwargs)


class SeparateModels(nn.Module):
    """Three whole models, one per task (mask, gender, age), combined by FactorisedHead.

    Trained in one run on the summed per-task cross-entropy (= 18-way CE on the factorised output),
    each task's loss reaches only its own model, so this is three separate models trained side by side,
    and one export still predicts the 18 classes."""
    def __init__(self, models):
        super().__init__()
        self.tasks = nn.ModuleList(models)
        self.combine = FactorisedHead()

    def forward(self, x):
        return self.combine(torch.cat([m(x) for m in self.tasks], dim=-1))


def separate_models(arch, pretrained=False, **timm_kwargs):
    """SeparateModels of three fastai timm models (body + fastai head) with 3, 2 and 3 outputs."""
    return SeparateModels([create_timm_model(arch, n, pretrained=pretrained, **timm_kwargs)[0] for n in SIZES])


def separate_splitter(model):
    """Body and head parameter groups across the three models, as fastai's default_split does for one."""
    bodies = [p for m in model.tasks for p in m[0].parameters()]
    heads = [p for m in model.tasks for p in m[1].parameters()]
    return [bodies, heads]


# The recipe field's names, each registered on the Learner it builds: (dls, arch, pretrained, **kw) ->
# Learner, kw being fastai's Learner arguments (loss_func, metrics, wd) and timm's (learn.model.timm_kwargs:
# img_size, pretrained_cfg_overlay).
# `factorised`: the output is FactorisedHead's joint log-probabilities (task_weights apply to it).
HEADS = Choices("heads")


@HEADS.register("single", factorised=False)
def single_learner(dls, arch, pretrained=False, **kw):
    """fastai's vision_learner: the timm body and one 18-way head."""
    # with weights, vision_learner adds the model's own Normalize (not always ImageNet's)
    learn = vision_learner(dls, arch, pretrained=pretrained, n_out=N_CLASSES, **kw)
    learn.unfreeze()  # every recipe trains the whole network, so runs compare like with like
    return learn


@HEADS.register("multi", factorised=True)
def multi_learner(dls, arch, pretrained=False, loss_func=None, metrics=None, wd=None, **timm_kwargs):
    """Mask, gender and age heads on one body, factorised into the 18 classes."""
    head = multi_head_for(arch, timm_kwargs)  # built for the body vision_learner builds from the same kwargs
    return single_learner(dls, arch, pretrained, custom_head=head, loss_func=loss_func, metrics=metrics, wd=wd,
                          **timm_kwargs)


@HEADS.register("separate", factorised=True)
def separate_learner(dls, arch, pretrained=False, loss_func=None, metrics=None, wd=None, **timm_kwargs):
    """Three whole models, one per task, trained side by side: one Learner, one export."""
    return Learner(dls, separate_models(arch, pretrained=pretrained, **timm_kwargs), loss_func=loss_func,
                   metrics=metrics, wd=wd, splitter=separate_splitter)

import itertools
import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from fastmask.errors import FastmaskError
from fastmask.labels import N_CLASSES, decode, encode
from fastmask.learn.heads import FactorisedHead, multi_head, multi_head_for, task_logprobs
from fastmask.learn.losses import CrossEntropy, Focal, LabelSmoothing, MixedLoss, SoftF1, build_loss, mixed_loss


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 18, generator=g) * 2, torch.randint(0, 18, (n,), generator=g)


def hand_logp(out):
    # log softmax written out: log(exp(z_c) / sum_k exp(z_k)), one row at a time
    rows = []
    for z in out.tolist():
        total = sum(math.exp(v) for v in z)
        rows.append([v - math.log(total) for v in z])
    return rows


def test_cross_entropy_matches_hand():
    out, y = batch()
    lp = hand_logp(out)
    want = sum(-lp[i][t] for i, t in enumerate(y.tolist())) / len(y)
    assert CrossEntropy()(out, y).item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing_spreads_over_18_classes(eps):
    out, y = batch()
    lp = hand_logp(out)
    want = sum((1 - eps) * -lp[i][t] + eps * sum(-v for v in lp[i]) / 18 for i, t in enumerate(y.tolist())) / len(y)
    loss = LabelSmoothing(eps)
    assert loss.n_classes == 18
    assert loss(out, y).item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 2.0, 3.5])
def test_focal_matches_hand(gamma):
    out, y = batch()
    lp = hand_logp(out)
    want = sum(-(1 - math.exp(lp[i][t])) ** gamma * lp[i][t] for i, t in enumerate(y.tolist())) / len(y)
    assert Focal(gamma)(out, y).item() == pytest.approx(want, rel=1e-5)


def test_soft_f1_is_macro_over_18_classes():
    out, y = batch(12)
    p = [[math.exp(v) for v in row] for row in hand_logp(out)]
    f1s = []
    for c in range(18):
        tp = sum(p[i][c] for i, t in enumerate(y.tolist()) if t == c)
        fp = sum(p[i][c] for i, t in enumerate(y.tolist()) if t != c)
        fn = sum(1 - p[i][c] for i, t in enumerate(y.tolist()) if t == c)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    loss = SoftF1()
    assert loss.n_classes == 18
    assert loss(out, y).item() == pytest.approx(1 - sum(f1s) / 18, rel=1e-5)
    # Perfect, confident predictions give ~0 only when every class is present.
    y_all = torch.arange(18)
    assert SoftF1()(F.one_hot(y_all, 18).float() * 50, y_all).item() < 1e-4


def test_losses_refuse_3_class_outputs():
    # The official baseline's F1 and smoothing losses silently ran on 3 classes.
    out, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    for loss in (CrossEntropy(), LabelSmoothing(), Focal(), SoftF1(), mixed_loss({"ce": 1, "f1": 1})):
        with pytest.raises(ValueError, match="18"):
            loss(out, y)


def test_mixed_loss_is_the_weighted_sum():
    out, y = batch()
    loss = mixed_loss({"ce": 0.6, "f1": 0.4})
    want = 0.6 * CrossEntropy()(out, y) + 0.4 * SoftF1()(out, y)
    assert loss(out, y).item() == pytest.approx(want.item(), rel=1e-5)
    loss = build_loss({"smooth:0.2": 1.0, "focal:3": 0.5})
    want = LabelSmoothing(0.2)(out, y) + 0.5 * Focal(3)(out, y)
    assert loss(out, y).item() == pytest.approx(want.item(), rel=1e-5)


def test_reduction_none_keeps_items():
    # fastai's MixHandler switches reduction to 'none' and lerps item losses.
    out, y = batch()
    for loss in (CrossEntropy(), LabelSmoothing(), Focal(), SoftF1(), mixed_loss({"ce": .5, "f1": .5})):
        mean = loss(out, y)
        loss.reduction = "none"
        items = loss(out, y)
        assert items.shape == (8,) and items.mean().item() == pytest.approx(mean.item(), rel=1e-5)


def test_fastai_api_and_pickle():
    out, _ = batch()
    for loss in (build_loss("ce"), build_loss("f1"), build_loss({"ce": .6, "f1": .4}),
                 build_loss("ce", heads="multi", task_weights=(1, .5, 2))):
        back = pickle.loads(pickle.dumps(loss))
        assert back.y_int
        assert torch.allclose(back.activation(out).sum(-1), torch.ones(8))
        assert torch.equal(back.decodes(out), out.argmax(-1))


def test_build_loss_specs():
    assert isinstance(build_loss(None), CrossEntropy)
    assert isinstance(build_loss("smooth"), LabelSmoothing) and build_loss("smooth:0.05").eps == 0.05
    assert isinstance(build_loss({"ce": .6, "f1": .4}), MixedLoss)
    mine = torch.nn.CrossEntropyLoss()
    assert build_loss(mine) is mine
    f1 = build_loss("f1:0.4")  # a loss that takes no value: the value is its weight, as {"f1": 0.4}
    assert isinstance(f1, MixedLoss) and f1.weights == [0.4] and isinstance(f1.parts[0], SoftF1)
    for bad in ("cross", {"ce": 1, "dice": 1}, "f1:x", "focal:x", "smooth:nan", "ce:inf", {}, 3):
        with pytest.raises(FastmaskError):
            build_loss(bad)
    with pytest.raises(FastmaskError, match=r"needs factorised heads \(multi, separate\)"):
        build_loss("ce", task_weights=(1, 1, 1))
    assert build_loss("ce", heads="separate", task_weights=(1, 1, 1)).task_weights == (1, 1, 1)
    with pytest.raises(FastmaskError):
        build_loss("f1", heads="multi", task_weights=(1, 1, 1))
    with pytest.raises(FastmaskError, match=r"heads: 'three' is not a valid choice \(single, multi, separate\)"):
        build_loss("ce", heads="three")


# ---- the factorised multi-head

def test_factorised_head_decodes_every_combination():
    # Each one-hot choice of (mask, gender, age) must land on labels.encode of that choice.
    head = FactorisedHead()
    for m, g, a in itertools.product(range(3), range(2), range(3)):
        x = torch.zeros(1, 8)
        x[0, m] = x[0, 3 + g] = x[0, 5 + a] = 10.0
        out = head(x)
        assert out.shape == (1, 18)
        assert out.argmax(-1).item() == encode(m, g, a)
        assert [t.argmax(-1).item() for t in task_logprobs(out)] == [m, g, a]
        assert torch.allclose(out.exp().sum(-1), torch.ones(1))


def test_ce_on_factorised_output_is_the_sum_of_head_ces():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 8, generator=g), torch.randint(0, 18, (8,), generator=g)
    out = FactorisedHead()(x)
    m, gd, a = (torch.as_tensor(t) for t in decode(y.numpy()))
    per_head = (F.cross_entropy(x[:, :3], m) + F.cross_entropy(x[:, 3:5], gd) + F.cross_entropy(x[:, 5:], a))
    assert CrossEntropy()(out, y).item() == pytest.approx(per_head.item(), rel=1e-5)
    assert CrossEntropy(task_weights=(1, 1, 1))(out, y).item() == pytest.approx(per_head.item(), rel=1e-5)
    weighted = 2 * F.cross_entropy(x[:, :3], m) + 0.5 * F.cross_entropy(x[:, 3:5], gd) + F.cross_entropy(x[:, 5:], a)
    assert build_loss("ce", "multi", (2, .5, 1))(out, y).item() == pytest.approx(weighted.item(), rel=1e-5)
    # the marginals recovered from the joint are the heads' own softmaxes
    for lp, logits in zip(task_logprobs(out), x.split((3, 2, 3), -1)):
        assert torch.allclose(lp, F.log_softmax(logits, -1), atol=1e-5)


def test_multi_head_on_a_timm_body():
    from fastai.vision.learner import create_timm_model
    model, _ = create_timm_model("test_resnet", N_CLASSES, pretrained=False, custom_head=multi_head_for("test_resnet"))
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 16, 12))
    assert out.shape == (2, 18) and torch.allclose(out.exp().sum(-1), torch.ones(2), atol=1e-5)
    flat = multi_head(16, pool=False)  # a body that already pools
    flat.eval()
    assert flat(torch.randn(2, 16)).shape == (2, 18)

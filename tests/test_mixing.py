import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.callback.mixup import CutMix, MixUp
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from torch import nn

from fastmask.errors import FastmaskError
from fastmask.learn.heads import FactorisedHead
from fastmask.learn.losses import build_loss
from fastmask.learn.mixing import CutMixHalves, CutMixRare, _paste_half, mixing_callbacks, rare_classes


class Spy(Callback):
    """Records each training batch before mixing (order -1) and the batch, output and loss after it."""
    order = -1

    def __init__(self):
        self.seen = []

    def before_batch(self):
        if self.training:
            self.seen.append(dict(x=self.x.clone(), y=self.y.clone()))

    def after_loss(self):
        if self.training:
            self.seen[-1].update(mixed=self.learn.xb[0].clone(), pred=self.pred.detach(),
                                 loss=self.learn.loss.detach(), mixer=self._mixer())

    def _mixer(self):
        cb = next(c for c in self.learn.cbs if hasattr(c, "yb1"))
        return dict(lam=cb.lam, y1=cb.yb1[0].clone())


def tiny_learner(ys, cbs, factorised=False, bs=8, seed=0, w=12):
    torch.manual_seed(seed)
    xs = torch.randn(len(ys), 3, 16, w)  # every pixel distinct: a pasted pixel never equals the own one
    train = list(zip(xs, torch.as_tensor(ys)))
    dls = DataLoaders(DataLoader(train, bs=bs), DataLoader(train[:bs], bs=bs))
    head = [nn.Linear(3 * 16 * w, 8), FactorisedHead()] if factorised else [nn.Linear(3 * 16 * w, 18)]
    loss = build_loss("ce", heads="multi") if factorised else CrossEntropyLossFlat()
    return Learner(dls, nn.Sequential(nn.Flatten(), *head), loss_func=loss, cbs=cbs)


def fit(learn, spy):
    learn.fit(1, lr=0.0)  # lr 0: the spied batches are exactly what the model saw
    return spy.seen


def partner_of(rec, i, cols, pool_x, pool_y):
    """Index in pool of the image whose `cols` were pasted into mixed image i (and whose label is y1[i])."""
    hits = [j for j in range(len(pool_x)) if torch.equal(rec["mixed"][i][..., cols], pool_x[j][..., cols])
            and pool_y[j] == rec["mixer"]["y1"][i]]
    assert hits, f"image {i}: pasted half matches no candidate partner"
    return hits[0]


@pytest.mark.parametrize("factorised", [False, True])
def test_halves_replace_exactly_one_half_and_mix_the_loss_at_half(factorised):
    spy = Spy()
    ys = torch.arange(64) % 18
    learn = tiny_learner(ys, [spy, CutMixHalves()], factorised)
    sides = set()
    for rec in fit(learn, spy):
        x, m = rec["x"], rec["mixed"]
        left_same = torch.equal(m[..., :6], x[..., :6])
        right_same = torch.equal(m[..., 6:], x[..., 6:])
        assert left_same != right_same or torch.equal(m, x)  # one half kept exactly
        side = "right" if left_same else "left"
        sides.add(side)
        cols = slice(6, 12) if side == "right" else slice(0, 6)
        for i in range(len(x)):
            partner_of(rec, i, cols, x, rec["y"])
        assert rec["mixer"]["lam"] == 0.5
        pred, y, y1 = rec["pred"], rec["y"], rec["mixer"]["y1"]
        want = 0.5 * (F.cross_entropy(pred, y) + F.cross_entropy(pred, y1))
        assert rec["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert sides == {"left", "right"}  # the side is drawn per batch
    assert learn.loss_func.__class__.__name__ in ("CrossEntropyLossFlat", "CrossEntropy")  # restored


def test_halves_odd_width_and_probability():
    x, x1 = torch.zeros(2, 3, 4, 5), torch.ones(2, 3, 4, 5)
    out, lam = _paste_half(x, x1, right=False)
    assert out[..., :2].eq(1).all() and out[..., 2:].eq(0).all() and lam == pytest.approx(3 / 5)
    out, lam = _paste_half(x, x1, right=True)
    assert out[..., 3:].eq(1).all() and out[..., :3].eq(0).all() and lam == pytest.approx(3 / 5)
    spy = Spy()
    for rec in fit(tiny_learner(torch.arange(16) % 18, [spy, CutMixHalves(p=0.0)]), spy):
        assert torch.equal(rec["mixed"], rec["x"]) and rec["mixer"]["lam"] == 1.0
        assert rec["loss"].item() == pytest.approx(F.cross_entropy(rec["pred"], rec["y"]).item(), rel=1e-5)


def test_rare_partners_come_from_rare_classes():
    rare = (8, 14)
    ys = torch.tensor([8, 14, 0, 1, 3, 4, 4, 3] + [0, 1, 3, 4, 9, 10, 2, 5] * 3)  # rare only in batch 0
    spy, cb = Spy(), CutMixRare(rare=rare, size=5)
    learn = tiny_learner(ys, [spy, cb], factorised=True)
    recs = fit(learn, spy)
    rare_x = recs[0]["x"][:2]
    for k, rec in enumerate(recs):
        x, m = rec["x"], rec["mixed"]
        cols = slice(0, 6) if torch.equal(m[..., 6:], x[..., 6:]) else slice(6, 12)
        if k == 0:  # empty buffer: partners from the batch itself
            for i in range(len(x)):
                partner_of(rec, i, cols, x, rec["y"])
            continue
        assert set(rec["mixer"]["y1"].tolist()) <= set(rare)
        for i in range(len(x)):
            partner_of(rec, i, cols, rare_x, recs[0]["y"][:2])
        want = 0.5 * (F.cross_entropy(rec["pred"], rec["y"]) + F.cross_entropy(rec["pred"], rec["mixer"]["y1"]))
        assert rec["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert cb.buf_x is None  # cleared after fit: an exported learner carries no images


def test_rare_buffer_rolls():
    cb = CutMixRare(rare=(1,), size=3)
    for b in range(4):
        cb._remember(torch.full((4, 3, 2, 2), float(b)), torch.tensor([0, 1, 0, 2]))
    assert cb.buf_y.tolist() == [1, 1, 1] and cb.buf_x[:, 0, 0, 0].tolist() == [1.0, 2.0, 3.0]  # newest kept


def test_rare_box_mode_runs():
    spy = Spy()
    ys = torch.tensor([8, 14, 0, 1, 3, 4, 4, 3] * 2)
    recs = fit(tiny_learner(ys, [spy, CutMixRare(rare=(8, 14), mode="box")], factorised=True), spy)
    rec = recs[1]
    assert set(rec["mixer"]["y1"].tolist()) <= {8, 14} and 0 <= rec["mixer"]["lam"] <= 1
    want = torch.lerp(F.cross_entropy(rec["pred"], rec["mixer"]["y1"]), F.cross_entropy(rec["pred"], rec["y"]),
                      rec["mixer"]["lam"])
    assert rec["loss"].item() == pytest.approx(want.item(), rel=1e-5)


def test_rare_classes_from_counts():
    real = [2745, 2050, 415, 3660, 4085, 545, 549, 410, 83, 732, 817, 109, 549, 410, 83, 732, 817, 109]
    labels = np.repeat(np.arange(18), real)
    assert rare_classes(labels) == (7, 8, 11, 13, 14, 17)
    assert rare_classes([0, 0, 1, 2, 2, 2], k=2) == (0, 1)  # absent classes are not "rare"
    with pytest.raises(FastmaskError):
        CutMixRare()


def test_mixing_callbacks_from_recipe_fields():
    assert mixing_callbacks() == [] and mixing_callbacks("none", 0) == []
    assert isinstance(mixing_callbacks("box")[0], CutMix)
    assert isinstance(mixing_callbacks("halves")[0], CutMixHalves)
    (rare,) = mixing_callbacks("rare", labels=np.repeat(np.arange(18), np.arange(1, 19)))
    assert isinstance(rare, CutMixRare) and rare.rare == (0, 1, 2, 3, 4, 5) and rare.mode == "halves"
    assert mixing_callbacks("rare-box", rare=(8,))[0].mode == "box"
    assert isinstance(mixing_callbacks(mixup=0.4)[0], MixUp)
    with pytest.raises(FastmaskError):
        mixing_callbacks("halves", 0.4)
    with pytest.raises(FastmaskError, match="halves"):
        mixing_callbacks("circle")


# --- lam is the kept share, partners are other images, halves are halves --------------------------------------

def pasted_columns(rec, i):
    """Columns of image i that no longer hold its own pixels (in any row or channel)."""
    return torch.nonzero((rec["mixed"][i] != rec["x"][i]).any(dim=0).any(dim=0)).flatten().tolist()


def test_halves_on_an_odd_width_paste_exactly_one_edge_half_and_keep_lam_at_the_kept_share():
    spy = Spy()
    recs = fit(tiny_learner(torch.arange(48) % 18, [spy, CutMixHalves()], w=13), spy)
    for rec in recs:
        for i in range(len(rec["x"])):
            cols = pasted_columns(rec, i)
            # 13 columns: the pasted half is 13 // 2 = 6 columns at the left (0..5) or right (7..12) edge
            assert cols in (list(range(0, 6)), list(range(7, 13))), cols
        assert rec["mixer"]["lam"] == pytest.approx(7 / 13)  # kept share: 7 of 13 columns, not 6/13 or 1/2
        pred, y, y1 = rec["pred"], rec["y"], rec["mixer"]["y1"]
        want = 7 / 13 * F.cross_entropy(pred, y) + 6 / 13 * F.cross_entropy(pred, y1)
        assert rec["loss"].item() == pytest.approx(want.item(), rel=1e-5)


def test_box_lam_is_the_kept_area():
    from types import SimpleNamespace

    from torch.distributions.beta import Beta

    from fastmask.learn.mixing import _paste_box
    torch.manual_seed(0)
    x, x1 = torch.zeros(2, 3, 16, 12), torch.ones(2, 3, 16, 12)
    cb = SimpleNamespace(distrib=Beta(torch.tensor(1.0), torch.tensor(1.0)), x=x)
    shares = []
    for _ in range(40):
        out, lam = _paste_box(cb, x, x1)
        pasted = out[0, 0].mean().item()  # share of the 16 x 12 pixels that now hold the partner's ones
        assert (out[:, :, :, :] == out[0]).all()  # one box for the batch
        assert lam == pytest.approx(1 - pasted, abs=1e-6)  # the kept area, not the pasted one
        shares.append(pasted)
    assert min(shares) < 0.3 and max(shares) > 0.55  # boxes of many sizes, on both sides of a half


def test_rare_box_lam_matches_the_pixels_kept_in_training():
    spy = Spy()
    ys = torch.tensor([8, 14, 0, 1, 3, 4, 4, 3] * 4)
    recs = fit(tiny_learner(ys, [spy, CutMixRare(rare=(8, 14), mode="box")], factorised=True), spy)
    sizes = set()
    for rec in recs:
        x, m = rec["x"], rec["mixed"]
        changed = (m != x).any(dim=1)  # (bs, h, w): pixels holding another image
        box = changed.any(dim=0)  # the batch's box (a partner equal to the image itself changes nothing)
        kept = 1 - box.float().mean().item()
        assert rec["mixer"]["lam"] == pytest.approx(kept, abs=1e-6)
        sizes.add(round(kept, 3))
    assert len(sizes) > 1 and sizes != {1.0}


def test_rare_partners_are_never_the_image_itself():
    # Every image is rare and the buffer holds exactly one batch: partners must come from earlier batches
    # (or, in the first batch, from another image of the batch), never from the image being mixed.
    spy = Spy()
    ys = torch.tensor([8, 14] * 32)
    recs = fit(tiny_learner(ys, [spy, CutMixRare(rare=(8, 14), size=8)], factorised=True), spy)
    assert len(recs) == 8
    for k, rec in enumerate(recs):
        for i in range(len(rec["x"])):
            assert len(pasted_columns(rec, i)) == 6, f"batch {k} image {i} was mixed with itself"


def test_halves_partners_are_other_images():
    # bs 4: a plain randperm would leave an image unmixed in 1 - 9/24 = 62% of batches
    spy = Spy()
    recs = fit(tiny_learner(torch.arange(64) % 18, [spy, CutMixHalves()], bs=4), spy)
    for rec in recs:
        for i in range(len(rec["x"])):
            assert len(pasted_columns(rec, i)) == 6  # a half of 12 columns came from another image


# --- hand-computed halves, the partner's same half, mix_prob for every mixer, MixUp's alpha ---------------------

def test_halves_hand_computed_lam_labels_and_loss():
    # Two images, so the cycle pairs each with the other: image 0 (label 3, zeros) and image 1 (label 10, ones).
    # Width 5: the pasted half is 5 // 2 = 2 columns at one edge, the kept share lam = 3/5.
    torch.manual_seed(0)
    xs = torch.stack([torch.zeros(3, 4, 5), torch.ones(3, 4, 5)])
    spy = Spy()
    train = list(zip(xs, torch.tensor([3, 10])))
    dls = DataLoaders(DataLoader(train, bs=2), DataLoader(train, bs=2))
    learn = Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(60, 18)), loss_func=CrossEntropyLossFlat(),
                    cbs=[spy, CutMixHalves()])
    (rec,) = fit(learn, spy)
    m = rec["mixed"][:, 0, 0]  # one row of one channel: (2 images, 5 columns)
    assert m.tolist() in ([[1, 1, 0, 0, 0], [0, 0, 1, 1, 1]], [[0, 0, 0, 1, 1], [1, 1, 1, 0, 0]])
    assert rec["mixer"]["lam"] == pytest.approx(0.6) and rec["mixer"]["y1"].tolist() == [10, 3]
    logp = rec["pred"].log_softmax(-1)
    want = -(0.6 * logp[0, 3] + 0.4 * logp[0, 10] + 0.6 * logp[1, 10] + 0.4 * logp[1, 3]) / 2
    assert rec["loss"].item() == pytest.approx(want.item(), rel=1e-5)


def test_the_pasted_half_is_the_partners_same_half():
    # Pixel value = column index + 1 in the partner: its left half is 1, 2 and its right half 4, 5.
    x, x1 = torch.zeros(2, 3, 4, 5), torch.arange(1.0, 6.0).expand(2, 3, 4, 5)
    out, _ = _paste_half(x, x1, right=False)
    assert out[0, 0, 0].tolist() == [1, 2, 0, 0, 0]
    out, _ = _paste_half(x, x1, right=True)
    assert out[0, 0, 0].tolist() == [0, 0, 0, 4, 5]  # not the partner's left half (1, 2), nor mirrored (2, 1)
    spy = Spy()  # and in training: whatever side is drawn, the partner's columns land where they were
    for rec in fit(tiny_learner(torch.arange(32) % 18, [spy, CutMixHalves()], w=13), spy):
        for i in range(len(rec["x"])):
            cols = pasted_columns(rec, i)
            partner_of(rec, i, cols, rec["x"], rec["y"])


MIXERS = ["halves", "rare", "rare-box", "box", "mixup"]


def mixer(name, p, alpha=1.0):
    if name == "mixup":
        return mixing_callbacks(mixup=alpha, p=p)[0]
    return mixing_callbacks(name, rare=(0, 1, 2, 3, 4, 5, 6, 7, 8), alpha=alpha, p=p)[0]


def was_mixed(rec):
    # Pixels changed, or a kept share below 1: fastai's box CutMix and MixUp pair by plain randperm, so a
    # mixed batch of 4 keeps its pixels when the permutation is the identity (1 in 24), but not its lam.
    return not torch.equal(rec["mixed"], rec["x"]) or bool((torch.as_tensor(rec["mixer"]["lam"]) < 1).any())


@pytest.mark.parametrize("name", MIXERS)
def test_mix_prob_mixes_about_that_share_of_batches_and_leaves_the_rest_plain(name):
    spy, cb = Spy(), mixer(name, p=0.3)
    recs = fit(tiny_learner(torch.arange(400) % 18, [spy, cb], bs=4), spy)  # 100 batches, seeded
    mixed = [was_mixed(r) for r in recs]
    assert 15 <= sum(mixed) <= 45, sum(mixed)  # binomial(100, 0.3): mean 30, sd 4.6; 0.7 or 1 is far outside
    for r, m in zip(recs, mixed):
        if not m:  # an unmixed batch trains on its own labels alone
            assert torch.equal(r["mixed"], r["x"]) and r["mixer"]["lam"] == 1
            assert r["loss"].item() == pytest.approx(F.cross_entropy(r["pred"], r["y"]).item(), rel=1e-5)


@pytest.mark.parametrize("name", MIXERS)
def test_mix_prob_one_mixes_every_batch(name):
    spy = Spy()
    recs = fit(tiny_learner(torch.arange(80) % 18, [spy, mixer(name, p=1.0)], bs=4), spy)
    assert sum(was_mixed(r) for r in recs) >= len(recs) - 2  # a box under 2 pixels a side comes out empty


@pytest.mark.parametrize("name", MIXERS)
def test_the_recipes_mix_prob_and_alpha_reach_the_training_callback(name):
    from types import SimpleNamespace

    from fastmask.learn.callbacks import training_callbacks
    from fastmask.recipe import Recipe
    r = Recipe(mixup=0.7, mix_prob=0.25) if name == "mixup" else Recipe(cutmix=name, mix_prob=0.25)
    learn = SimpleNamespace(dls=SimpleNamespace(train=SimpleNamespace(items={"y": np.arange(36) % 18}),
                                                device=torch.device("cpu")))
    (cb,) = [c for c in training_callbacks(r, learn, notify=lambda *a: None) if hasattr(c, "distrib")]
    assert cb.p == 0.25
    if name == "mixup":  # issue 21: Beta(alpha, alpha) with the recipe's alpha, not fastai's default 0.4
        assert isinstance(cb, MixUp)
        assert cb.distrib.concentration1.item() == pytest.approx(0.7)
        assert cb.distrib.concentration0.item() == pytest.approx(0.7)


@pytest.mark.parametrize("alpha", [0.2, 1.5])
def test_mixup_beta_is_the_given_alpha(alpha):
    cb = mixing_callbacks(mixup=alpha)[0]
    assert (cb.distrib.concentration1.item(), cb.distrib.concentration0.item()) == pytest.approx((alpha, alpha))


# --- partners of the same mask status (the recipe's "halves" and "rare") -------------------------------------
# A half with a mask beside a half without one looks like an incorrectly worn mask, which neither label names:
# unmatched, the incorrect-mask class was learnt as half wear, half no mask (its F1 fell from 0.91 to 0.03).

def test_recipe_halves_pairs_images_of_the_same_mask_status():
    (cb,) = mixing_callbacks("halves")
    spy = Spy()
    ys = torch.tensor([0, 4, 7, 9, 12, 17, 3, 14, 5, 16, 1, 2, 8, 6, 13, 11])  # per batch of 8: >= 2 of each mask
    for rec in fit(tiny_learner(ys.repeat(4), [spy, cb], w=13), spy):
        y, y1 = rec["y"], rec["mixer"]["y1"]
        assert torch.equal(y1 // 6, y // 6), (y.tolist(), y1.tolist())
        for i in range(len(y)):  # still another image: a half of 13 columns from a same-mask partner
            assert len(pasted_columns(rec, i)) == 6
            partner_of(rec, i, pasted_columns(rec, i), rec["x"], y)


def test_rare_matched_partners_come_from_the_buffer_of_the_same_mask_or_else_the_batch():
    rare = (2, 8)  # a wear and an incorrect class: the buffer holds no unmasked image
    ys = torch.tensor([2, 8, 0, 6, 12, 1, 7, 13] + [0, 6, 12, 1, 7, 13, 3, 15] * 3)
    spy, cb = Spy(), mixing_callbacks("rare", rare=rare)[0]
    assert cb.match == "mask" and mixing_callbacks("rare-box", rare=rare)[0].match is None
    recs = fit(tiny_learner(ys, [spy, cb], factorised=True), spy)
    for rec in recs[1:]:
        y, y1 = rec["y"].tolist(), rec["mixer"]["y1"].tolist()
        want = {0: 2, 1: 8}  # wear -> the rare wear class, incorrect -> the rare incorrect one
        for i, (own, partner) in enumerate(zip(y, y1)):
            if own // 6 in want:
                assert partner == want[own // 6]
            else:  # no mask: another unmasked image of the batch
                assert partner // 6 == 2
                partner_of(rec, i, pasted_columns(rec, i), rec["x"], rec["y"])

"""The REPL learner is the run's learner: every recipe field changes what `load_recipe(...).learner()`
builds, the recipe's training callbacks sit on `learn.cbs`, keep-best and early stopping work on them,
and an export predicts the same for a path and for an image."""
import dataclasses

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback, CancelFitException

from fastmask.data.dls import build_dls
from fastmask.data.load import load_data
from fastmask.learn.build import build_learner, fit
from fastmask.learn.callbacks import recipe_cbs
from fastmask.learn.guards import NanGuard
from fastmask.learn.tracker import PeakAwareEarlyStopping
from fastmask.repl import Recipe, load_recipe, parse_sets

from conftest import TINY

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent
TINY_SETS = parse_sets(TINY[1::2])


@pytest.fixture(scope="module")
def data(twin):
    return load_data(twin, progress=False)


@pytest.fixture(scope="module")
def base():
    return load_recipe(REPO / "recipes" / "person_split.py", {**TINY_SETS, "patience": None})


def learner(r, data, tmp_path=None):
    learn = build_learner(r, build_dls(r, data.train), notify=lambda m: None)
    if tmp_path is not None:
        learn.path = tmp_path
    return learn


def kinds(learn):
    return {type(cb).__name__ for cb in learn.cbs}


class FirstBatch(Callback):
    "Keeps the first training batch as the model saw it (after the mixing callbacks), then stops"
    order = 90

    def before_batch(self):
        if self.training:
            self.xb_seen, self.yb_seen = self.xb[0].clone(), self.yb[0].clone()
            raise CancelFitException


def first_batch(learn):
    spy = FirstBatch()
    learn.fit(1, 0.0, cbs=spy)
    return spy.xb_seen


# --- one learner ----------------------------------------------------------------------------------

def test_recipe_learner_carries_the_hypothesis_callbacks(data):
    learn = load_recipe(REPO / "recipes" / "cutmix_halves.py", TINY_SETS).learner(data=data.root)
    assert {"CutMixHalves", "KeepBest", "NanGuard", "StopOnInterrupt"} <= kinds(learn)
    assert "PeakAwareEarlyStopping" in kinds(learn)  # person_split's patience, inherited
    assert learn.lr == pytest.approx(5e-3) or learn.lr == pytest.approx(float(Recipe().lr))
    bf16 = load_recipe(REPO / "recipes" / "bf16.py", TINY_SETS).learner(data=data.root)
    assert "CPUAutocast" in kinds(bf16)


def test_repl_fit_one_cycle_mixes_batches_like_the_run(data, base, tmp_path):
    """learn.fit_one_cycle in a REPL on a cutmix learner trains on mixed batches."""
    plain = first_batch(learner(base, data, tmp_path))
    mixed = first_batch(learner(base.but(cutmix="halves"), data, tmp_path))
    assert plain.shape == mixed.shape
    w = plain.shape[-1]
    left, right = (plain[..., : w // 2] != mixed[..., : w // 2]), (plain[..., w // 2:] != mixed[..., w // 2:])
    assert left.any() or right.any()  # a half of some image came from a partner
    assert not (left.any() and right.any() and (plain != mixed).all())


def test_export_leaves_training_callbacks_behind(data, base, tmp_path):
    from fastai.learner import load_learner
    learn = learner(base.but(cutmix="halves", patience=2), data, tmp_path)
    assert recipe_cbs(learn)
    learn.remove_cbs(recipe_cbs(learn))
    learn.export(tmp_path / "m.pkl")
    back = load_learner(tmp_path / "m.pkl")
    assert not {"CutMixHalves", "KeepBest", "NanGuard", "StopOnInterrupt", "PeakAwareEarlyStopping"} & kinds(back)


def test_export_predicts_the_same_for_a_path_and_an_image(data, base, tmp_path):
    from fastai.learner import load_learner
    from fastai.vision.core import PILImage
    learn = learner(base, data, tmp_path)
    learn.remove_cbs(recipe_cbs(learn))
    learn.export(tmp_path / "m.pkl")
    back = load_learner(tmp_path / "m.pkl")
    path = data.train["path"].iloc[0]
    _, _, by_path = back.predict(path)
    _, _, by_image = back.predict(PILImage.create(path))  # 384x512 photo: must be resized like the path
    torch.testing.assert_close(by_path, by_image, atol=1e-5, rtol=0)


# --- keep-best and early stopping -----------------------------------------------------------------

class Planted(Callback):
    """Overwrites each epoch's recorded macro F1 with planted values (after the Recorder, before the
    trackers read it) and keeps a copy of the weights at every epoch."""
    order = 55

    def __init__(self, scores):
        self.scores, self.weights = scores, []

    def after_epoch(self):
        idx = list(self.recorder.metric_names[1:]).index("macro_f1")
        self.recorder.values[-1][idx] = self.scores[self.epoch]
        self.weights.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})


def test_keep_best_reloads_an_epoch_that_is_not_the_last(data, base, tmp_path):
    r = base.but(epochs=3, lr=1e-2)
    learn = learner(r, data, tmp_path)
    spy = Planted([0.2, 0.9, 0.3])  # best at epoch 1 of 0..2
    fit(r, learn, cbs=[spy])
    now = learn.model.state_dict()
    key = next(k for k, v in now.items() if v.dtype.is_floating_point and v.dim() > 1)
    assert torch.equal(now[key], spy.weights[1][key])
    assert not torch.equal(spy.weights[1][key], spy.weights[2][key])  # the epochs did differ


@pytest.mark.parametrize("epochs,expected", [(6, 2), (8, 3)])
def test_early_stopping_fires_but_never_before_the_lr_peak(data, base, tmp_path, epochs, expected):
    """patience 1, best at epoch 0: plain early stopping would stop after epoch 1. With one-cycle's peak
    at 25 % of training, an epoch ending at or before the peak does not count: 6 epochs -> epoch 1 ends
    at 2/6 > 0.25, counts, stop after 2 epochs; 8 epochs -> epoch 1 ends at 2/8, not counted, stop after 3."""
    r = base.but(epochs=epochs, patience=1, lr=1e-2)
    learn = learner(r, data, tmp_path)
    assert "PeakAwareEarlyStopping" in kinds(learn)
    fit(r, learn, cbs=[Planted([0.9] + [0.1] * (epochs - 1))])
    assert len(learn.recorder.values) == expected


def test_paired_difference_by_hand():
    """Two people of two photos: A right on all four (macro F1 1), B wrong on one photo of each (0.5 per class,
    0.5). Bootstrap draws: both people a (p = 1/4) -> B's F1 on a alone is (2/3 + 0) / 2 = 1/3, difference 2/3;
    both b likewise 2/3; one each (p = 1/2) -> 1/2. So the difference's sd is 1/12 (0.0833)."""
    from fastmask.learn.metrics import paired_difference
    y = np.array([0, 0, 1, 1])
    lead, se = paired_difference(y, y, np.array([0, 1, 1, 0]), ["a", "a", "b", "b"], draws=4000)
    assert lead == pytest.approx(0.5)
    assert se == pytest.approx(1 / 12, abs=0.005)
    assert paired_difference(y, y, y, ["a", "a", "b", "b"]) == (0.0, 0.0)


@pytest.mark.parametrize("se,kept", [(0.05, 2), (0.02, 1)])
def test_keep_best_keeps_the_latest_epoch_not_credibly_worse(data, base, tmp_path, monkeypatch, se, kept):
    """Best 0.9 at epoch 1, 0.85 at epoch 2: a lead of 0.05 is within 2 standard errors when the paired
    difference's se is 0.05 (epoch 2 is kept: the most trained of the epochs noise cannot tell apart), not
    when it is 0.02 (epoch 1 is)."""
    from fastmask.learn import tracker
    monkeypatch.setattr(tracker, "paired_difference", lambda *a, **k: (None, se))
    r = base.but(epochs=3, lr=1e-2)
    learn = learner(r, data, tmp_path)
    spy = Planted([0.2, 0.9, 0.85])
    fit(r, learn, cbs=[spy])
    keep = next(cb for cb in learn.cbs if isinstance(cb, tracker.KeepBest))
    assert keep.best_epoch == kept
    now = learn.model.state_dict()
    key = next(k for k, v in now.items() if v.dtype.is_floating_point and v.dim() > 1)
    assert torch.equal(now[key], spy.weights[kept][key])


@pytest.mark.parametrize("se,expected", [(0.05, 8), (0.01, 4)])
def test_early_stopping_counts_only_credibly_worse_epochs(data, base, tmp_path, monkeypatch, se, expected):
    """patience 2, best 0.9 at epoch 0, then 0.82 for ever: with the difference's se at 0.05 a lead of 0.08
    is noise, so all 8 epochs train; at 0.01 it is credibly worse, and after the lr peak (epoch 1 ends at
    2/8 = the peak, not counted) epochs 2 and 3 count: stop after 4."""
    from fastmask.learn import tracker
    monkeypatch.setattr(tracker, "paired_difference", lambda *a, **k: (None, se))
    r = base.but(epochs=8, patience=2, lr=1e-2)
    learn = learner(r, data, tmp_path)
    fit(r, learn, cbs=[Planted([0.9] + [0.82] * 7)])
    assert len(learn.recorder.values) == expected


def test_nan_guard_stays_quiet_inside_lr_find(data, base):
    learn = learner(base, data)
    guard = next(cb for cb in learn.cbs if isinstance(cb, NanGuard))
    learn.lr_finder = object()  # what fastai's LRFinder sets during lr_find
    guard.before_fit()
    assert not guard.active
    del learn.lr_finder
    guard.before_fit()
    assert guard.active


def test_lr_find_field_sets_the_learners_lr(data, base, tmp_path):
    learn = learner(base.but(lr="find", cutmix="halves", patience=2), data, tmp_path)
    assert isinstance(learn.lr, float) and learn.lr > 0
    assert not any(cb for cb in learn.cbs if type(cb).__name__ == "LRFinder")
    curve = learn.lr_curve  # kept for lr_find.png before fit resets the recorder
    assert len(curve["lrs"]) == len(curve["losses"]) > 0 and (curve["suggestion"] or 1e-3) == learn.lr


# --- every field changes what the REPL learner builds ----------------------------------------------

def _arch(r, data):
    a = learner(r, data).model
    b = learner(r.but(arch="test_efficientnet"), data).model
    return type(a[0].model).__name__ != type(b[0].model).__name__


def _size(r, data):
    return tuple(r.but(size=(40, 32)).dls(data=data.root).one_batch()[0].shape[-2:]) == (40, 32)


def _split(r, data):
    dls = r.but(split="random").dls(data=data.root)
    return bool(set(dls.train.items.person) & set(dls.valid.items.person))


def _valid_pct(r, data):
    a = r.but(valid_pct=0.5).dls(data=data.root).valid.items.person.nunique()
    b = r.dls(data=data.root).valid.items.person.nunique()
    return a > b


def _split_seed(r, data):
    a, b = (set(r.but(split_seed=s).dls(data=data.root).valid.items.path) for s in (0, 1))
    return a != b


def _seed(r, data):
    a, b = (dict(learner(r.but(seed=s), data).model.state_dict()) for s in (0, 1))
    return any(not torch.equal(a[k], b[k]) for k in a if a[k].dtype.is_floating_point)


def _lr(r, data):
    return learner(r.but(lr=0.0123), data).lr == pytest.approx(0.0123)


def _bs(r, data):
    return r.but(bs=8).dls(data=data.root).one_batch()[0].shape[0] == 8


def _wd(r, data):
    return learner(r.but(wd=0.07), data).wd == pytest.approx(0.07)


def _patience(r, data):
    cb = [c for c in learner(r.but(patience=3), data).cbs if isinstance(c, PeakAwareEarlyStopping)]
    return len(cb) == 1 and cb[0].patience == 3 and not any(
        isinstance(c, PeakAwareEarlyStopping) for c in learner(r, data).cbs)


def _num_workers(r, data):
    return r.but(num_workers=1).dls(data=data.root).train.num_workers == 1


def _cache(r, data):
    from fastmask.data.cache import Prepare

    def array(rr):
        dls = rr.dls(data=data.root)
        return next(t for t in dls.train.dataset.tls[0].tfms.fs if isinstance(t, Prepare)).array
    return array(r) is not None and array(r.but(cache=False)) is None


def _sampler(r, data):
    from fastai.callback.data import WeightedDL
    return isinstance(r.but(sampler="weighted").dls(data=data.root).train, WeightedDL) and \
        (r.but(sampler="oversample").dls(data=data.root).train.items["copy"] > 0).any()


def _augment(r, data):
    plain, strong = r.dls(data=data.root), r.but(augment="strong").dls(data=data.root)

    def item(dl):  # item 0 through the item transforms, as the loader's iteration sets them up
        dl.after_item.split_idx = dl.dataset.split_idx
        return np.asarray(dl.do_item(0)[0])
    changed = any(not np.array_equal(item(plain.train), item(strong.train)) for _ in range(4))
    return changed and np.array_equal(item(plain.valid), item(strong.valid))  # training only


def _crop(r, data):
    from fastmask.data.cache import prepare
    dls = r.but(crop=0.5).dls(data=data.root)
    item = dls.valid.items.iloc[0]
    got = np.asarray(dls.valid.dataset[0][0])
    return np.array_equal(got, prepare(item.path, r.size, 0.5)) and not np.array_equal(got, prepare(item.path, r.size))


def _cutmix(r, data):
    return "CutMixHalves" in kinds(learner(r.but(cutmix="halves"), data)) and \
        "CutMix" in kinds(learner(r.but(cutmix="box"), data))


def _mixup(r, data):
    return "MixUp" in kinds(learner(r.but(mixup=0.4), data))


def _heads(r, data):
    from fastmask.learn.heads import SeparateModels
    single, multi = learner(r, data).model, learner(r.but(heads="multi"), data).model
    sep = learner(r.but(heads="separate"), data).model
    out = lambda m: m.eval()(torch.randn(2, 3, *r.size))  # noqa: E731
    # the factorised head outputs log-probabilities: each row's exp sums to 1, a plain head's logits do not
    return isinstance(sep, SeparateModels) and torch.allclose(out(multi).exp().sum(1), torch.ones(2), atol=1e-4) \
        and not torch.allclose(out(single).exp().sum(1), torch.ones(2), atol=1e-2)


def _loss(r, data):
    y = torch.tensor([0, 5])
    p = torch.randn(2, 18)
    ce, focal = learner(r, data).loss_func, learner(r.but(loss="focal"), data).loss_func
    return not torch.allclose(ce(p, y), focal(p, y))


def _task_weights(r, data):
    y, p = torch.tensor([0, 5, 17]), torch.randn(3, 18).log_softmax(1)
    a = learner(r.but(heads="multi"), data).loss_func
    b = learner(r.but(heads="multi", task_weights=(1.0, 0.0, 0.0)), data).loss_func
    return not torch.allclose(a(p, y), b(p, y))


def _age_threshold(r, data):
    tr = r.but(age_threshold=58).dls(data=data.root).train.items
    moved = tr[(tr.age >= 58) & (tr.age < 60)]
    return len(moved) > 0 and (moved["y"] != moved["label"]).all()


def _precision(r, data):
    return "CPUAutocast" in kinds(learner(r.but(precision="bf16"), data)) and \
        "CPUAutocast" not in kinds(learner(r, data))


EFFECTS = {"arch": _arch, "size": _size, "split": _split, "valid_pct": _valid_pct, "split_seed": _split_seed,
           "seed": _seed, "lr": _lr, "bs": _bs, "wd": _wd, "patience": _patience, "num_workers": _num_workers,
           "cache": _cache, "sampler": _sampler, "augment": _augment, "crop": _crop, "cutmix": _cutmix,
           "mixup": _mixup, "heads": _heads, "loss": _loss, "task_weights": _task_weights,
           "age_threshold": _age_threshold, "precision": _precision}
# Fields whose effect needs training or a file, tested where that happens.
ELSEWHERE = {"pretrained": "test_faults.py::test_local_weights_file_is_used",
             "epochs": "test_early_stopping_fires_but_never_before_the_lr_peak (recorder rows)",
             "replicates": "test_replicates.py", "mix_prob": "test_mixing.py (share of batches mixed)",
             # how a hypothesis is judged: the verdict and the --decide loop, never the learner
             "judged_on": "test_verdict.py", "min_effect": "test_verdict.py", "decide": "test_judgement.py",
             # needs a relabel.csv in the data folder
             "relabel": "test_relabel.py::test_training_learns_the_corrections_only_with_relabel_true"}


def test_every_field_has_an_observable_effect_check():
    names = {f.name for f in dataclasses.fields(Recipe) if f.compare}
    assert names == set(EFFECTS) | set(ELSEWHERE)


@pytest.mark.parametrize("name", sorted(EFFECTS))
def test_field_changes_the_repl_learner(name, base, data):
    assert EFFECTS[name](base, data), f"recipe field {name} made no observable difference"


def test_lr_find_in_a_repl_leaves_no_models_folder(base, data, tmp_path):
    learn = learner(base, data, tmp_path / "project")
    (tmp_path / "project").mkdir()
    learn.lr_find(show_plot=False, num_it=5)
    assert list((tmp_path / "project").iterdir()) == []  # fastai's finder made models/ and left it empty
    mine = tmp_path / "project" / "models" / "stage1.pth"  # a folder the user keeps is kept
    mine.parent.mkdir()
    mine.write_bytes(b"x")
    learn.lr_find(show_plot=False, num_it=5)
    assert [p.name for p in mine.parent.iterdir()] == ["stage1.pth"]


def test_fastais_own_tools_speak_class_names(base, data):
    """most_confused, plot_top_losses and predict read the vocabulary: names in code order, not 0..17."""
    from fastai.interpret import ClassificationInterpretation
    learn = learner(base, data)
    vocab = list(learn.dls.vocab)
    # the code is mask * 6 + gender * 3 + age group (dataset-facts.md)
    assert (vocab[0], vocab[7], vocab[12], vocab[17]) == (
        "male <30 mask", "male 30-59 incorrect-mask", "male <30 no-mask", "female >=60 no-mask")
    assert len(set(vocab)) == 18
    confused = ClassificationInterpretation.from_learner(learn).most_confused(min_val=1)
    assert confused and all(a in vocab and b in vocab and isinstance(n, (int, np.integer)) for a, b, n in confused)
    name, idx, probs = learn.predict(data.train["path"].iloc[0])
    assert name == vocab[int(idx)] and len(probs) == 18

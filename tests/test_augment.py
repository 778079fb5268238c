import pickle

import albumentations as A
import numpy as np
import pytest
from fastai.vision.core import PILImage

from fastmask.data.augment import PRESETS, Albumentations, augmentation, preset
from fastmask.errors import FastmaskError


def photo(h=32, w=24, seed=0):
    return PILImage.create(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", [n for n in PRESETS if PRESETS[n] is not None])
def test_presets_build_with_strict_arguments(name):
    # strict=True turns albumentations' "unknown argument" warning (silently ignored) into an error.
    comp = preset(name, (16, 12), seed=0, strict=True)
    out = comp(image=np.zeros((16, 12, 3), np.uint8))["image"]
    assert out.shape == (16, 12, 3)
    assert preset("none", (16, 12)) is None


def test_training_draws_differ_and_validation_is_untouched():
    img = photo()
    tfm = Albumentations(preset("strong", (32, 24)), seed=0)
    a, b = (np.asarray(tfm(img, split_idx=0)) for _ in range(2))
    assert isinstance(tfm(img, split_idx=0), PILImage)
    assert a.shape == b.shape == (32, 24, 3) and not np.array_equal(a, b)
    assert tfm(img, split_idx=1) is img


def test_seeded_draws_repeat():
    img = photo()
    t1, t2, t3 = (Albumentations(preset("strong", (32, 24)), seed=s) for s in (7, 7, 8))
    seq1, seq2, seq3 = ([np.asarray(t(img, split_idx=0)) for _ in range(4)] for t in (t1, t2, t3))
    assert all(np.array_equal(x, y) for x, y in zip(seq1, seq2))
    assert not all(np.array_equal(x, y) for x, y in zip(seq1, seq3))


def test_seeded_transforms_draw_independently():
    # albumentations 2.0.8's Compose(seed=) seeds each child alike: these two flips then always coincide.
    img = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    tfm = Albumentations(A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)], seed=0), seed=0)
    outs = [np.asarray(tfm(PILImage.create(img), split_idx=0)) for _ in range(40)]
    h = [np.array_equal(o[:, ::-1], img) or np.array_equal(o[::-1, ::-1], img) for o in outs]
    v = [np.array_equal(o[::-1], img) or np.array_equal(o[::-1, ::-1], img) for o in outs]
    assert h != v and 8 < sum(h) < 32


def test_albumentations_pickles_and_keeps_working():
    tfm = Albumentations(preset("light", (32, 24)), seed=1)
    back = pickle.loads(pickle.dumps(tfm))
    assert isinstance(back, Albumentations) and back.split_idx == 0 and back.order == 2
    assert np.asarray(back(photo(), split_idx=0)).shape == (32, 24, 3)


def test_augmentation_from_recipe_values():
    names = lambda tfms: [type(t).__name__ for t in tfms]
    assert augmentation(None, (16, 12)) == [] and augmentation("none", (16, 12)) == []
    assert names(augmentation("light", (16, 12))) == ["Albumentations"]
    mine = A.Compose([A.HorizontalFlip(p=1.0)])
    tfms = augmentation(mine, (16, 12), seed=3)
    assert names(tfms) == ["Albumentations"] and tfms[0].tfm is not mine
    img = photo(16, 12)
    assert np.array_equal(np.asarray(tfms[0](img, split_idx=0)), np.asarray(img)[:, ::-1])
    with pytest.raises(FastmaskError, match="light"):
        augmentation("heavy", (16, 12))
    with pytest.raises(FastmaskError):
        augmentation(42, (16, 12))


def test_item_tfms_run_in_order_on_a_datablock(tmp_path):
    # Through fastai's pipeline as build_dls wires it: Prepare (crop + resize, once) as the type
    # transform, then albumentations on training only.
    from fastai.data.block import CategoryBlock, DataBlock, TransformBlock
    from fastai.data.transforms import IndexSplitter, IntToFloatTensor

    from fastmask.data.cache import Prepare, prepare
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.png"
        photo(40, 30, seed=i).save(p)
        paths.append(p)
    images = TransformBlock(type_tfms=Prepare((16, 12), 0.5), batch_tfms=IntToFloatTensor)
    block = DataBlock(blocks=(images, CategoryBlock), get_y=lambda p: int(p.stem) % 2,
                      splitter=IndexSplitter([2, 3]),
                      item_tfms=augmentation(A.Compose([A.HorizontalFlip(p=1.0)]), (16, 12)))
    dls = block.dataloaders(paths, bs=2, num_workers=0)
    expect = [prepare(p, (16, 12), 0.5) for p in paths]
    hwc = lambda t: (t.permute(1, 2, 0) * 255).round().byte().numpy()  # IntToFloatTensor divided by 255
    xv, _ = dls.valid.one_batch()
    assert [np.array_equal(hwc(x), e) for x, e in zip(xv, expect[2:])] == [True, True]
    xt, yt = dls.train.one_batch()  # shuffled: find each training image among the flipped originals
    for x in xt:
        assert any(np.array_equal(hwc(x), e[:, ::-1]) for e in expect[:2])


def test_each_worker_draws_its_own_stream(monkeypatch):
    # DataLoader workers hold copies of one generator; without reseeding they would repeat each other.
    import types

    import fastmask.data.augment as aug
    img = photo()
    def draws(worker_seed):
        tfm = pickle.loads(pickle.dumps(Albumentations(preset("strong", (32, 24)), seed=0)))
        monkeypatch.setattr(aug, "get_worker_info", lambda: types.SimpleNamespace(seed=worker_seed))
        return [np.asarray(tfm(img, split_idx=0)) for _ in range(4)]
    w0, w0_again, w1 = draws(100), draws(100), draws(101)
    assert all(np.array_equal(a, b) for a, b in zip(w0, w0_again))
    assert not all(np.array_equal(a, b) for a, b in zip(w0, w1))

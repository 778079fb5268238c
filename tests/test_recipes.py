"""Every recipe under recipes/ builds its learner and trains one tiny epoch; fields change what they claim."""
import numpy as np
import pytest

from fastmask.data.dls import build_dls
from fastmask.data.load import load_data
from fastmask.learn.build import build_learner, fit, valid_frame
from fastmask.recipe import load_recipe, parse_sets

from conftest import TINY

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent
RECIPES = sorted(p for p in (REPO / "recipes").glob("*.py") if p.stem != "__init__")
TINY_SETS = parse_sets(TINY[1::2])


@pytest.fixture(scope="module")
def data(twin):
    return load_data(twin)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_trains_one_tiny_epoch(path, data, tmp_path):
    r = load_recipe(path, TINY_SETS)
    assert r.hypothesis, f"{path.name} has no docstring hypothesis"
    learn = build_learner(r, build_dls(r, data.train), notify=lambda m: None)
    learn.path = tmp_path
    fit(r, learn)
    rows, probs = valid_frame(learn)
    assert probs.shape == (len(rows), 18) and np.allclose(probs.sum(1), 1, atol=1e-3)


def test_age_threshold_moves_training_labels_only(data):
    r = load_recipe(REPO / "recipes" / "age58.py", TINY_SETS)
    dls = build_dls(r, data.train)
    tr, va = dls.train.items, dls.valid.items
    assert (va["y"] == va["label"]).all()  # metrics see the true labels
    moved = tr[(tr.age >= 58) & (tr.age < 60)]
    assert len(moved) and (moved["y"] % 3 == 2).all() and (moved["label"] % 3 == 1).all()
    assert (tr.loc[tr.age < 58, "y"] == tr.loc[tr.age < 58, "label"]).all()


def test_oversample_copies_stay_in_training(data):
    r = load_recipe(REPO / "recipes" / "oversample.py", TINY_SETS)
    dls = build_dls(r, data.train)
    tr, va = dls.train.items, dls.valid.items
    assert (tr["copy"] > 0).any() and (va["copy"] == 0).all()
    assert set(tr.person).isdisjoint(va.person)


def test_separate_models_learn_only_from_their_own_task(data):
    import torch

    from fastmask.learn.heads import SeparateModels
    r = load_recipe(REPO / "recipes" / "per_task.py", TINY_SETS)
    learn = build_learner(r, build_dls(r, data.train), notify=lambda m: None)
    model = learn.model.eval()
    assert isinstance(model, SeparateModels) and len(model.tasks) == 3
    x = torch.randn(4, 3, 32, 24)
    # a loss on the mask task alone (all 18 classes sharing a mask summed) moves only the mask model
    out = model(x)
    mask_logp = out.reshape(4, 3, 2, 3).logsumexp(dim=(2, 3))
    (-mask_logp[:, 0].mean()).backward()
    grads = [sum(p.grad.abs().sum().item() for p in m.parameters() if p.grad is not None) for m in model.tasks]
    assert grads[0] > 0 and max(grads[1:]) < 1e-4 * grads[0]  # zero but for float rounding

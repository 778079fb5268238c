"""One check for every recipe value wherever it comes from (issue 21): a recipe file, `.but()`, `--set`, a
search trial (which calls `.but()`) and a model.json being loaded; values that only the data can judge (bs,
the cache's size) fail before a run folder exists; a run that learnt nothing is failed, not finished."""
import json
import shutil

import numpy as np
import pytest

from fastmask.errors import FastmaskError
from fastmask.recipe import Recipe, load_recipe, parse_sets

from conftest import TINY

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent
BAD_WEIGHTS = [("task_weights", "-1,1,1"), ("task_weights", "0,0,0"), ("loss", "ce:0,f1:0"),
               ("loss", "ce:-0.5,f1:1")]


def as_value(key, text):
    """The value a recipe file would write for `text`."""
    if key == "task_weights":
        return tuple(float(x) for x in text.split(","))
    return {k: float(w) for k, w in (p.split(":") for p in text.split(","))}


@pytest.mark.parametrize("key,text", BAD_WEIGHTS)
def test_bad_weights_fail_from_every_door(key, text, tmp_path):
    match = f"recipe field {key}: .* not a valid"
    with pytest.raises(FastmaskError, match=match):
        parse_sets([f"{key}={text}"])                         # --set
    with pytest.raises(FastmaskError, match=match):
        Recipe(heads="multi").but(**{key: as_value(key, text)})   # .but() and a search trial
    with pytest.raises(FastmaskError, match=match):
        Recipe(**{key: as_value(key, text)})                  # Recipe(...) in a file
    f = tmp_path / "bad.py"
    f.write_text(f'"""h"""\nfrom fastmask.recipe import Recipe\n'
                 f'recipe = Recipe(heads="multi", {key}={as_value(key, text)!r})\n')
    with pytest.raises(FastmaskError, match=f"{f.resolve()}.*recipe field {key}"):
        load_recipe(f)                                        # a recipe file, as `fastmask run` loads it


def test_a_nan_loss_weight_in_a_recipe_file_fails_at_load(tmp_path):
    f = tmp_path / "nan.py"
    f.write_text('"""h"""\nfrom fastmask.recipe import Recipe\nrecipe = Recipe(loss={"ce": float("nan"), "f1": 1.0})\n')
    with pytest.raises(FastmaskError, match="recipe field loss"):
        load_recipe(f)


def test_good_weights_still_pass():
    assert Recipe(loss={"ce": 0.6, "f1": 0.4}).loss == {"ce": 0.6, "f1": 0.4}
    assert Recipe(loss={"ce": 1, "f1": 0}).loss == {"ce": 1.0, "f1": 0.0}  # one zero is a choice, not a fault
    assert parse_sets(["task_weights=0,1,2"])["task_weights"] == (0.0, 1.0, 2.0)


# --- values only the data can judge -----------------------------------------------------------------

@pytest.fixture(scope="module")
def data(twin):
    from fastmask.data.load import load_data
    return load_data(twin, progress=False)


@pytest.fixture
def tiny():
    return load_recipe(REPO / "recipes" / "person_split.py", {**parse_sets(TINY[1::2]), "patience": None})


def train_rows(recipe, data):
    from fastmask.data.split import Splitter
    return len(Splitter(recipe.split, recipe.valid_pct, recipe.split_seed)(data.train.reset_index(drop=True))[0])


def test_bs_above_the_training_rows_fails_before_the_run_folder(data, tiny, tmp_path):
    """Before: no batch was trained, train_loss NaN, and the run was recorded finished."""
    from fastmask.runs.session import train_and_record
    n = train_rows(tiny, data)
    with pytest.raises(FastmaskError, match=f"recipe field bs: {n + 1} is more than the {n} training images"):
        train_and_record(tiny.but(bs=n + 1), data, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    from fastmask.data.dls import build_dls
    with pytest.raises(FastmaskError, match="recipe field bs"):  # the REPL's door too
        build_dls(tiny.but(bs=n + 1), data.train)
    build_dls(tiny.but(bs=n), data.train)  # the whole training set in one batch is allowed


def test_a_cache_larger_than_the_free_disk_fails_before_building(data, tiny, tmp_path, monkeypatch):
    from fastmask.data import cache
    from fastmask.runs.session import train_and_record
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "cache"))
    n = data.train["path"].nunique()
    free = n * 32 * 24 * 3 + 4096 + 10_000  # room for the tiny size, not for 10000x10000

    class Usage:
        def __init__(self, p):
            self.free = free
    monkeypatch.setattr(cache.shutil, "disk_usage", Usage)
    big = tiny.but(size=(10000, 10000))
    with pytest.raises(FastmaskError, match=r"recipe field size: 10000,10000 needs a \d+\.\d GB image cache .*"
                                            f"{tmp_path / 'cache'}"):
        train_and_record(big, data, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    with pytest.raises(FastmaskError, match="recipe field size"):
        cache.build(data.train["path"].unique(), (10000, 10000), progress=False, workers=1)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.npy"))
    cache.check_room(data.train["path"].unique(), (32, 24))  # what fits, passes


@pytest.mark.parametrize("how", ["zero", "no_batch"])
def test_a_run_that_learnt_nothing_is_failed_with_the_reason(how, data, tiny, tmp_path, monkeypatch):
    """Every training loss 0 (or no batch at all): recorded failed, never finished."""
    import torch

    import fastmask.runs.session as session
    from fastmask.runs.session import train_and_record
    real = session.build_learner

    def build(*a, **k):
        learn = real(*a, **k)
        if how == "zero":
            loss = learn.loss_func
            learn.loss_func = lambda pred, *y: loss(pred, *y) * 0.0
            learn.loss_func.activation, learn.loss_func.decodes = loss.activation, loss.decodes
        else:
            learn.dls.train.drop_last, learn.dls.train.bs = True, 10 ** 6  # past the bs check: no batch
        return learn
    monkeypatch.setattr(session, "build_learner", build)
    with pytest.raises(FastmaskError):
        train_and_record(tiny, data, tmp_path / "runs")
    (d,) = (tmp_path / "runs").iterdir()
    st = json.loads((d / "status.json").read_text())
    assert st["status"] == "failed"
    assert ("every training loss" if how == "zero" else "training ran no batch") in st["error"]
    assert torch  # imported for the loss's tensors


# --- model.json ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    """A tiny model's safetensors + JSON pair (untrained: only loading is tested)."""
    from fastmask.data.dls import build_dls
    from fastmask.learn.build import build_learner
    from fastmask.models.model_files import save
    r = load_recipe(REPO / "recipes" / "person_split.py", parse_sets(TINY[1::2]))
    learn = build_learner(r, build_dls(r, data.train), notify=lambda m: None, train=False)
    d = tmp_path_factory.mktemp("saved")
    save(learn, r, d / "m")
    return d


@pytest.mark.parametrize("edit,field", [(lambda s: s["normalize"].update(std=[0.2, 0.0, 0.2]), "std"),
                                        (lambda s: s["normalize"].update(std=[0.2, -1.0, 0.2]), "std"),
                                        (lambda s: s.update(crop=-0.5), "crop"),
                                        (lambda s: s.update(crop=0.0), "crop"),
                                        (lambda s: s.update(size=[0, 24]), "size"),
                                        (lambda s: s["recipe"].update(task_weights=[0, 0, 0]), "task_weights")])
def test_a_model_json_with_a_meaningless_value_is_refused(edit, field, saved, tmp_path):
    """Before: std 0 or a negative crop loaded and predicted one class for everything, exit 0."""
    from fastmask.models.infer import load
    for f in saved.iterdir():
        shutil.copy(f, tmp_path / f.name)
    spec = json.loads((tmp_path / "m.json").read_text())
    edit(spec)
    (tmp_path / "m.json").write_text(json.dumps(spec))
    with pytest.raises(FastmaskError, match=f"^{tmp_path / 'm.json'}: .*{field}") as e:
        load(tmp_path / "m.safetensors")
    assert "\n" not in str(e.value)
    load(saved / "m.safetensors")  # the untouched pair loads


# --- pretrained files torch refuses -----------------------------------------------------------------

class Payload:
    pass


def test_a_pretrained_file_weights_only_refuses_is_one_line(tmp_path):
    import torch

    from fastmask.learn.build import preflight
    f = tmp_path / "w.pth"
    torch.save({"conv1.weight": Payload()}, f)  # a class weights_only will not unpickle
    r = load_recipe(REPO / "recipes" / "person_split.py", parse_sets(["arch=test_resnet", f"pretrained={f}"]))
    with pytest.raises(FastmaskError, match=f"^recipe field pretrained: {f} is not a weights file") as e:
        preflight(r)
    assert "\n" not in str(e.value)
    junk = tmp_path / "w.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(FastmaskError, match="recipe field pretrained"):
        preflight(r.but(pretrained=str(junk)))


# --- independently computed values -----------------------------------------------------------------

def varied(learn, seed=0):
    """Replace the model by one whose answer depends on the whole image, left and right apart (a flip
    changes it), with classes that differ from image to image."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    x = learn.dls.one_batch()[0] if len(learn.dls.train) else None
    size = tuple(x.shape[1:]) if x is not None else None
    learn.model = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(size)), 18))
    with torch.no_grad():
        learn.model[1].weight.mul_(20)
    learn.model.eval()
    return learn


@pytest.fixture(scope="module")
def learners(data):
    from fastmask.data.dls import build_dls
    from fastmask.learn.build import build_learner
    out = {}
    for aug in ("none", "light"):
        r = load_recipe(REPO / "recipes" / "person_split.py", {**parse_sets(TINY[1::2]), "augment": aug})
        out[aug] = varied(build_learner(r, build_dls(r, data.train), notify=lambda m: None, train=False))
    return out


def recording(model):
    """`model` wrapped to keep every (input, output) it sees."""
    from torch import nn

    class Recording(nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.calls = model, []

        def forward(self, x):
            out = self.model(x)
            self.calls.append((x.detach().clone(), out.detach().clone()))
            return out
    return Recording()


def plain_inputs(learn, paths):
    import torch
    dl = learn.dls.test_dl(paths, num_workers=0, bs=len(paths))
    (x,) = next(iter(dl))[:1]
    return torch.as_tensor(x)


def test_tta_is_three_quarters_augmented_one_quarter_plain_by_hand(learners, data):
    import torch

    from fastmask.models.infer import predict_probs
    learn = learners["none"]  # no training-side transform: the one augmented pass is the left-right flip
    paths = data.eval["path"].tolist()[:24]
    x = plain_inputs(learn, paths)
    with torch.no_grad():
        plain = torch.softmax(learn.model(x), 1).numpy()
        flipped = torch.softmax(learn.model(x.flip(-1)), 1).numpy()
    assert len(set(plain.argmax(1))) >= 3, "the model must predict different classes"
    assert np.abs(plain - flipped).max() > 0.05, "the flip must change the answer"
    np.testing.assert_allclose(predict_probs(learn, paths, tta=1, bs=len(paths)), 0.75 * flipped + 0.25 * plain,
                               atol=1e-5)


def test_tta_with_albumentations_by_hand_from_the_recorded_passes(learners, data):
    import torch

    from fastmask.models.infer import predict_probs
    learn = learners["light"]
    paths = data.eval["path"].tolist()[:24]
    x = plain_inputs(learn, paths)
    model = learn.model
    rec = recording(model)
    learn.model = rec
    try:
        got = predict_probs(learn, paths, tta=3, bs=len(paths))
    finally:
        learn.model = model
    (a1, o1), (a2, o2), (a3, o3), (p, op) = rec.calls  # fastai: the N augmented passes, then the plain one
    assert torch.allclose(p, x) and not torch.allclose(a1, x) and not torch.allclose(a1, a2)
    aug = np.mean([torch.softmax(o, 1).numpy() for o in (o1, o2, o3)], 0)
    np.testing.assert_allclose(got, 0.75 * aug + 0.25 * torch.softmax(op, 1).numpy(), atol=1e-5)


def test_each_submission_row_is_its_own_images_prediction(learners, data, twin, tmp_path, capsys, monkeypatch):
    """The varied model saved as a model file, predicted through the CLI; each row joined back on ImageID
    to that image's own prediction, made one image at a time."""
    import pandas as pd
    import torch

    from fastmask.data.dls import build_dls
    from fastmask.learn.build import build_learner
    from fastmask.models import model_files

    from test_predict import cli_in_process
    r = load_recipe(REPO / "recipes" / "person_split.py", parse_sets(TINY[1::2]))
    learn = build_learner(r, build_dls(r, data.train), notify=lambda m: None, train=False)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in learn.model.parameters():
            p.normal_(0, 1)  # a random net: its answer differs from image to image
    learn.model.eval()
    model_files.save(learn, r, tmp_path / "m")
    out = tmp_path / "sub.csv"
    code, _, err = cli_in_process([tmp_path / "m.safetensors", "--eval", twin, "--out", out, "--quiet"], capsys, monkeypatch)
    assert code == 0, err
    sub = pd.read_csv(out, dtype={"ImageID": str})
    back = model_files.load(tmp_path / "m.json")
    own = {}
    for image_id, path in zip(data.eval["ImageID"], data.eval["path"]):
        with back.no_bar():
            own[image_id] = int(back.predict(path)[1])
    counts = pd.Series(list(own.values())).value_counts()
    assert len(counts) >= 2 and counts.iloc[1] >= 10, "the model must predict different classes, often"
    joined = sub.assign(own=sub["ImageID"].map(own))
    assert joined["own"].notna().all() and (joined["ans"] == joined["own"]).all()

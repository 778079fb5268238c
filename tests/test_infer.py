"""Inference and REPL: TTA (n=0 is plain prediction), soft and hard votes, the suspect ranking, a
short REPL session on the twin that ends in an export the inference code reloads, and the model file
that is not code (safetensors + JSON) predicting what the pickle predicts."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import TINY
from test_kfold import REPO, kfold_run


@pytest.fixture(scope="module")
def run(twin, tmp_path_factory):
    return kfold_run(twin, tmp_path_factory)[0]


@pytest.fixture(scope="module")
def eval_paths(twin):
    from fastmask.data import read_eval
    return read_eval(twin / "eval")["path"].tolist()


@pytest.fixture(scope="module")
def repl_export(twin, tmp_path_factory):
    """The README's REPL session on the twin, with tiny overrides; returns the exported learner's path."""
    from fastai.interpret import ClassificationInterpretation

    from fastmask.repl import load_recipe, parse_sets
    tmp = tmp_path_factory.mktemp("repl")
    # without augmentation (the default is "light"), so TTA's one augmented pass is the horizontal flip
    r = load_recipe(REPO / "recipes" / "person_split.py", parse_sets([*TINY[1::2], "augment=none"]))
    learn = r.learner(data=twin)
    learn.path = tmp  # lr_find saves a temporary model under learn.path/models
    with learn.no_bar():
        learn.fit_one_cycle(1, 1e-3)
        try:  # a handful of batches can leave too short a curve for `valley` (known fastai issue)
            lr = learn.lr_find(num_it=30, show_plot=False).valley
            assert 1e-7 < lr < 10
        except IndexError:
            pass
        interp = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    assert cm.shape == (18, 18) and cm.sum() == len(learn.dls.valid_ds)
    r.export(learn, tmp / "repl")  # as the README says: repl.pkl beside repl.safetensors/.json
    return tmp / "repl.pkl"


def test_load_recipe_from_the_package():
    from fastmask import load_recipe  # a contract path (DESIGN.md)
    assert load_recipe(REPO / "recipes" / "kfold.py").split == "kfold:5"


def test_tta_zero_is_plain_prediction_and_flip_when_no_augmentation(repl_export, eval_paths):
    from fastmask.models.infer import load, predict_probs, train_only_tfms, tta_dl
    learn = load(repl_export, trust_pickle=True)  # learn.export's pickle: written by this test
    dl = learn.dls.test_dl(eval_paths, num_workers=0)
    with learn.no_bar():
        plain, _ = learn.get_preds(dl=dl)
    assert np.array_equal(predict_probs(learn, eval_paths, tta=0), plain.numpy())
    # person_split trains without augmentation: fastai's TTA passes would equal the plain pass,
    # so the one augmented pass is a horizontal flip
    assert train_only_tfms(dl) == [] and tta_dl(dl)[1] == 1
    t2, t5 = predict_probs(learn, eval_paths, tta=2), predict_probs(learn, eval_paths, tta=5)
    assert np.allclose(t2, t5) and not np.allclose(t2, plain.numpy()) and np.allclose(t2.sum(1), 1, atol=1e-5)


def test_tta_with_albumentations_is_deterministic(run, eval_paths):
    from fastmask.models.infer import load, predict_probs, train_only_tfms
    learn = load(run / "fold0.safetensors")  # kfold_strong: albumentations on the training side
    assert [type(t).__name__ for t in train_only_tfms(learn.dls.test_dl(eval_paths[:2]))] == ["Albumentations"]
    plain = predict_probs(learn, eval_paths)
    a, b = predict_probs(learn, eval_paths, tta=3), predict_probs(learn, eval_paths, tta=3)
    assert np.array_equal(a, b) and not np.allclose(a, plain) and np.allclose(a.sum(1), 1, atol=1e-5)


def test_two_model_soft_vote_is_the_mean_of_their_tables(run, eval_paths):
    from fastmask.models.infer import load_models, predict, predict_probs, soft_vote
    models = load_models([run / "fold0.safetensors", run / "fold1.json"])
    t0, t1 = (predict_probs(m.learn, eval_paths) for m in models)
    out = predict(models, eval_paths, progress=False)
    assert np.allclose(out.tables[0], t0) and np.allclose(out.tables[1], t1)
    assert np.allclose(soft_vote([t0, t1]), (t0 + t1) / 2)
    assert np.array_equal(out.ans, ((t0 + t1) / 2).argmax(1))
    # weights: a run folder's folds share its weight; 3:1 between two sources
    w = load_models([run / "fold0.safetensors", run], weights=[3, 1])
    assert [m.weight for m in w] == pytest.approx([3, 1 / 3, 1 / 3, 1 / 3])


def test_votes_on_planted_tables():
    from fastmask.models.infer import hard_vote, soft_vote, vote
    a = np.array([[0.6, 0.4], [0.1, 0.9]])
    b = np.array([[0.2, 0.8], [0.3, 0.7]])
    c = np.array([[0.45, 0.55], [0.8, 0.2]])
    assert np.allclose(soft_vote([a, b], [3, 1]), 0.75 * a + 0.25 * b)
    assert hard_vote([a, b, c]).tolist() == [1, 1]           # 2 of 3 argmaxes
    assert hard_vote([a, b]).tolist() == [1, 1]              # row 0 ties 1:1 -> the higher soft vote (class 1)
    assert hard_vote([a, b, c], [5, 1, 1]).tolist() == [0, 1]
    assert vote([a, c], how="soft").tolist() == [0, 1]


def planted_oof(n=400, noisy=20, seed=0):
    """OOF probabilities a decent model would give: the true class likely; the first `noisy` rows carry
    a wrong given label, which the model (seeing the true class) contradicts."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 18, n)
    given = true.copy()
    given[:noisy] = (true[:noisy] + rng.integers(1, 18, noisy)) % 18
    logits = rng.normal(0, 1, (n, 18))
    logits[np.arange(n), true] += rng.uniform(0.5, 4, n)  # confident on some images, unsure on others
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    folders = [f"{i:06d}_female_Asian_20" for i in range(n)]
    oof = pd.DataFrame({"path": [f"/d/train/images/{f}/mask1.jpg" for f in folders], "person": [f[:6] for f in folders],
                        "label": given, **{f"p{i}": p[:, i] for i in range(18)}, "fold": np.arange(n) % 5})
    return oof, {f"{f}/mask1.jpg" for f in folders[:noisy]}


def test_suspect_ranking_finds_planted_flips(tmp_path):
    from fastmask.report import suspects
    oof, noisy = planted_oof()
    prec, n, chance = suspects.precision(suspects.rank(oof), noisy)
    assert n == 20 and chance == pytest.approx(20 / 400) and prec >= 5 * chance  # 0.45 here
    # the log as a twin writes it, found beside the data root, and the figure recorded
    pd.DataFrame({"id": [k[:6] for k in sorted(noisy)], "folder": [k.split("/")[0] for k in sorted(noisy)],
                  "kind": "gender_flip", "file": "mask1.jpg"}).to_csv(tmp_path / "noise.csv", index=False)
    m = suspects.record(oof, tmp_path / "suspects.csv", tmp_path)
    assert m["suspect_precision"] == pytest.approx(prec) and m["suspect_noisy"] == 20
    s = pd.read_csv(tmp_path / "suspects.csv")
    assert s["rank"].tolist() == list(range(1, len(s) + 1)) and (s.pred != s.label).all()
    # probabilities unrelated to the images (rows shuffled) do no better than chance
    cols = [f"p{i}" for i in range(18)]
    shuffled = oof.copy()
    shuffled[cols] = oof[cols].to_numpy()[np.random.default_rng(1).permutation(len(oof))]
    assert suspects.precision(suspects.rank(shuffled), noisy)[0] <= 0.2
    assert suspects.noise_log(tmp_path / "nowhere") is None


# ---------------------------------------------------------------------------------------------
# The model file that is not code, and the pickle beside it
# ---------------------------------------------------------------------------------------------
FRESH_PREDICT = """
import json, sys
from fastmask.models.infer import load, predict_probs
paths = json.loads(sys.stdin.read())
learn = load(sys.argv[1], trust_pickle=sys.argv[1].endswith(".pkl"))
print(json.dumps({"cbs": [type(c).__name__ for c in learn.cbs],
                  **{str(n): predict_probs(learn, paths, tta=n).tolist() for n in (0, 3)}}))
"""


def fresh_predict(model, paths):
    """{tta: probabilities} and the callback names of `model` loaded in a new process."""
    p = subprocess.run([sys.executable, "-c", FRESH_PREDICT, str(model)], input=json.dumps(paths),
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_safe_model_predicts_what_the_pickle_predicts_in_a_fresh_process(run, eval_paths):
    """fold0 of kfold_strong (albumentations on the training side): plain and TTA probabilities of the
    safetensors + JSON model, rebuilt in a new process, match the pickled learner's."""
    paths = eval_paths[:16]
    safe, pickled = fresh_predict(run / "fold0.safetensors", paths), fresh_predict(run / "fold0.pkl", paths)
    for n in ("0", "3"):
        assert np.abs(np.array(safe[n]) - np.array(pickled[n])).max() < 1e-5, n
    assert not np.allclose(safe["0"], safe["3"])  # TTA did run its augmented passes
    assert sorted(safe["cbs"]) == sorted(pickled["cbs"]) == sorted(
        ["TrainEvalCallback", "Recorder", "CastToTensor", "ProgressCallback"])  # no training callback


@pytest.mark.parametrize("change", [{"heads": "multi", "crop": 0.8, "augment": "none"},
                                    {"heads": "separate", "augment": "strong"}])
def test_safe_model_rebuilds_heads_crop_and_augmentation(change, twin, eval_paths, tmp_path):
    """Untrained learners (the weights need not be good to be the same) of the other heads, a centre
    crop and the strong preset: the rebuilt learner predicts what the exported pickle predicts."""
    from fastmask.data.dls import build_dls
    from fastmask.data.load import load_data
    from fastmask.learn.build import build_learner
    from fastmask.models.infer import export_pickle, load, predict_probs, train_only_tfms
    from fastmask.models.model_files import save
    from fastmask.repl import load_recipe, parse_sets
    r = load_recipe(REPO / "recipes" / "person_split.py", parse_sets(TINY[1::2])).but(**change)
    learn = build_learner(r, build_dls(r, load_data(twin, progress=False).train), notify=lambda *a: None)
    save(learn, r, tmp_path / "model")
    export_pickle(learn, tmp_path / "model.pkl")
    safe, pickled = load(tmp_path / "model.json"), load(tmp_path / "model.pkl", trust_pickle=True)
    assert json.loads((tmp_path / "model.json").read_text())["crop"] == change.get("crop")
    paths = eval_paths[:8]
    for n in (0, 2):
        assert np.abs(predict_probs(safe, paths, tta=n) - predict_probs(pickled, paths, tta=n)).max() < 1e-5
    dl = safe.dls.test_dl(paths)
    assert [type(t).__name__ for t in train_only_tfms(dl)] == (["Albumentations"] if change["augment"] != "none" else [])


def test_a_mixed_up_pair_and_a_foreign_json_are_refused_by_name(run, tmp_path):
    import shutil

    from fastmask.errors import FastmaskError
    from fastmask.models.infer import load
    shutil.copyfile(run / "fold1.json", tmp_path / "m.json")
    shutil.copyfile(run / "fold0.safetensors", tmp_path / "m.safetensors")
    with pytest.raises(FastmaskError, match=r"m\.safetensors: not the weights m\.json was saved with"):
        load(tmp_path / "m.safetensors")
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(FastmaskError, match=r"m\.json: its weights m\.safetensors are not beside it"):
        load(tmp_path / "m.json")
    with pytest.raises(FastmaskError, match=r"config\.json: not a fastmask model file"):
        load(run / "config.json")


BARE_LOAD = """
import sys
sys.modules["fastmask"] = None  # as in an environment without fastmask installed
from fastai.learner import load_learner
load_learner(sys.argv[1])
"""


def test_bare_load_learner_without_fastmask_says_so(run):
    """fastai's own load_learner, where fastmask is not importable: one sentence saying so, not fastai
    2.8.12's UnboundLocalError."""
    p = subprocess.run([sys.executable, "-c", BARE_LOAD, str(run / "fold0.pkl")], capture_output=True, text=True,
                       timeout=300, cwd="/")
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 1 and "fastmask is not installed" in last and "load_learner needs fastmask" in last, last
    assert "UnboundLocalError" not in p.stderr


def test_a_trusted_pickle_missing_a_module_names_it(tmp_path, monkeypatch):
    """A pickle whose class lives in a module this process cannot import: the module is named, where
    fastai alone would say UnboundLocalError."""
    import torch

    from fastmask.errors import FastmaskError
    from fastmask.models.infer import load
    (tmp_path / "gone_module.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_module
    torch.save(gone_module.Thing(), tmp_path / "thing.pkl")
    monkeypatch.delitem(sys.modules, "gone_module")
    (tmp_path / "gone_module.py").unlink()
    with pytest.raises(FastmaskError, match=r"thing\.pkl: needs the Python module 'gone_module', which is not"):
        load(tmp_path / "thing.pkl", trust_pickle=True)


@pytest.mark.parametrize("fails", ["pickle", "weights"])
def test_a_full_disk_during_export_leaves_no_temp_file(fails, run, tmp_path, monkeypatch):
    """run.export on a disk that fills up: the error is raised and no temp file is left to keep it full."""
    import errno

    import torch

    import fastmask.store.folder
    from fastmask.models.export import export
    from fastmask.models.infer import load
    from fastmask.repl import Recipe
    learn = load(run / "fold0.safetensors")
    real_save = torch.save

    def full_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # a partly written file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    def full_replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(src))

    if fails == "pickle":
        monkeypatch.setattr(torch, "save", full_save)
    else:
        monkeypatch.setattr(fastmask.store.folder.os, "replace", full_replace)
    with pytest.raises(OSError, match="No space left"):
        export(learn, tmp_path / "model.pkl", Recipe(arch="test_resnet", size=(32, 24)))
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == (["model.json", "model.safetensors"] if fails == "pickle" else []), left

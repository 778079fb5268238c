"""Pins for behaviours a one-line bug could break with every other test still green (issue 31). Each test's
expected values come from a hand computation or an independent path (the model's own outputs computed here,
planted run folders whose evidence is known), never from the function under test, and each was seen to fail
with the one-line break its docstring names.

- TTA weighs the augmented pass 0.75 and the plain pass 0.25;
- each submission row holds its own image's prediction (joined by ImageID, a model whose answers vary);
- a gap verdict against an identical copy of itself: delta 0, interval [0, 0] (the same people drawn);
- `--decide` stops at the first look when neither model learned;
- the parent on demand: a run on other data, or with another split_seed, is not the parent's setup;
- verdict_history keeps every verdict replaced, in order;
- the queue reuses a parent only when its runs cover every seed the child needs;
- a face crop at predict time: the detected face where found, the typical box only where not."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, in_process
from test_judgement import BASE, Planted, make_run, recipes  # the verdict tests' planted runs and trainer

REPO = Path(__file__).resolve().parent.parent


def patch_run_file(monkeypatch, hypothesis, trainer, c):
    """run_file on recipe `c` with `trainer` for session.train_and_record and no data work (fingerprint fp1)."""
    from types import SimpleNamespace

    from fastmask.runs import decide as deciding, parents
    for m in (hypothesis, parents, deciding):
        monkeypatch.setattr(m, "train_and_record", trainer)
    for name, fake in (("load_recipe", lambda *a, **k: c), ("preflight", lambda r: None), ("setup", lambda r: None),
                       ("load_data", lambda *a, **k: SimpleNamespace(train=None, fingerprint="fp1"))):
        monkeypatch.setattr(hypothesis, name, fake)


# --- a model file whose predictions vary per image (untrained: its weights are random but fixed) ----------

@pytest.fixture(scope="module")
def model_file(twin, tmp_path_factory):
    """person_split (augment="none", so its TTA pass is a horizontal flip) at tiny settings, exported untrained:
    STEM.json + STEM.safetensors, as predict opens them."""
    from fastmask.repl import load_recipe, parse_sets
    r = load_recipe(REPO / "recipes" / "person_split.py", parse_sets([*TINY[1::2], "augment=none"]))
    assert r.augment == "none"
    learn = r.learner(data=twin)
    stem = tmp_path_factory.mktemp("model") / "m"
    r.export(learn, stem)
    return stem.with_suffix(".json")


@pytest.fixture(scope="module")
def eval_rows(twin):
    from fastmask.data import read_eval
    return read_eval(twin / "eval")


def _softmax(t):
    import torch
    return torch.softmax(t.float(), dim=1)


def plain_and_mirrored(learn, paths):
    """The model's own probabilities on each image's input and on that input mirrored left-right, computed here
    from the test DataLoader's batches (not through fastai's tta or get_preds)."""
    import torch
    dl = learn.dls.test_dl(list(map(str, paths)), num_workers=0, bs=16)
    model = learn.model.eval()
    plain, mirrored = [], []
    with torch.no_grad():
        for (xb,) in dl:
            x = torch.as_tensor(xb)
            plain.append(_softmax(model(x)))
            mirrored.append(_softmax(model(x.flip(-1))))
    return torch.cat(plain).numpy(), torch.cat(mirrored).numpy()


def test_tta_is_three_quarters_the_mirrored_pass_and_a_quarter_the_plain_one(model_file, eval_rows):
    """Broken on purpose: `learn.tta(..., beta=0.75)` in infer.predict_probs (the weights swapped) fails here."""
    from fastmask.models.infer import load, predict_probs
    learn = load(model_file)
    paths = eval_rows["path"].tolist()
    plain, mirrored = plain_and_mirrored(learn, paths)
    assert np.abs(mirrored - plain).max() > 1e-3  # the flip moves predictions: a swap of weights would show
    want = 0.75 * mirrored + 0.25 * plain
    swapped = 0.25 * mirrored + 0.75 * plain
    for n in (1, 3):  # augment="none": one flip pass however many are asked for
        got = predict_probs(learn, paths, tta=n)
        assert np.abs(got - want).max() < 2e-6, np.abs(got - want).max()
        assert np.abs(got - swapped).max() > 5e-4
    assert np.abs(predict_probs(learn, paths, tta=0) - plain).max() < 2e-6


def test_each_submission_row_holds_its_own_images_prediction(model_file, eval_rows, twin, tmp_path):
    """Joined by ImageID to each image's prediction made alone (a batch of one), with eval rows in an unsorted
    order. Broken on purpose: `predict(models, sorted(ev["path"].tolist()), ...)` in predict._predict fails."""
    from fastmask.labels import CLASS_NAMES
    from fastmask.models.infer import load
    info = pd.read_csv(twin / "eval" / "info.csv", dtype=str)
    assert info.ImageID.tolist() != sorted(info.ImageID)
    learn = load(model_file)
    own, margin = {}, {}
    for image_id, path in zip(eval_rows["ImageID"], eval_rows["path"]):
        p, _ = plain_and_mirrored(learn, [path])
        top = np.sort(p[0])[::-1]
        own[image_id] = CLASS_NAMES.index(learn.dls.vocab[int(p[0].argmax())])
        margin[image_id] = top[0] - top[1]
    assert len(set(own.values())) >= 3  # predictions vary per image: rows in another order would not match
    out = tmp_path / "submission.csv"
    r = in_process("predict", model_file, "--eval", twin / "eval", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    sub = pd.read_csv(out, dtype={"ImageID": str})
    assert sub.ImageID.tolist() == info.ImageID.tolist()
    clear = [i for i in sub.ImageID if margin[i] > 1e-4]  # a near-tie could flip between a batch and one image
    assert len(clear) >= len(sub) - 3
    got = dict(zip(sub.ImageID, sub.ans))
    wrong = [i for i in clear if got[i] != own[i]]
    assert not wrong, f"{len(wrong)} rows hold another image's answer, e.g. {wrong[0]}"


# --- the gap verdict against an identical copy ------------------------------------------------------------

def _gap_frames(seed):
    """valid_preds and holdout_preds of one model, two seeds: 40 validation people and 30 holdout people, 7
    photos each, a share of people right per seed (so the bootstrap has something to move)."""
    rng = np.random.default_rng(seed)
    valid, hold = [], []
    for s in (0, 1):
        for frame, key, n, acc in ((valid, "path", 40, 0.8), (hold, "ImageID", 30, 0.6)):
            for i in range(n):
                label = (i * 5) % 18
                right = rng.random() < acc
                for k in range(7):
                    frame.append({key: f"{key[0]}{i:03d}_{k}", "person": f"{key[0]}{i:03d}", "label": label,
                                  "pred": label if right else (label + 1 + k) % 18, "seed": s})
    return pd.DataFrame(valid), pd.DataFrame(hold)


def _write_run(d, name, valid, hold, fields, parent=None, parent_fields=None):
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"name": name, "parent": parent, "fields": fields,
                                               "data_fingerprint": "fp1", "parent_fields": parent_fields,
                                               "overrides": {}}))
    (d / "status.json").write_text(json.dumps({"status": "finished"}))
    (d / "metrics.json").write_text(json.dumps({"macro_f1": 0.5}))
    valid.to_csv(d / "valid_preds.csv", index=False)
    hold.to_csv(d / "holdout_preds.csv", index=False)
    return d


def test_a_gap_verdict_against_an_identical_copy_is_zero_with_a_zero_interval(tmp_path):
    """Child and parent validated the same people, so the bootstrap draws the same people for both: every draw's
    delta is 0. Broken on purpose: drawing the parent's validation people on their own (`wp =
    bootstrap_weights(rng, len(code_p), n)` in report/bootstrap.py's gap_bootstrap) fails here."""
    from fastmask.report.judgement import judge
    from fastmask.report.verdict import compare
    from fastmask.store.run_folder import RunFolder
    valid, hold = _gap_frames(3)
    fields = {**BASE, "judged_on": "gap", "replicates": 2}
    parent = _write_run(tmp_path / "20260101T000001Z-p", "p", valid, hold, {**BASE, "replicates": 2})
    child = _write_run(tmp_path / "20260101T000002Z-c", "c", valid.copy(), hold.copy(), fields, parent="p",
                       parent_fields=BASE)
    v = compare(RunFolder(child), RunFolder(parent), judged_on="gap", n=300)
    assert v["quantity"] == "gap" and v["seeds"] == 2 and v["valid_people"] == [40, 40]
    assert v["delta"] == 0 and v["low"] == 0 and v["high"] == 0, (v["delta"], v["low"], v["high"])
    assert v["verdict"] == "no effect"
    one = compare(RunFolder(child).but(valid=valid[valid.seed == 0], holdout=hold[hold.seed == 0]),
                  RunFolder(parent).but(valid=valid[valid.seed == 0], holdout=hold[hold.seed == 0]),
                  judged_on="gap", n=300)
    assert one["seeds"] == 1 and one["delta"] == 0 and one["low"] == 0 == one["high"]
    j = judge(RunFolder(child), tmp_path)  # the card's path: judged_on from the run's own fields
    assert j.verdict["quantity"] == "gap" and j.verdict["low"] == 0 == j.verdict["high"]


# --- --decide when neither model learned ------------------------------------------------------------------

class AtChance(Planted):
    """Stands in for session.train_and_record: a finished run of the recipe's seeds whose model predicts one class
    for every photo (a collapsed model, exactly at chance: its predictions shuffled score the same), another class
    for each recipe and seed; records what it trained."""
    def __init__(self):
        super().__init__({"p": 0.05, "c": 0.05})

    def __call__(self, recipe, data, runs_dir, overrides=None, info=None, cbs=()):
        d = super().__call__(recipe, data, runs_dir, overrides, info, cbs)
        vp = pd.read_csv(d / "valid_preds.csv")
        vp["pred"] = (vp["seed"] * 5 + (3 if recipe.name == "c" else 8)) % 18
        vp.to_csv(d / "valid_preds.csv", index=False)
        return d


def test_decide_stops_at_the_first_look_when_neither_model_learned(tmp_path, monkeypatch, capsys):
    """`fastmask run c.py --decide 6` with both models at chance: seed 0 of each, then stop. Broken on purpose:
    dropping `or v.get("verdict") == "neither learned"` from decide.decide's stop (it trains to the seed
    budget) fails here."""
    from fastmask.runs import hypothesis
    t = AtChance()
    c = recipes(decide=6)
    patch_run_file(monkeypatch, hypothesis, t, c)
    assert hypothesis.run_file("recipes/c.py", runs_dir=tmp_path) == 0
    assert t.trained == [("p", (0,)), ("c", (0,))]
    assert len([d for d in tmp_path.iterdir() if d.is_dir()]) == 2
    (first,) = [d for d in tmp_path.iterdir() if d.name.endswith("-c")]
    v = json.loads((first / "metrics.json").read_text())["verdict"]
    assert v["verdict"] == "neither learned" and v["seeds"] == 1
    assert "neither model learned" in capsys.readouterr().out


# --- the parent's setup: same data, same split_seed ---------------------------------------------------------

def test_the_parent_on_demand_is_trained_when_its_only_run_is_on_other_data(tmp_path, monkeypatch, capsys):
    """Broken on purpose: `covered` pooling on any data (`pool(runs_dir, recipe.name, None, ...)` in
    parents.covered) reuses the run on other data and fails here."""
    from fastmask.runs import hypothesis
    c = recipes(decide=0)
    make_run(tmp_path, "p", [0], 0.3, fp="other-data", fields=c.parent.config()["fields"])  # the same setup
    t = Planted({"p": 0.3, "c": 0.9})
    patch_run_file(monkeypatch, hypothesis, t, c)
    assert hypothesis.run_file("recipes/c.py", runs_dir=tmp_path) == 0
    assert t.trained == [("p", (0,)), ("c", (0,))]
    out = capsys.readouterr().out
    assert "no comparable finished run on this data; training it first" in out and "reusing" not in out
    (child,) = [d for d in tmp_path.iterdir() if d.name.endswith("-c")]
    parent_runs = json.loads((child / "metrics.json").read_text())["verdict"]["parent_runs"]
    assert len(parent_runs) == 1 and json.loads((tmp_path / parent_runs[0] / "config.json").read_text())[
        "data_fingerprint"] == "fp1"


def test_a_parent_run_with_another_split_seed_is_never_pooled(tmp_path, monkeypatch):
    """Another split_seed validates other people: another setup. Broken on purpose: `split_seed` added to
    index.SEED_FIELDS (pooled like a seed) fails here."""
    from fastmask.report.judgement import judge
    from fastmask.runs import decide as deciding, hypothesis, parents
    from fastmask.store.index import pool
    from fastmask.store.run_folder import RunFolder
    c = recipes(decide=0)
    t = Planted({"p": 0.3, "c": 0.3})
    for m in (hypothesis, parents, deciding):
        monkeypatch.setattr(m, "train_and_record", t)
    pf = c.parent.config()["fields"]
    assert pf["split_seed"] == 0
    other = make_run(tmp_path, "p", [0, 1], 0.9, fields={**pf, "split_seed": 1})
    assert pool(tmp_path, "p", "fp1", pf) == []
    # the verdict does not pool it: no comparable parent run
    child = t(c.variant(replicates=2), None, tmp_path)
    j = judge(RunFolder(child), tmp_path)
    assert j.parent is None and j.verdict is None
    # the parent on demand trains the child's seeds on split_seed 0
    hypothesis.train_missing(c.parent, None, tmp_path, {}, "fp1", [0, 1], "c")
    assert t.trained[1:] == [("p", (0, 1))]
    # and once it has, the verdict pools that run only
    j = judge(RunFolder(child), tmp_path)
    assert other.name not in j.parent_runs and len(j.parent_runs) == 1 and j.verdict["seeds"] == 2


# --- verdict_history --------------------------------------------------------------------------------------

def test_verdict_history_keeps_every_verdict_replaced_in_order(tmp_path):
    """Three successive verdicts (2, 3, then 4 paired seeds): the first two stay, oldest first; a re-judge that
    changes nothing adds nothing. Broken on purpose: `history = []` (or `history.insert(0, old)`) in
    outputs.rejudge fails here."""
    from fastmask.runs.outputs import rejudge
    c = make_run(tmp_path, "c", [0, 1], 0.9, parent="p")
    (c / "card.md").write_text("# c\n")
    make_run(tmp_path, "p", [0, 1], 0.2)
    replaced = []
    for k in (2, 3, 4):
        if k > 2:
            make_run(tmp_path, "p", [k - 1], 0.2)
            make_run(tmp_path, "c", [k - 1], 0.9, parent="p")
        rejudge(c, tmp_path)
        rejudge(c, tmp_path)  # nothing new: no entry added
        m = json.loads((c / "metrics.json").read_text())
        assert m["verdict"]["seeds"] == k and len(m["verdict"]["child_runs"]) == k - 1
        assert m["verdict_history"] == replaced, [h["seeds"] for h in m["verdict_history"]]
        replaced = [*replaced, m["verdict"]]
    assert [h["seeds"] for h in replaced[:2]] == [2, 3]


# --- the queue's plan: a parent is reused only when it covers every seed ------------------------------------

def _planted_parent(runs, twin, seed, replicates, sets):
    """A finished person_split run of seeds seed..seed+replicates-1 on the twin, with the fields the queue
    resolves for oversample's parent under `sets`."""
    from fastmask.data.layout import fingerprint
    from fastmask.data.load import load_data
    from fastmask.recipe import load_recipe, parse_sets
    par = load_recipe(REPO / "recipes" / "oversample.py", parse_sets(sets)).parent
    fields = {**par.config()["fields"], "seed": seed, "replicates": replicates}
    d = runs / f"20260101T{seed:02d}{replicates:02d}00Z-person_split"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"name": "person_split", "parent": "baseline", "fields": fields,
                                               "data_fingerprint": fingerprint(load_data(twin, progress=False).train)}))
    (d / "status.json").write_text(json.dumps({"status": "finished"}))
    (d / "metrics.json").write_text(json.dumps({"macro_f1": 0.3}))
    return d


def test_the_queue_reuses_a_parent_only_when_it_covers_every_seed_the_child_needs(twin, tmp_path):
    """The child needs seeds 0, 1, 2 (replicates=3); the parent's finished run covers 0 and 1: it is trained,
    not reused; with a run for seed 2 as well, it is reused. Broken on purpose: `if set(seeds) &
    covered(...)` (any seed covered) in queue.plan fails here."""
    sets = [*TINY[1::2], "replicates=3"]
    runs = tmp_path / "runs"
    args = ["recipes/oversample.py", *[x for s in sets for x in ("--set", s)], "--dry-run", "--data", twin,
            "--runs", runs]
    _planted_parent(runs, twin, 0, 2, sets)
    p = in_process("run", *args)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [x.strip() for x in p.stdout.splitlines()]
    assert lines[0].startswith("queue: 2 job(s)")
    assert lines[1].startswith("person_split (parent): ") and "reused" not in lines[1] and "fastmask.run" in lines[1]
    assert lines[2].startswith("oversample (hypothesis) after person_split:")
    done = _planted_parent(runs, twin, 2, 1, sets)
    p = in_process("run", *args)
    lines = [x.strip() for x in p.stdout.splitlines()]
    assert p.returncode == 0 and lines[1].startswith("person_split (parent): reused ")
    assert lines[2].startswith("oversample (hypothesis):") and "after" not in lines[2]
    assert not any(d.name.endswith("-oversample") for d in runs.iterdir()) and done.is_dir()  # a dry run trains nothing


# --- the face crop at predict time ------------------------------------------------------------------------

def _noise_photo(path, seed, size=(60, 80)):
    from PIL import Image
    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return a


def _by_hand(a, box, margin, size):
    """The crop computed here: box (fractions) grown by `margin` of its size on each side, in pixels, clipped to the
    photo, then resized to size (height, width) as PIL does bilinearly."""
    from PIL import Image
    h, w = a.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    left, top = max(0, round((x0 - mx) * w)), max(0, round((y0 - my) * h))
    right, bottom = min(w, round((x1 + mx) * w)), min(h, round((y1 + my) * h))
    return np.asarray(Image.fromarray(a[top:bottom, left:right]).resize((size[1], size[0]), Image.BILINEAR))


def test_a_face_crop_at_predict_time_uses_the_detected_face_else_the_typical_box(model_file, tmp_path, monkeypatch):
    """A model file with crop "face:0.25" and a typical box, predicting three eval photos: the detector (stubbed)
    finds a face on two of them. Each photo's prepared input is its detected face's crop, and the typical box's
    only where nothing was found. Broken on purpose: `box = box if box is not None else fallback or
    faces.detect_image(im) or faces.CENTRE` in cache.fit_image fails here."""
    from fastmask.data import faces
    from fastmask.models.infer import load
    spec = json.loads(model_file.read_text())
    typical = (0.2, 0.1, 0.7, 0.6)
    face_file = tmp_path / "face.json"
    face_file.write_text(json.dumps({**spec, "crop": "face:0.25", "face_fallback": list(typical)}))
    shutil.copyfile(model_file.with_suffix(".safetensors"), face_file.with_suffix(".safetensors"))
    photos = {f"e{i}.png": _noise_photo(tmp_path / f"e{i}.png", i) for i in range(3)}
    detected = {"e0.png": (0.05, 0.3, 0.45, 0.9), "e2.png": (0.5, 0.05, 0.95, 0.5)}  # e1: masked, nothing found
    asked = []

    def stub(im):
        key = next(k for k, a in photos.items() if np.array_equal(np.asarray(im), a))
        asked.append(key)
        return detected.get(key)
    monkeypatch.setattr(faces, "detect_image", stub)
    learn = load(face_file)
    size = tuple(spec["size"])
    dl = learn.dls.test_dl([str(tmp_path / k) for k in photos], num_workers=0)
    for i, (name, a) in enumerate(photos.items()):
        got = np.asarray(dl.dataset[i][0])
        want = _by_hand(a, detected.get(name, typical), 0.25, size)
        assert got.shape == want.shape and np.array_equal(got, want), name
        other = _by_hand(a, typical if name in detected else faces.CENTRE, 0.25, size)
        assert not np.array_equal(got, other)
    assert sorted(set(asked)) == sorted(photos)  # every eval photo had its face looked for

"""End to end: a recipe trained and recorded through the CLI, the export reloaded in a fresh process."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY, in_process

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def finished(twin, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for name in ("baseline", "person_split"):  # in this process: the fresh-process reload is tested below
        p = in_process("run", f"recipes/{name}.py", *TINY, "--data", twin, "--runs", runs)
        assert p.returncode == 0, p.stderr[-3000:]
    return runs


def test_run_folder_contract(finished):
    dirs = sorted(finished.iterdir())
    assert [d.name.split("-", 1)[1] for d in dirs] == ["baseline", "person_split"]
    d = dirs[1]
    for f in ("recipe.py", "config.json", "history.csv", "metrics.json", "confusion.png", "card.md", "model.pkl"):
        assert (d / f).is_file(), f
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["changed"] == {"split": ["random", "person"], "patience": [None, 3]}
    assert cfg["fields"]["arch"] == "test_resnet" and cfg["overrides"]["epochs"] == 1
    import getpass
    import socket
    env = cfg["environment"]  # who ran it, where: a team shares one runs folder
    assert (env["user"], env["host"], env["device"]) == (getpass.getuser(), socket.gethostname(), "cpu")
    m = json.loads((d / "metrics.json").read_text())
    for k in ("macro_f1", "accuracy", "mask_f1", "gender_f1", "age_f1", "holdout_macro_f1", "holdout_accuracy"):
        assert 0 <= m[k] <= 1, k
    assert len(m["per_class_f1"]) == 18
    assert len(pd.read_csv(d / "history.csv")) == 1
    card = (d / "card.md").read_text()
    assert "Splitting by person" in card and "holdout macro F1" in card and "baseline" in card
    assert json.loads((d / "status.json").read_text())["status"] == "finished"


def test_the_leak_hypothesis_gets_a_verdict_on_the_holdout(finished):
    """person_split validated on other people than baseline's random split: the verdict compares their
    holdout predictions, by person, and the card says so."""
    d = sorted(finished.iterdir())[1]
    v = json.loads((d / "metrics.json").read_text())["verdict"]
    assert v["on"] == "holdout" and v["units"] == "person"
    assert v["verdict"] in ("supported", "refuted", "inconclusive", "no effect", "unreplicated", "neither learned")
    # person_split is judged on the leak itself: the validation-holdout gap, whichever way it moved
    assert v["quantity"] == "gap"
    gaps = v["gaps"]
    card = (d / "card.md").read_text()
    assert "the gap |validation - holdout macro F1|" in card
    assert ("grew by" if gaps["child"][0] > gaps["parent"][0] else "shrank by") in card


def test_valid_preds_are_person_grouped(finished, twin):
    base, person = sorted(finished.iterdir())
    vp = pd.read_csv(person / "valid_preds.csv", dtype={"person": str})
    from fastmask.data import locate, read_train
    df = read_train(locate(twin)[0])
    train_people = set(df.person) - set(vp.person)
    assert train_people and set(vp.person).isdisjoint(train_people)
    # the random split leaks: some validation people also have training photos
    bp = pd.read_csv(base / "valid_preds.csv", dtype={"person": str})
    per_person = df.groupby("person").size()
    assert (bp.groupby("person").size() < per_person.loc[bp.person.unique()]).any()


def test_export_reloads_in_fresh_process(finished, twin):
    d = sorted(finished.iterdir())[1]
    code = f"""
import sys, numpy as np
from fastai.learner import load_learner
from fastmask.data import locate, read_eval
learn = load_learner(r"{d / 'model.pkl'}")
names = {{type(c).__name__ for c in learn.cbs}}
assert not names & {{"KeepBest", "NanGuard", "StopOnInterrupt", "PeakAwareEarlyStopping", "CSVLogger"}}, names
ev = read_eval(locate(r"{twin}")[1])
dl = learn.dls.test_dl(list(ev.path[:5]))
p, _ = learn.get_preds(dl=dl)
assert p.shape == (5, 18), p.shape
print(int(learn.predict(ev.path[0])[1]))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    assert 0 <= int(p.stdout.strip().splitlines()[-1]) < 18


@pytest.mark.parametrize("args, msg", [
    (["recipes/person_split.py", "--set", "epoch=1"], "did you mean epochs"),
    (["recipes/person_split.py", "--set", "arch=resnet_18"], "unknown timm model 'resnet_18'"),
    (["recipes/nope.py"], "no such recipe file"),
    (["recipes/person_split.py", "--data", "/no/such/folder"], "/no/such/folder"),
])
def test_bad_input_one_line_exit_2(args, msg, tmp_path):
    p = in_process("run", *args, "--runs", tmp_path / "runs")
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], p.stderr[-2000:]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_relative_runs_folder_as_in_the_readme(twin, tmp_path):
    # The README's command uses the default `--runs runs`, relative to where it is started.
    p = in_process("run", REPO / "recipes" / "person_split.py", *TINY, "--data", twin, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    # the parent on demand: baseline first, then the hypothesis, both under ./runs
    base, d = sorted((tmp_path / "runs").iterdir())
    assert "baseline" in base.name and "person_split" in d.name
    assert (d / "model.pkl").is_file() and (d / "card.md").is_file()


def test_the_card_and_curves_name_the_epoch_whose_weights_were_kept(twin, tmp_path, monkeypatch):
    from fastmask.learn import tracker
    monkeypatch.setattr(tracker, "Z", 0.0)  # keep the best epoch itself, so the kept one can be read off history.csv
    p = in_process("run", "recipes/baseline.py", *TINY, "--set", "epochs=4", "--set", "lr=0.05", "--data", twin,
                   "--runs", tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    (d,) = tmp_path.iterdir()
    f1 = pd.read_csv(d / "history.csv")["macro_f1"].tolist()
    best = f1.index(max(f1)) + 1  # KeepBest keeps the first epoch reaching the best validation macro F1
    m = json.loads((d / "metrics.json").read_text())
    assert m["kept_epoch"] == best and m["epochs_run"] == 4
    assert f"| kept epoch (the latest not credibly below the best validation macro F1; counted from 1) | {best} |" \
        in (d / "card.md").read_text()

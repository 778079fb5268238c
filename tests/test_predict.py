"""python -m fastmask.predict: the submission contract, ensembles from run folders, and one-line refusals."""
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from test_kfold import REPO, kfold_run


def predict_cli(*args):
    return subprocess.run([sys.executable, "-m", "fastmask.predict", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run(twin, tmp_path_factory):
    return kfold_run(twin, tmp_path_factory)[0]


def check_submission(path, twin):
    info = pd.read_csv(twin / "eval" / "info.csv", dtype=str)
    sub = pd.read_csv(path, dtype={"ImageID": str})
    assert list(sub.columns) == ["ImageID", "ans"]
    assert sub.ImageID.tolist() == info.ImageID.tolist()  # one row per info row, in info.csv order
    assert sub.ans.dtype.kind == "i" and sub.ans.between(0, 17).all()
    assert all(line.split(",")[1].isdigit() for line in path.read_text().splitlines()[1:])  # "3", not "3.0"
    return sub


def test_run_folder_ensemble_writes_the_submission(run, twin, tmp_path):
    out = tmp_path / "sub" / "submission.csv"
    p = predict_cli(run, "--eval", twin, "--out", out)  # --eval: the folder holding eval/
    assert p.returncode == 0, p.stderr[-3000:]
    sub = check_submission(out, twin)
    assert "3 model(s)" in p.stderr and "fold2.pkl" in p.stderr
    # answers.csv beside info.csv: the submission is scored, and matches the run's soft-vote holdout
    from fastmask.metrics import scores
    ans = pd.read_csv(twin / "eval" / "answers.csv", dtype={"ImageID": str})
    s = scores(ans.ans, sub.ans)
    assert f"macro F1 {s['macro_f1']:.4f}, accuracy {s['accuracy']:.4f}" in p.stdout
    import json
    assert json.loads((run / "metrics.json").read_text())["holdout_macro_f1"] == pytest.approx(s["macro_f1"], abs=1e-3)


def test_hard_weighted_tta_vote_on_the_eval_folder(run, twin, tmp_path):
    out = tmp_path / "hard.csv"
    p = predict_cli(run / "fold0.pkl", run / "fold1.pkl", "--eval", twin / "eval", "--tta", 2,
                    "--weights", "2,1", "--vote", "hard", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    check_submission(out, twin)
    assert "hard vote of 2 model(s), TTA 2" in p.stdout


def make_other_vocab(src, dst):
    """An exported learner whose class vocabulary is the code reversed."""
    from fastai.data.transforms import CategoryMap
    from fastmask.infer import load
    learn = load(src)
    learn.dls.valid_ds.tls[1].tfms.fs[-1].vocab = CategoryMap(list(range(17, -1, -1)), sort=False)
    learn.export(dst)


def predict_in_process(args, capsys, monkeypatch):
    """(exit status, stderr lines) of the CLI run in this process (no second fastai import)."""
    import warnings
    from fastmask.errors import cli
    from fastmask.predict import main
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # cli() rebinds it
    with warnings.catch_warnings(), pytest.raises(SystemExit) as e:
        cli(main)(list(map(str, args)))
    return e.value.code, capsys.readouterr().err.strip().splitlines()


def test_mixed_vocabularies_refused_exit_2_with_one_line(run, twin, tmp_path):
    bad, out = tmp_path / "other_code.pkl", tmp_path / "submission.csv"
    make_other_vocab(run / "fold1.pkl", bad)
    p = predict_cli(run / "fold0.pkl", bad, "--eval", twin, "--out", out)
    assert p.returncode == 2, p.stderr[-3000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "class vocabulary differs" in lines[0] and str(bad) in lines[0], p.stderr[-2000:]
    assert not out.exists()


@pytest.mark.parametrize("case", ["dict_pkl", "text_pkl", "empty_run_dir", "bad_weights", "negative_tta"])
def test_refusals_exit_2_with_one_line(case, run, twin, tmp_path, capsys, monkeypatch):
    out = tmp_path / "submission.csv"
    out.write_text("old\n")
    bad = tmp_path / "bad.pkl"
    args, extra = [run / "fold0.pkl", bad], []
    if case == "dict_pkl":
        bad.write_bytes(pickle.dumps({"weights": [1, 2]}))
        want = "not a fastai learner export"
    elif case == "text_pkl":
        bad.write_text("not a pickle at all\n")
        want = "not a fastai learner export"
    elif case == "empty_run_dir":
        bad = tmp_path / "empty_run"
        bad.mkdir()
        args, want = [run, bad], "no model.pkl or fold*.pkl"
    elif case == "bad_weights":
        args, extra, want = [run], ["--weights", "1,1"], "--weights: 2 weight(s) for 1 model source(s)"
    else:
        args, extra, want = [run], ["--tta", "-1"], "--tta: -1 is negative"
    code, lines = predict_in_process([*args, "--eval", twin, "--out", out, *extra], capsys, monkeypatch)
    assert code == 2 and len(lines) == 1 and want in lines[0], lines
    if case in ("dict_pkl", "text_pkl", "empty_run_dir"):
        assert str(bad) in lines[0]
    assert out.read_text() == "old\n"  # an existing file is left alone


def test_eval_folder_must_hold_info_csv(run, tmp_path):
    p = predict_cli(run, "--eval", tmp_path, "--out", tmp_path / "s.csv")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "info.csv" in p.stderr


def test_submission_write_is_atomic(tmp_path):
    from fastmask.infer import write_submission
    out = tmp_path / "s.csv"
    write_submission(["a", "b"], np.array([3, 17]), out)
    assert out.read_text() == "ImageID,ans\na,3\nb,17\n"
    with pytest.raises(ValueError):
        write_submission(["a", "b"], np.array([3, 18]), out)  # refused before anything is written
    assert out.read_text() == "ImageID,ans\na,3\nb,17\n" and [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def test_ctrl_c_during_the_write_leaves_the_old_file(tmp_path, monkeypatch):
    import fastmask.record
    from fastmask.infer import write_submission
    out = tmp_path / "s.csv"
    out.write_text("old\n")

    def interrupted(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(fastmask.record.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_submission(["a"], np.array([1]), out)
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["s.csv"]

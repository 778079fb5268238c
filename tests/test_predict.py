"""python -m fastmask.predict: the submission contract, ensembles from run folders, models opened
without unpickling (a pickle only with --trust-pickle), and one-line refusals."""
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import in_process
from test_kfold import kfold_run


def predict_cli(*args):
    return in_process("predict", *args)


@pytest.fixture(scope="module")
def run(twin, tmp_path_factory):
    return kfold_run(twin, tmp_path_factory)[0]


def check_submission(path, twin):
    info = pd.read_csv(twin / "eval" / "info.csv", dtype=str)
    assert info.ImageID.tolist() != sorted(info.ImageID)  # as the real one: a sorted submission must fail
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
    assert "3 model(s)" in p.stderr and "fold2.safetensors" in p.stderr and ".pkl" not in p.stderr
    # answers.csv beside info.csv: the submission is scored (answers paired by ImageID, not by
    # position), and matches the run's soft-vote holdout
    from fastmask.learn.metrics import scores
    ans = pd.read_csv(twin / "eval" / "answers.csv", dtype={"ImageID": str})
    both = sub.merge(ans, on="ImageID", suffixes=("", "_true"), validate="one_to_one")
    s = scores(both.ans_true, both.ans)
    assert f"macro F1 {s['macro_f1']:.4f}, accuracy {s['accuracy']:.4f}" in p.stdout
    import json
    assert json.loads((run / "metrics.json").read_text())["holdout_macro_f1"] == pytest.approx(s["macro_f1"], abs=1e-3)


def test_hard_weighted_tta_vote_on_the_eval_folder(run, twin, tmp_path):
    out = tmp_path / "hard.csv"
    p = predict_cli(run / "fold0.safetensors", run / "fold1.json", "--eval", twin / "eval", "--tta", 2,
                    "--weights", "2,1", "--vote", "hard", "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    check_submission(out, twin)
    assert "hard vote of 2 model(s), TTA 2" in p.stdout


def make_other_vocab(src, dst):
    """A model file pair (dst.json, dst.safetensors) whose class vocabulary is the code reversed."""
    import json
    shutil.copyfile(src.with_suffix(".safetensors"), dst.with_suffix(".safetensors"))
    spec = json.loads(src.with_suffix(".json").read_text())
    dst.with_suffix(".json").write_text(json.dumps({**spec, "vocab": list(range(17, -1, -1))}))


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
    bad, out = tmp_path / "other_code.safetensors", tmp_path / "submission.csv"
    make_other_vocab(run / "fold1.json", bad)
    p = predict_cli(run / "fold0.safetensors", bad, "--eval", twin, "--out", out)
    assert p.returncode == 2, p.stderr[-3000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "class vocabulary differs" in lines[0] and str(bad) in lines[0], p.stderr[-2000:]
    assert not out.exists()


@pytest.mark.parametrize("case", ["dict_pkl", "text_pkl", "untrusted_pkl", "other_json", "empty_run_dir",
                                  "bad_weights", "negative_tta"])
def test_refusals_exit_2_with_one_line(case, run, twin, tmp_path, capsys, monkeypatch):
    out = tmp_path / "submission.csv"
    out.write_text("old\n")
    bad = tmp_path / "bad.pkl"
    args, extra = [run / "fold0.safetensors", bad], []
    if case == "dict_pkl":  # trusted, and still checked
        bad.write_bytes(pickle.dumps({"weights": [1, 2]}))
        extra, want = ["--trust-pickle"], "not a fastai learner export"
    elif case == "text_pkl":
        bad.write_text("not a pickle at all\n")
        extra, want = ["--trust-pickle"], "not a fastai learner export"
    elif case == "untrusted_pkl":
        shutil.copyfile(run / "fold1.pkl", bad)
        want = "pass --trust-pickle for files you trust"
    elif case == "other_json":
        bad = run / "metrics.json"
        args, want = [bad], "not a fastmask model file"
    elif case == "empty_run_dir":
        bad = tmp_path / "empty_run"
        bad.mkdir()
        args, want = [run, bad], "no model.safetensors, fold*.safetensors, model.pkl or fold*.pkl"
    elif case == "bad_weights":
        args, extra, want = [run], ["--weights", "1,1"], "--weights: 2 weight(s) for 1 model source(s)"
    else:
        args, extra, want = [run], ["--tta", "-1"], "--tta: -1 is negative"
    code, lines = predict_in_process([*args, "--eval", twin, "--out", out, *extra], capsys, monkeypatch)
    assert code == 2 and len(lines) == 1 and want in lines[0], lines
    if case in ("dict_pkl", "text_pkl", "untrusted_pkl", "other_json", "empty_run_dir"):
        assert str(bad) in lines[0]
    assert out.read_text() == "old\n"  # an existing file is left alone


def test_eval_folder_must_hold_info_csv(run, tmp_path):
    p = predict_cli(run, "--eval", tmp_path, "--out", tmp_path / "s.csv")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "info.csv" in p.stderr


def test_submission_write_is_atomic(tmp_path):
    from fastmask.models.infer import write_submission
    out = tmp_path / "s.csv"
    write_submission(["a", "b"], np.array([3, 17]), out)
    assert out.read_text() == "ImageID,ans\na,3\nb,17\n"
    with pytest.raises(ValueError):
        write_submission(["a", "b"], np.array([3, 18]), out)  # refused before anything is written
    assert out.read_text() == "ImageID,ans\na,3\nb,17\n" and [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def test_ctrl_c_during_the_write_leaves_the_old_file(tmp_path, monkeypatch):
    import fastmask.store.folder
    from fastmask.models.infer import write_submission
    out = tmp_path / "s.csv"
    out.write_text("old\n")

    def interrupted(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(fastmask.store.folder.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_submission(["a"], np.array([1]), out)
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def cli_in_process(args, capsys, monkeypatch):
    """(exit status, stdout, stderr) of the CLI run in this process, success included."""
    import warnings

    from fastmask.errors import cli
    from fastmask.predict import main
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # cli() rebinds it
    with warnings.catch_warnings():
        try:
            code = cli(main)(list(map(str, args)))
        except SystemExit as e:
            code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def copy_models(run, dst, suffixes):
    dst.mkdir()
    for f in run.glob("fold*"):
        if f.suffix in suffixes:
            shutil.copyfile(f, dst / f.name)
    return dst


def poison_unpickling(monkeypatch):
    """From here on, anything that unpickles fails the test."""
    import fastai.learner
    import torch

    def refuse(*a, **k):
        raise AssertionError("a model was unpickled")

    class Refused(pickle.Unpickler):
        def __init__(self, *a, **k):
            refuse()

    for owner, name, bad in [(pickle, "load", refuse), (pickle, "loads", refuse), (pickle, "Unpickler", Refused),
                             (torch, "load", refuse), (fastai.learner, "load_learner", refuse)]:
        monkeypatch.setattr(owner, name, bad)


def test_run_folder_predicts_from_safetensors_and_never_unpickles(run, twin, tmp_path, capsys, monkeypatch):
    """A run folder holding no pickle at all predicts, with every unpickler poisoned; its submission is the
    one the fold pickles give with --trust-pickle (and those need the flag)."""
    safe = copy_models(run, tmp_path / "safe_run", {".safetensors", ".json"})
    pickles = copy_models(run, tmp_path / "pickle_run", {".pkl"})
    with monkeypatch.context() as m:
        poison_unpickling(m)
        code, out, err = cli_in_process([safe, "--eval", twin, "--out", tmp_path / "safe.csv"], capsys, m)
    assert code == 0, err[-2000:]
    assert "3 model(s)" in err and "fold0.safetensors" in err
    code, _, err = cli_in_process([pickles, "--eval", twin, "--out", tmp_path / "refused.csv"], capsys, monkeypatch)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "holds only pickled models" in err
    assert "--trust-pickle" in err and not (tmp_path / "refused.csv").exists()
    code, _, err = cli_in_process([pickles, "--eval", twin, "--out", tmp_path / "trusted.csv", "--trust-pickle"],
                                  capsys, monkeypatch)
    assert code == 0, err[-2000:]
    assert "fold0.pkl" in err
    assert (tmp_path / "safe.csv").read_text() == (tmp_path / "trusted.csv").read_text()


class Evil:
    """A pickle that creates `marker` when it is opened (any shell command would run the same way)."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.parametrize("how", ["pickle.dump", "torch.save", "run_folder", "as_safetensors"])
def test_a_malicious_pickle_is_not_run(how, twin, tmp_path, capsys, monkeypatch):
    import hashlib
    import json

    import torch

    from fastmask.models.model_files import FORMAT, VERSION
    marker, out = tmp_path / "pwned", tmp_path / "submission.csv"
    evil = pickle.dumps(Evil(marker))
    model = tmp_path / "evil.pkl"
    if how == "pickle.dump":
        model.write_bytes(evil)
    elif how == "torch.save":
        model = tmp_path / "evil.pt"
        torch.save(Evil(marker), model)
    elif how == "run_folder":
        model = tmp_path / "run"
        model.mkdir()
        (model / "model.pkl").write_bytes(evil)
    else:  # a pickle posing as weights, with a description that vouches for its bytes
        model = tmp_path / "evil.safetensors"
        model.write_bytes(evil)
        (tmp_path / "evil.json").write_text(json.dumps({
            "format": FORMAT, "version": VERSION, "recipe": {"arch": "test_resnet"}, "vocab": list(range(18)),
            "size": [32, 24], "crop": None, "normalize": {"mean": [0.5] * 3, "std": [0.25] * 3}, "augment": None,
            "weights_sha256": hashlib.sha256(evil).hexdigest()}))
    code, _, err = cli_in_process([model, "--eval", twin, "--out", out], capsys, monkeypatch)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not marker.exists(), "the pickle's code ran"
    assert not out.exists()
    if how in ("pickle.dump", "torch.save"):
        assert "pass --trust-pickle for files you trust" in err and str(model) in err
        # the file is what it claims: trusting it runs its code (which is what the flag is for)
        code, _, err = cli_in_process([model, "--eval", twin, "--out", out, "--trust-pickle"], capsys, monkeypatch)
        assert code == 2 and "not a fastai learner export" in err and marker.exists()


@pytest.mark.parametrize("case", ["out_is_a_folder", "folder_is_a_file"])
def test_a_bad_out_fails_before_any_work_naming_it(case, twin, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if case == "out_is_a_folder":
        Path("subs").mkdir()
        given = "subs"
    else:
        Path("notes.txt").write_text("x\n")
        given = "notes.txt/sub.csv"
    # the model does not exist either: --out is the first thing checked
    code, _, err = cli_in_process(["nowhere.safetensors", "--eval", twin, "--out", given], capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"fastmask: error: --out {given}:"), lines
    assert ".tmp" not in lines[0] and "/." not in lines[0]


def test_a_failed_write_names_the_out_file_and_leaves_no_temp(tmp_path, monkeypatch):
    import errno

    import fastmask.store.folder
    from fastmask.errors import FastmaskError
    from fastmask.models.infer import write_submission

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", src)

    monkeypatch.setattr(fastmask.store.folder.os, "replace", full)
    with pytest.raises(FastmaskError, match=r"^--out .*s\.csv: No space left on device$"):
        write_submission(["a"], np.array([1]), tmp_path / "s.csv")
    assert list(tmp_path.iterdir()) == []

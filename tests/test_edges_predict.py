"""predict never writes over what it reads (issue 21): `--out` on a model file, a file of a run folder or a
file of the eval folder exits 2 naming both paths and leaves the file as it was; `--bs 0` is refused. The
check runs before any model is opened, so the model files here only need to exist."""
import json
import shutil

import pytest

from fastmask.errors import FastmaskError
from fastmask.models.infer import check_out_reads

from test_predict import cli_in_process


@pytest.fixture
def place(twin, tmp_path):
    """A copy of the eval folder, a loose model pair, and a run folder holding one."""
    ev = tmp_path / "eval"
    shutil.copytree(twin / "eval", ev)
    loose = tmp_path / "models"
    loose.mkdir()
    for n in ("mine.safetensors", "mine.json", "mine.pkl"):
        (loose / n).write_text("model\n")
    run = tmp_path / "runs" / "20240101-000000-person_split"
    run.mkdir(parents=True)
    for n in ("model.safetensors", "model.json", "metrics.json", "config.json", "recipe.py"):
        (run / n).write_text("{}\n")
    (run / "status.json").write_text(json.dumps({"status": "finished"}))
    other = tmp_path / "runs" / "20240102-000000-other"
    other.mkdir()
    (other / "status.json").write_text(json.dumps({"status": "finished"}))
    return ev, loose, run, other


@pytest.mark.parametrize("case", ["model_json", "model_pkl", "model_itself", "info_csv", "answers_csv",
                                  "new_file_in_eval_images", "run_metrics", "run_folder_new_file",
                                  "other_run_folder", "symlink_to_info"])
def test_out_on_an_input_is_refused_naming_both(case, place, tmp_path, capsys, monkeypatch):
    ev, loose, run, other = place
    model = loose / "mine.safetensors"
    out, hit = {
        "model_json": (loose / "mine.json", loose / "mine.json"),
        "model_pkl": (loose / "mine.pkl", loose / "mine.pkl"),
        "model_itself": (model, model),
        "info_csv": (ev / "info.csv", ev),
        "answers_csv": (ev / "answers.csv", ev),
        "new_file_in_eval_images": (ev / "images" / "sub.csv", ev),
        "run_metrics": (run / "metrics.json", run),
        "run_folder_new_file": (run / "submission.csv", run),
        "other_run_folder": (other / "submission.csv", other),
        "symlink_to_info": (tmp_path / "link.csv", ev),
    }[case]
    if case == "symlink_to_info":
        out.symlink_to(ev / "info.csv")
    sources = [run] if case.startswith("run_") else [model]
    before = out.read_bytes() if out.exists() else None
    code, _, err = cli_in_process([*sources, "--eval", ev, "--out", out], capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"fastmask: error: --out {out}: would overwrite ") and str(hit) in lines[0]
    assert (out.read_bytes() if out.exists() else None) == before


def test_out_beside_the_inputs_is_allowed(place, tmp_path):
    ev, loose, run, _ = place
    for out in (tmp_path / "submission.csv", loose / "submission.csv", tmp_path / "runs" / "sub.csv"):
        check_out_reads(out, [loose / "mine.safetensors", run], ev)
    with pytest.raises(FastmaskError, match="the model file"):
        check_out_reads(loose / "mine.json", [loose / "mine.safetensors"], ev)


@pytest.mark.parametrize("bs", ["0", "-3"])
def test_bs_below_one_is_refused(bs, place, capsys, monkeypatch):
    ev, loose, _, _ = place
    code, _, err = cli_in_process([loose / "mine.safetensors", "--eval", ev, "--bs", bs, "--out", "x.csv"],
                                  capsys, monkeypatch)
    assert code == 2 and err.strip() == f"fastmask: error: --bs: {bs} is not a batch size (an int >= 1)"

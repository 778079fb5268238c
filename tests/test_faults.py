"""Bad input and faults in the pieces below the CLI: each ends in FastmaskError with one line."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastmask.errors import FastmaskError
from fastmask.io import atomic_write
from fastmask.recipe import Recipe, load_recipe, parse_sets
from fastmask.store.folder import Run

REPO = Path(__file__).resolve().parent.parent


def test_two_runs_in_one_second_get_two_folders(tmp_path):
    r = Recipe()
    r.name = "same"
    a, b = Run(tmp_path, r), Run(tmp_path, r)
    assert a.dir != b.dir and a.dir.exists() and b.dir.exists()


def test_a_runs_path_through_dot_dot_is_printed_and_kept_normalised(tmp_path, monkeypatch):
    (tmp_path / "proj").mkdir()
    monkeypatch.chdir(tmp_path)
    r = Recipe()
    r.name = "n"
    run = Run("proj/../runs", r)
    try:
        assert run.dir.parent == tmp_path / "runs" and ".." not in run.dir.parts
    finally:
        run.mark("finished")


def test_unwritable_runs_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the runs folder should be: fails for root too
    with pytest.raises(FastmaskError, match="runs folder"):
        Run(blocker / "runs", Recipe())


def test_disk_full_leaves_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write(target, "old")
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd, mode):
            self.f = real_fdopen(fd, mode)
        def __enter__(self):
            return self
        def __exit__(self, *a):
            self.f.close()
        def write(self, data):
            self.f.write(data[:3])  # part of it lands, then the disk is full
            raise OSError(28, "No space left on device")
    monkeypatch.setattr("fastmask.io.os.fdopen", Full)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, "new content")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_pretrained_offline_fails_fast_and_says_how():
    code = ("from fastmask.model import resolve_weights\n"
            "resolve_weights('resnet18', True)\n")
    t = time.time()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=60)
    assert p.returncode != 0 and "--set pretrained=/path/to/resnet18" in p.stderr
    # import of torch/timm dominates; the weight look-up itself must not retry the hub for ~45 s
    assert time.time() - t < 20


def test_pretrained_auto_falls_back_with_a_notice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from fastmask.learn.model import resolve_weights
    t = time.time()
    weights, notice = resolve_weights("test_resnet", "auto")
    assert weights is None and "training from scratch" in notice and time.time() - t < 2


def test_local_weights_file_is_used(tmp_path, twin):
    import timm
    import torch
    f = tmp_path / "w.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), f)
    from fastmask.data.dls import build_dls
    from fastmask.data.load import load_data
    from fastmask.learn.build import build_learner
    r = load_recipe(REPO / "recipes" / "person_split.py", parse_sets(["arch=test_resnet", "size=32,24",
                                                                     f"pretrained={f}"]))
    learn = build_learner(r, build_dls(r, load_data(twin).train), notify=lambda m: None)
    body = learn.model[0].model
    ref = torch.load(f)
    assert torch.equal(body.state_dict()["conv1.0.weight"], ref["conv1.0.weight"])
    with pytest.raises(FastmaskError, match="weights file .* not found"):
        build_learner(r.but(pretrained=str(tmp_path / "none.pth")), learn.dls)


def test_nan_loss_names_epoch_and_lr(twin):
    from fastmask.data.dls import build_dls
    from fastmask.data.load import load_data
    from fastmask.learn.build import build_learner, fit
    r = load_recipe(REPO / "recipes" / "person_split.py",
                    parse_sets(["arch=test_resnet", "size=32,24", "epochs=1", "pretrained=false", "lr=1e30"]))
    learn = build_learner(r, build_dls(r, load_data(twin).train), notify=lambda m: None)
    learn.path = Path(twin).parent
    with pytest.raises(FastmaskError, match=r"at epoch 1, batch \d+ .*learning rate is likely too high"):
        fit(r, learn)


@pytest.mark.parametrize("code, text", [(28, "No space left on device"), (27, "File too large")])  # ENOSPC, EFBIG
def test_cli_turns_a_full_disk_into_one_line(capsys, code, text):
    from fastmask.errors import cli

    def main(argv):
        raise OSError(code, text, "/runs/x/model.pkl")
    with pytest.raises(SystemExit) as e:
        cli(main)([])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == f"fastmask: error: /runs/x/model.pkl: {text}"


def test_ctrl_c_keeps_best_epoch_card_and_model(twin, tmp_path):
    """Ctrl-C in epoch 2 of a CutMix run: the folder is marked interrupted and keeps epoch 1's model,
    its card and metrics; the exported learner loads and outputs probabilities (the loss restored)."""
    import json
    import signal

    import torch
    from fastai.callback.core import Callback
    from fastai.learner import load_learner

    from fastmask.data.load import load_data
    from fastmask.runs.session import train_and_record

    class CtrlC(Callback):
        def after_batch(self):
            if self.epoch == 1 and self.iter == 0:
                os.kill(os.getpid(), signal.SIGINT)

    r = load_recipe(REPO / "recipes" / "cutmix_halves.py",
                    parse_sets(["arch=test_resnet", "size=32,24", "epochs=3", "bs=16", "pretrained=false"]))
    with pytest.raises(KeyboardInterrupt):
        train_and_record(r, load_data(twin), tmp_path / "runs", cbs=[CtrlC()])
    d = next((tmp_path / "runs").iterdir())
    assert json.loads((d / "status.json").read_text())["status"] == "interrupted"
    for f in ("card.md", "metrics.json", "model.pkl", "valid_preds.csv"):
        assert (d / f).is_file(), f
    assert len(__import__("pandas").read_csv(d / "history.csv")) == 1  # epoch 1 finished, epoch 2 cut
    learn = load_learner(d / "model.pkl")
    probs, _ = learn.get_preds(dl=learn.dls.test_dl([str(p) for p in load_data(twin).eval.path[:3]]))
    assert torch.allclose(probs.sum(1), torch.ones(3), atol=1e-4)
    assert "interrupted" in (d / "card.md").read_text()


def test_weights_are_found_once_per_process_not_per_learner(monkeypatch):
    """A k-fold run or a search builds many learners: the network probe and the cache search run once."""
    import fastmask.learn.model as model
    probes = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(model, "_RESOLVED", {})
    monkeypatch.setattr(model, "_online", lambda: probes.append(1) or False)
    monkeypatch.setattr(model, "_cached_file", lambda arch, offline: None)
    for _ in range(3):
        weights, notice = model.resolve_weights("test_resnet", "auto")
    assert (weights, len(probes)) == (None, 1) and "from scratch" in notice
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # another setting is another answer
    model.resolve_weights("test_resnet", "auto")
    assert len(probes) == 1  # offline by the variable: no probe at all


def test_a_weights_file_is_opened_once_until_it_changes(tmp_path, monkeypatch):
    import torch

    import fastmask.learn.build as build
    f = tmp_path / "w.pth"
    torch.save({"w": torch.zeros(2)}, f)
    opened, real = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: opened.append(1) or real(*a, **k))
    monkeypatch.setattr(build, "_CHECKED", set())
    build.check_weights_file(f)
    build.check_weights_file(f)
    assert len(opened) == 1
    torch.save({"w": torch.zeros(3)}, f)  # rewritten: opened again
    build.check_weights_file(f)
    assert len(opened) == 2


def _file_size_limit(limit):
    """preexec_fn: the process may write no file past `limit` bytes (`ulimit -f`), and a write past it fails
    with EFBIG instead of the process being killed by SIGXFSZ (as under a shell that ignores it)."""
    import resource
    import signal

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limited


def test_the_file_size_limit_hit_while_exporting_is_one_line_and_a_failed_status_saying_why(twin, tmp_path):
    """The tiny model's weights (~1.9 MB) do not fit under a 1 MB limit; the pixel cache (32x24, under 1 MB),
    config, history and status do."""
    from conftest import TINY
    runs = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-m", "fastmask.run", "recipes/baseline.py", *TINY, "--data", str(twin),
                        "--runs", str(runs)], cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "FASTMASK_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"},
                       preexec_fn=_file_size_limit(1_000_000))
    (d,) = runs.iterdir()
    reason = (f"{d / 'model'}.*: exporting the model: File too large (the file-size limit, ulimit -f, is below the "
              "model's size)")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.stderr.splitlines()[-1] == f"fastmask: error: {reason}" and p.stderr.count("fastmask: error") == 1
    st = json.loads((d / "status.json").read_text())
    assert (st["status"], st["error"]) == ("failed", reason)

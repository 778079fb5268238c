"""Beyond one process: the rank guard (only rank 0 writes), the single-process path with and without
accelerate, `accelerate launch` with one process, and two processes for real (gloo on CPU: the code path
of several GPUs, fastai's DistributedDL and DDP included)."""
import subprocess
import sys
from pathlib import Path

import pytest

from fastmask.errors import FastmaskError
from fastmask.learn import distributed

from conftest import TINY

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def alone(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_rank_and_world_from_the_environment(alone):
    assert (distributed.rank(), distributed.world_size(), distributed.is_main(), distributed.is_distributed()) == \
        (0, 1, True, False)
    assert distributed.share("x") == "x"
    with distributed.context(object()) as learn:  # a no-op alone: no accelerate, no fastai.distributed
        assert learn is not None
    alone.setenv("RANK", "1")
    alone.setenv("WORLD_SIZE", "2")
    assert (distributed.rank(), distributed.world_size(), distributed.is_main(), distributed.is_distributed()) == \
        (1, 2, False, True)


def test_several_processes_need_accelerate_a_fixed_lr_and_a_gpu_each(alone):
    alone.setenv("WORLD_SIZE", "2")
    alone.setitem(sys.modules, "accelerate", None)  # as if not installed
    with pytest.raises(FastmaskError, match="needs accelerate"):
        distributed.setup()
    alone.delitem(sys.modules, "accelerate")
    pytest.importorskip("accelerate")
    from fastmask.recipe import Recipe
    with pytest.raises(FastmaskError, match="lr: 'find'"):
        distributed.setup(Recipe(lr="find"))
    import torch
    alone.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine with one GPU, two processes
    alone.setattr(torch.cuda, "device_count", lambda: 1)
    alone.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(FastmaskError, match="1 CUDA GPU"):
        distributed.setup()


@pytest.fixture(scope="module")
def rank0_run(twin, tmp_path_factory):
    """One run trained and recorded single-process, with accelerate made unimportable."""
    mp = pytest.MonkeyPatch()
    try:
        for k in ("RANK", "WORLD_SIZE"):
            mp.delenv(k, raising=False)
        mp.setitem(sys.modules, "accelerate", None)
        from fastmask.data.load import load_data
        from fastmask.recipe import load_recipe, parse_sets
        from fastmask.runs.session import train_and_record
        sets = parse_sets(TINY[1::2])
        r = load_recipe(REPO / "recipes" / "person_split.py", sets)
        runs = tmp_path_factory.mktemp("runs")
        data = load_data(twin)
        d = train_and_record(r, data, runs, overrides=sets).dir
    finally:
        mp.undo()
    return r, data, runs, d, sets


def test_single_process_trains_and_records_without_accelerate(rank0_run):
    r, data, runs, d, sets = rank0_run
    import json
    assert json.loads((d / "status.json").read_text())["status"] == "finished"
    for f in ("config.json", "history.csv", "metrics.json", "card.md", "model.pkl"):
        assert (d / f).is_file(), f
    assert not (d / "models").exists()  # the best epoch is kept in memory: no second copy of the weights


def snapshot(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_other_ranks_train_but_write_nothing(rank0_run, monkeypatch):
    """A rank > 0 (RANK=1; WORLD_SIZE stays 1 so fastai does not gather across a process group that
    does not exist here) trains in rank 0's folder and leaves every file as it was."""
    r, data, runs, d, sets = rank0_run
    before = snapshot(runs)
    monkeypatch.setenv("RANK", "1")
    from fastmask.runs import session
    from fastmask.runs.session import train_and_record
    monkeypatch.setattr(session, "share", lambda obj: d)  # rank 0's broadcast of its run folder
    fits = []
    from fastai.callback.core import Callback

    class Count(Callback):
        def after_fit(self):
            fits.append(self.epoch)

    assert train_and_record(r, data, runs, overrides=sets, cbs=[Count()]) is None
    assert fits == [0]  # it did train
    assert snapshot(runs) == before


def test_accelerate_launch_one_process(twin, tmp_path):
    pytest.importorskip("accelerate")
    import os
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                        "-m", "fastmask.run", "recipes/person_split.py", "--no-parent", *TINY, "--data", str(twin),
                        "--runs", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    (d,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert (d / "model.pkl").is_file() and '"finished"' in (d / "status.json").read_text()


def launch(n, twin, runs, *extra):
    import os
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(k, None)
    # --multi_gpu is accelerate's torchrun path: without it accelerate starts one process on a machine
    # without CUDA (several CPU processes need MPI there); fastmask joins the processes over gloo
    return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                           str(n), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", "0", "-m", "fastmask.run", "recipes/person_split.py", *TINY,
                           *extra, "--data", str(twin), "--runs", str(runs)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)


def keys(obj):
    """The structure of a JSON value: its keys, recursively, without the figures."""
    if isinstance(obj, dict):
        return {k: keys(v) for k, v in obj.items()}
    return type(obj).__name__ if not isinstance(obj, (int, float)) or isinstance(obj, bool) else "number"


def test_two_processes_train_one_run_as_one_process_records_it(rank0_run, twin, tmp_path):
    """accelerate launch with 2 processes on CPU: one run folder, written by rank 0 alone, holding what a
    single-process run holds: the same files, config, JSON keys, history columns and epochs, and predictions
    for every validation and holdout image (gathered over both ranks, not one rank's half)."""
    import json
    pytest.importorskip("accelerate")
    r, data, runs, one, sets = rank0_run
    p = launch(2, twin, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    (two,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert p.stdout.count("run folder:") == 1 and p.stdout.count("precision:") == 1, p.stdout  # rank 0 speaks

    def files(d):
        return sorted(str(f.relative_to(d)) for f in d.rglob("*"))
    assert files(two) == files(one)
    c1, c2 = (json.loads((d / "config.json").read_text()) for d in (one, two))
    assert (c2.pop("environment")["processes"], c1.pop("environment")["processes"]) == (2, 1)
    assert c2 == c1
    for name in ("metrics.json", "status.json"):
        assert keys(json.loads((two / name).read_text())) == keys(json.loads((one / name).read_text())), name
    import pandas as pd
    h1, h2 = (pd.read_csv(d / "history.csv") for d in (one, two))
    assert list(h2.columns) == list(h1.columns) and len(h2) == len(h1)
    for name in ("valid_preds.csv", "holdout_preds.csv"):
        a, b = (pd.read_csv(d / name) for d in (one, two))
        assert list(b.columns) == list(a.columns)
        assert sorted(b.iloc[:, 0]) == sorted(a.iloc[:, 0]), name  # every image once, none padded twice
    headings = [[ln for ln in (d / "card.md").read_text().splitlines() if ln.startswith("#")] for d in (one, two)]
    assert headings[1] == headings[0]
    from fastai.learner import load_learner
    learn = load_learner(two / "model.pkl")
    assert not any("module." in k for k in learn.model.state_dict())  # the export holds the bare model


def test_a_refused_value_is_said_by_rank_0_alone(monkeypatch, capsys):
    from fastmask import errors

    def main(argv):
        raise FastmaskError("recipe field epochs: 'ten' is not a valid int >= 1")
    monkeypatch.setattr(errors, "RANK_WAIT_S", 0)
    for rank, said in (("1", ""), ("0", "fastmask: error: recipe field epochs: 'ten' is not a valid int >= 1\n")):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as e:
            errors.cli(main)([])
        assert e.value.code == 2 and capsys.readouterr().err == said  # every rank exits 2; one says why


def test_a_refused_value_under_torchrun_is_one_line_once(tmp_path):
    """`torchrun --nproc_per_node 2 -m fastmask.run ... --set epochs=ten`: one line, not one per rank (torchrun's
    own failure block follows: a rank exited non-zero)."""
    import os
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "fastmask.run",
                        "recipes/person_split.py", "--set", "epochs=ten", "--runs", str(tmp_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode != 0
    assert [x for x in p.stderr.splitlines() if x.startswith("fastmask:")] == [
        "fastmask: error: recipe field epochs: 'ten' is not a valid int >= 1"], p.stderr[-3000:]

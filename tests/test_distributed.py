"""Beyond one process: the rank guard (only rank 0 writes), the single-process path with and without
accelerate, and `accelerate launch` with one process. Several GPUs need CUDA: not tested here."""
import subprocess
import sys
from pathlib import Path

import pytest

from fastmask.learn import distributed
from fastmask.errors import FastmaskError

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


def test_several_processes_need_accelerate_and_cuda(alone):
    alone.setenv("WORLD_SIZE", "2")
    alone.setitem(sys.modules, "accelerate", None)  # as if not installed
    with pytest.raises(FastmaskError, match="needs accelerate"):
        distributed.setup()
    alone.delitem(sys.modules, "accelerate")
    pytest.importorskip("accelerate")
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(FastmaskError, match="needs CUDA"):
            distributed.setup()


@pytest.fixture(scope="module")
def rank0_run(twin, tmp_path_factory):
    """One run trained and recorded single-process, with accelerate made unimportable."""
    mp = pytest.MonkeyPatch()
    try:
        for k in ("RANK", "WORLD_SIZE"):
            mp.delenv(k, raising=False)
        mp.setitem(sys.modules, "accelerate", None)
        from fastmask.recipe import load_recipe, parse_sets
        from fastmask.runs.session import train_and_record
        from fastmask.data.load import load_data
        sets = parse_sets(TINY[1::2])
        r = load_recipe(REPO / "recipes" / "person_split.py", sets)
        runs = tmp_path_factory.mktemp("runs")
        data = load_data(twin)
        d = train_and_record(r, data, runs, overrides=sets)
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
                        "-m", "fastmask.run", "recipes/person_split.py", *TINY, "--data", str(twin),
                        "--runs", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    (d,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    assert (d / "model.pkl").is_file() and '"finished"' in (d / "status.json").read_text()

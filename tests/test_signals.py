"""The fault matrix for a run's record: every way a run can end leaves a status.json that is true, and
signals end it as Ctrl-C does. Signals are sent to a real `python -m fastmask.run` process whose
handlers start at the defaults (a CI shell may start children with SIGINT ignored)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastmask.data.load import load_data
from fastmask.recipe import load_recipe, parse_sets

from conftest import TINY, in_process

REPO = Path(__file__).resolve().parent.parent


def defaults():
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)


def start(args, runs):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "fastmask.run", *args, "--no-parent", "--runs", str(runs)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=defaults)


def wait_for(pred, timeout=300):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def status(d):
    return json.loads((d / "status.json").read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_training_marks_the_run_interrupted(twin, tmp_path, sig):
    runs = tmp_path / "runs"
    p = start(["recipes/person_split.py", *TINY, "--set", "epochs=40", "--set", "patience=none",
               "--data", str(twin)], runs)
    try:
        assert wait_for(lambda: any(runs.glob("*/history.csv")) and
                        len((next(runs.glob("*/history.csv"))).read_text().splitlines()) >= 2), "no epoch finished"
        p.send_signal(sig)
        out, err = p.communicate(timeout=300)
    finally:
        p.kill()
    assert p.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "fastmask: interrupted"
    (d,) = runs.iterdir()
    assert status(d)["status"] == "interrupted"
    assert (d / "model.pkl").is_file() and (d / "card.md").is_file()  # the best epoch so far is kept


@pytest.fixture
def tiny_recipe():
    return load_recipe(REPO / "recipes" / "person_split.py", parse_sets(TINY[1::2]))


def test_ctrl_c_right_after_the_export_is_interrupted_not_running(twin, tmp_path, tiny_recipe, monkeypatch):
    import fastmask.runs.session as run
    real = run.export

    def export_then_ctrl_c(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt
    monkeypatch.setattr(run, "export", export_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run.train_and_record(tiny_recipe, load_data(twin, progress=False), tmp_path / "runs")
    (d,) = (tmp_path / "runs").iterdir()
    assert status(d)["status"] == "interrupted"


@pytest.mark.parametrize("exc,want", [(KeyboardInterrupt, "interrupted"), (RuntimeError("disk gone"), "failed")])
def test_an_end_while_recording_is_recorded_truly(twin, tmp_path, tiny_recipe, monkeypatch, exc, want):
    import fastmask.runs.session as run

    def broken(*a, **k):
        raise exc
    monkeypatch.setattr(run, "record", broken)
    with pytest.raises(type(exc) if isinstance(exc, BaseException) else exc):
        run.train_and_record(tiny_recipe, load_data(twin, progress=False), tmp_path / "runs")
    (d,) = (tmp_path / "runs").iterdir()
    st = status(d)
    assert st["status"] == want
    if want == "failed":
        assert st["error"] == "RuntimeError: disk gone"


def test_a_first_epoch_error_shows_the_real_message(twin, tmp_path):
    """A truncated photo without the cache fails inside the first epoch: the run says which file, in
    one line, and status.json says failed with that error (not a history.csv parse error)."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(twin, data)
    victim = sorted((data / "train" / "images").glob("*/mask1.*"))[0]
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 3])
    p = subprocess.run([sys.executable, "-m", "fastmask.run", "recipes/person_split.py", "--no-parent", *TINY, "--set",
                        "cache=false", "--data", str(data),
                        "--runs", str(tmp_path / "runs")], cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 2, p.stderr[-2000:]
    assert p.stderr.count("\n") == 1 and victim.name in p.stderr and "EmptyDataError" not in p.stderr
    (d,) = (tmp_path / "runs").iterdir()
    st = status(d)
    assert st["status"] == "failed" and victim.name in st["error"]


@pytest.mark.parametrize("bad", ["lr=nan", "wd=nan", "lr=inf", "valid_pct=nan", "mixup=inf", "crop=nan",
                                 "loss=ce:nan,f1:0.5", "task_weights=1,nan,1"])
def test_non_finite_numbers_fail_at_set(bad, tmp_path):
    p = in_process("run", "recipes/person_split.py", "--set", bad, "--runs", tmp_path / "runs")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr[-2000:]
    assert f"recipe field {bad.split('=')[0]}" in p.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _signal_inside_a_finalizer():
    """SIGTERM arriving while a weakref callback runs (as the garbage collector runs them anywhere: the
    --decide loop's next seed hit one in WeakKeyDictionary's `remove`). Python drops an exception a finalizer
    raises, printing "Exception ignored in ... KeyboardInterrupt". Returns how many loop turns ran after."""
    import weakref

    class Thing:
        pass

    def callback(_):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs here, inside the callback
            pass
    thing = Thing()
    ref = weakref.ref(thing, callback)
    del thing  # the callback runs now
    turns = 0
    for _ in range(200):  # the interrupt must reach the command's own code
        time.sleep(0.005)
        turns += 1
    return turns, ref


@pytest.mark.parametrize("where", ["run", "session"])
def test_sigterm_inside_a_finalizer_is_just_the_interrupted_line(where):
    """Outside a run session (run.py's SIGTERM handler) and inside one (session.Signals, which counts signals:
    the interrupt delivered again is not a second signal, so not StopNow)."""
    from fastmask.errors import StopNow, cli
    from fastmask.run import terminate_as_interrupt
    from fastmask.runs.session import Signals

    from conftest import as_new_process
    seen = {}

    def main(argv):
        terminate_as_interrupt()
        if where == "run":
            seen["turns"] = _signal_inside_a_finalizer()[0]
            return 0
        with Signals() as s:
            try:
                seen["turns"] = _signal_inside_a_finalizer()[0]
            except KeyboardInterrupt as e:
                seen["hits"], seen["stop_now"] = s.hits, isinstance(e, StopNow)
                raise
        return 0
    with as_new_process() as (out, err):
        with pytest.raises(SystemExit) as e:
            cli(main)([])
    assert e.value.code == 130 and "turns" not in seen  # interrupted before the loop ran out
    assert err.getvalue() == "fastmask: interrupted\n"  # no "Exception ignored in ...", no traceback
    if where == "session":
        assert seen == {"hits": 1, "stop_now": False}

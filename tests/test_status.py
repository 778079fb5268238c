"""status.json cannot lie for long: pid, host and a heartbeat; "lost" for a running run that is not;
files written with the umask's mode."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rich.console import Console

from fastmask import io as files
from fastmask.board import board
from fastmask.recipe import Recipe
from fastmask.store import folder as record, index
from fastmask.store.folder import Run, effective_status, lost_reason

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fast_heartbeat(monkeypatch):
    monkeypatch.delenv("FASTMASK_HEARTBEAT_S", raising=False)
    monkeypatch.setattr(record, "HEARTBEAT_S", 0.05)
    return 0.05


def recipe(name="tiny"):
    r = Recipe()
    r.name = name
    return r


def dead_pid():
    """The pid of a process that has come and gone (reaped, so not even a zombie)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def iso(t):
    return t.isoformat(timespec="milliseconds")


def fake_run(runs, name, **status):
    d = Path(runs) / f"20260101T000000Z-{name}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"name": name, "parent": None}))
    (d / "status.json").write_text(json.dumps({"started": "2026-01-01T00:00:00+00:00", "minutes": 1.0, **status}))
    return d


def status_of(d):
    return json.loads((Path(d) / "status.json").read_text())


# --- what status.json carries -----------------------------------------------------------------------

def test_status_carries_pid_host_and_a_heartbeat_that_moves(tmp_path, fast_heartbeat):
    run = Run(tmp_path, recipe())
    try:
        first = status_of(run.dir)
        assert first["status"] == "running" and first["pid"] == os.getpid()
        assert first["host"] == socket.gethostname() and first["heartbeat_s"] == fast_heartbeat
        deadline = time.time() + 10
        while status_of(run.dir)["heartbeat"] == first["heartbeat"] and time.time() < deadline:
            time.sleep(0.02)
        later = status_of(run.dir)
        assert later["heartbeat"] > first["heartbeat"] and later["status"] == "running"
        assert effective_status(run.dir) == "running"  # our own process, beating
    finally:
        run.mark("finished")


def test_mark_keeps_extra_fields_through_heartbeats(tmp_path, fast_heartbeat):
    run = Run(tmp_path, recipe())
    run.mark("running", fold=1, folds=5)
    time.sleep(fast_heartbeat * 4)
    assert status_of(run.dir)["fold"] == 1
    run.mark("failed", error="ValueError: the real first error")
    st = status_of(run.dir)
    assert st["status"] == "failed" and st["error"] == "ValueError: the real first error" and "fold" not in st


# --- lost ---------------------------------------------------------------------------------------------

def test_dead_pid_on_this_host_is_lost_everywhere(tmp_path):
    runs = tmp_path / "runs"
    now = datetime.now(timezone.utc)
    d = fake_run(runs, "killed", status="running", pid=dead_pid(), host=socket.gethostname(),
                 heartbeat=iso(now), heartbeat_s=30)
    assert effective_status(d) == "lost" and "is gone" in lost_reason(status_of(d))
    # the board shows it lost, without writing
    console = Console(record=True, width=160)
    rows = board(runs, html_out=False, console=console)
    assert rows[0]["status"] == "lost" and "lost" in console.export_text()
    assert status_of(d)["status"] == "running"
    # a new run in the same folder writes it down, keeping what was there
    before = status_of(d)
    new = Run(runs, recipe("next"))
    new.mark("finished")
    after = status_of(d)
    assert after["status"] == "lost" and after["found_lost"] and "is gone" in after["lost_reason"]
    assert {**after, "status": "running"} == {**before, "found_lost": after["found_lost"],
                                              "lost_reason": after["lost_reason"]}
    assert status_of(new.dir)["status"] == "finished"


def test_stale_heartbeat_from_another_host_is_lost_and_a_fresh_one_is_not(tmp_path):
    now = datetime.now(timezone.utc)
    alive_here = os.getpid()  # another host's pid says nothing about this host's processes
    stale = {"status": "running", "pid": alive_here, "host": "elsewhere.invalid",
             "heartbeat": iso(now - timedelta(minutes=10)), "heartbeat_s": 30}
    fresh = {**stale, "heartbeat": iso(now - timedelta(seconds=20))}
    assert effective_status(stale) == "lost" and "no heartbeat for" in lost_reason(stale)
    assert effective_status(fresh) == "running"
    d = fake_run(tmp_path / "runs", "remote", **stale)
    Run(tmp_path / "runs", recipe()).mark("finished")
    assert status_of(d)["status"] == "lost"


def test_a_live_process_on_this_host_stays_running(tmp_path):
    st = {"status": "running", "pid": os.getpid(), "host": socket.gethostname(),
          "heartbeat": iso(datetime.now(timezone.utc)), "heartbeat_s": 30}
    assert effective_status(st) == "running" and lost_reason(st) is None


def test_a_status_from_before_heartbeats_is_taken_at_its_word():
    assert effective_status({"status": "running", "started": "2026-01-01T00:00:00+00:00"}) == "running"


def test_a_finished_run_is_never_lost(tmp_path):
    gone = dead_pid()
    old = iso(datetime.now(timezone.utc) - timedelta(days=3))
    d = fake_run(tmp_path / "runs", "done", status="finished", pid=gone, host=socket.gethostname(),
                 heartbeat=old, heartbeat_s=30)
    text = (d / "status.json").read_bytes()
    assert effective_status(d) == "finished"
    Run(tmp_path / "runs", recipe()).mark("finished")
    assert (d / "status.json").read_bytes() == text


def test_the_heartbeat_never_overwrites_a_final_status(tmp_path, fast_heartbeat, monkeypatch):
    """A beat caught mid-write on a slow disk while the run finishes."""
    run = Run(tmp_path, recipe())
    real, beat_seen = record.write_json, threading.Event()

    def slow_beat(path, obj):
        if threading.current_thread() is not threading.main_thread():
            beat_seen.set()
            time.sleep(fast_heartbeat * 4)
        real(path, obj)

    monkeypatch.setattr(record, "write_json", slow_beat)
    assert beat_seen.wait(10)
    run.mark("finished")
    assert_final_stays(run, fast_heartbeat)


def test_a_beat_waiting_for_the_final_mark_does_not_write_after_it(tmp_path, fast_heartbeat):
    """A beat that woke while the final status was being written (it waits on the run's lock)."""
    run = Run(tmp_path, recipe())
    with run._lock:  # the final mark, in progress on a slow disk
        time.sleep(fast_heartbeat * 4)  # the beat's timer fires now and it waits for the lock
        run.mark("finished")
    assert_final_stays(run, fast_heartbeat)


def assert_final_stays(run, period):
    final = (run.dir / "status.json").read_bytes()
    time.sleep(period * 8)
    assert (run.dir / "status.json").read_bytes() == final and json.loads(final)["status"] == "finished"
    assert not run._beat.is_alive()
    assert [p.name for p in run.dir.iterdir()] == ["status.json"]  # no temp file left behind


def test_a_heartbeat_that_cannot_write_does_not_stop_the_run(tmp_path, fast_heartbeat, monkeypatch):
    run = Run(tmp_path, recipe())
    real, fails = record.write_json, []

    def full_disk_once(path, obj):
        if threading.current_thread() is not threading.main_thread() and not fails:
            fails.append(1)
            raise OSError(28, "No space left on device")
        real(path, obj)

    monkeypatch.setattr(record, "write_json", full_disk_once)
    time.sleep(fast_heartbeat * 6)
    assert fails and run._beat.is_alive()
    run.mark("finished")


def test_run_as_context_manager_never_leaves_running(tmp_path, fast_heartbeat):
    with pytest.raises(ValueError):
        with Run(tmp_path, recipe("a")) as run:
            raise ValueError("loss became nan\nmore")
    assert status_of(run.dir)["status"] == "failed" and status_of(run.dir)["error"] == "ValueError: loss became nan"
    with pytest.raises(KeyboardInterrupt):
        with Run(tmp_path, recipe("b")) as run:
            raise KeyboardInterrupt
    assert status_of(run.dir)["status"] == "interrupted"


def test_killed_run_process_reads_lost(tmp_path):
    """A real process killed by SIGKILL mid-run: its status says running, the board says lost."""
    code = ("import sys, time\nfrom fastmask.recipe import Recipe\nfrom fastmask.record import Run\n"
            "r = Recipe(); r.name = 'victim'\nrun = Run(sys.argv[1], r)\nprint(run.dir, flush=True)\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=REPO,
                         env={**os.environ, "FASTMASK_HEARTBEAT_S": "0.1"})
    d = Path(p.stdout.readline().strip())
    assert effective_status(d) == "running"
    p.kill()
    if Path(f"/proc/{p.pid}").is_dir():  # killed but not yet reaped: a zombie still answers kill(pid, 0)
        deadline = time.time() + 10
        while not Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].startswith(" Z") and time.time() < deadline:
            time.sleep(0.01)
        assert effective_status(d) == "lost"
    p.wait()
    assert status_of(d)["status"] == "running" and effective_status(d) == "lost"


def test_bad_heartbeat_setting_is_one_clear_error(tmp_path, monkeypatch):
    from fastmask.errors import FastmaskError
    monkeypatch.setenv("FASTMASK_HEARTBEAT_S", "soon")
    with pytest.raises(FastmaskError, match="FASTMASK_HEARTBEAT_S"):
        Run(tmp_path, recipe())


# --- files respect the umask --------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_get_the_umask_mode(tmp_path, umask, mode):
    code = ("import os, sys\nos.umask(int(sys.argv[2], 8))\n"
            "from fastmask.io import atomic_write\nfrom fastmask.store.folder import write_json\n"
            "atomic_write(sys.argv[1] + '/a.txt', 'x')\nwrite_json(sys.argv[1] + '/b.json', {})\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path), oct(umask)], check=True, cwd=REPO)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == \
        {"a.txt": oct(mode), "b.json": oct(mode)}


def test_umask_is_read_without_changing_it():
    before = os.umask(0o027)
    try:
        assert files._read_umask() == 0o027 and os.umask(0o027) == 0o027
    finally:
        os.umask(before)


def test_readers_of_all_runs_skip_json_that_is_not_an_object(tmp_path):
    (tmp_path / "a.json").write_text("[]")
    (tmp_path / "b.json").write_text("3")
    assert record.read_json(tmp_path / "a.json", {}) == {} and record.read_json(tmp_path / "b.json") is None
    runs = tmp_path / "runs"
    for name, st, cfg in [("list", "[]", "{}"), ("num", '{"status": "finished"}', "3"),
                          ("good", '{"status": "finished"}', '{"name": "good"}')]:
        (runs / name).mkdir(parents=True)
        (runs / name / "status.json").write_text(st)
        (runs / name / "config.json").write_text(cfg)
    # one rule for every reader: a folder whose config.json is not an object is skipped, not half-read
    assert [e.dir.name for e in index.finished(runs)] == ["good"]
    assert [e.dir.name for e in index.finished(runs, name="good")] == ["good"]
    assert effective_status(runs / "list") == "?"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread signal masks from /proc")
def test_the_heartbeat_thread_never_takes_ctrl_c_or_sigterm(tmp_path, fast_heartbeat):
    """Else the kernel may hand SIGTERM to it while the main thread holds signals back for the final mark."""
    import signal
    run = Run(tmp_path, recipe())
    try:
        status = Path(f"/proc/self/task/{run._beat.native_id}/status").read_text()
        blocked = int(next(l for l in status.splitlines() if l.startswith("SigBlk:")).split()[1], 16)
        assert all(blocked >> (s - 1) & 1 for s in (signal.SIGINT, signal.SIGTERM))
        assert not signal.pthread_sigmask(signal.SIG_BLOCK, set())  # the main thread's mask is as it was
    finally:
        run.mark("finished")

"""A queue on Ray (`--ray ADDRESS`): each job a task on a real local Ray instance (2 CPUs), making the run
folders, statuses and end table the same queue makes on one machine; a failed parent fails only its own
children there too; Ctrl-C stops the running task's run once and cancels the waiting ones; a node that cannot
start the run fails that job saying why; SIGTERM still ends a queue joined to Ray as Ctrl-C does; without the
ray package --ray is one line. Each job's `python -m fastmask.run` imports torch and fastai: the tests are few."""
import json
import os
import signal
import subprocess
import sys

import pytest

from fastmask.runs.on_ray import NEEDS_RAY, OnRay
from fastmask.runs.queue import Job, drive

from conftest import in_process
from test_queue import check_interrupted, interrupt_a_queue, project, queue_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ray_address():
    """A real local Ray instance, started by this process (as `ray start --head` would be on a cluster's head)."""
    import ray
    term = signal.getsignal(signal.SIGTERM)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    signal.signal(signal.SIGTERM, term)  # ray.init's (exit at once) must not outlive this module in the worker
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def both(twin, tmp_path_factory, ray_address):
    """The same queue (a after its parent root; c after broken, a parent that fails) run once on this machine,
    one job at a time, and once on Ray by a separate `python -m fastmask.run` joining the instance by its
    address. One CPU thread a run on both, so the runs train alike."""
    here = project(tmp_path_factory.mktemp("local"))
    local = in_process("run", "recipes/a.py", "recipes/c.py", "--jobs", "1", "--cpus-per-run", "1",
                       "--data", twin, "--runs", "runs", cwd=here)
    there = project(tmp_path_factory.mktemp("ray"))
    on_ray = subprocess.run([sys.executable, "-m", "fastmask.run", "recipes/a.py", "recipes/c.py", "--ray", ray_address,
                             "--data", str(twin), "--runs", "runs"], cwd=there, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return (here, local), (there, on_ray)


def table(stdout):
    """The end table: {recipe: [role, status, minutes, verdict, run folder / why]}."""
    rows = [line.split("│")[1:-1] for line in stdout[stdout.rindex("queue"):].splitlines() if line.count("│") >= 7]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows if r[0].strip() not in ("recipe", "")}


def folders(runs):
    """{recipe: run folder} of a runs folder (one run each here)."""
    return {d.name.split("-", 1)[1]: d for d in runs.iterdir() if d.is_dir() and not d.name.startswith(".")}


def test_a_queue_on_ray_makes_the_runs_a_queue_on_one_machine_makes(both, ray_address):
    (here, local), (there, on_ray) = both
    assert local.returncode == 1 and on_ray.returncode == 1, on_ray.stdout[-3000:] + on_ray.stderr[-3000:]
    assert f"joined the Ray cluster at {ray_address}" in on_ray.stdout
    assert f"queue: 4 job(s), on Ray ({ray_address}, 2 CPUs, 0 GPUs): 1 CPU(s), 0 GPU(s) each" in on_ray.stdout
    plan = [x for x in on_ray.stdout.splitlines() if x.startswith("  root (parent): ")][0].split()
    assert os.path.isabs(plan[plan.index("--runs") + 1]) and os.path.isabs(plan[5])  # the same on every node
    mine, theirs = table(local.stdout), table(on_ray.stdout)
    assert list(mine) == list(theirs) == ["root", "a", "broken", "c"]
    for name in mine:  # role, status, verdict, and the run folder (its recipe) or why not
        same = [mine[name][i] for i in (0, 1, 3)], [theirs[name][i] for i in (0, 1, 3)]
        assert same[0] == same[1], (name, mine[name], theirs[name])
        assert mine[name][4].split("-", 1)[-1] == theirs[name][4].split("-", 1)[-1], (mine[name], theirs[name])
    a, b = folders(here / "runs"), folders(there / "runs")
    assert sorted(a) == sorted(b) == ["a", "root"]
    for name, d in b.items():  # each run folder whole, made by the same command, and named in the table
        assert theirs[name][4] == d.name and mine[name][4] == a[name].name
        assert {"config.json", "metrics.json", "card.md"} <= {f.name for f in d.iterdir()}, name
        assert (json.loads((d / "config.json").read_text())["fields"]
                == json.loads((a[name] / "config.json").read_text())["fields"])
        m, m0 = (json.loads((x / "metrics.json").read_text()) for x in (d, a[name]))
        assert (m["macro_f1"], m["holdout_macro_f1"]) == (m0["macro_f1"], m0["holdout_macro_f1"])  # one thread each
    # the child ran after its parent's run ended on Ray too, and was judged against it
    assert json.loads((b["a"] / "metrics.json").read_text())["verdict"]["parent_run"] == b["root"].name
    assert (queue_folder(there / "runs") / "a.log").read_text().count("run folder: ") == 1


def test_a_failed_parent_fails_only_its_children_on_ray(both):
    _, (there, on_ray) = both
    rows = table(on_ray.stdout)
    assert rows["broken"][1] == "failed" and "recipe field bs" in rows["broken"][4]
    assert rows["c"][1] == "skipped" and rows["c"][4] == "broken failed"
    assert rows["root"][1] == rows["a"][1] == "finished"
    q = json.loads((queue_folder(there / "runs") / "queue.json").read_text())
    assert {j["name"]: j["status"] for j in q["jobs"]} == {"root": "finished", "a": "finished", "broken": "failed",
                                                           "c": "skipped"}


def test_ctrl_c_on_ray_stops_the_running_task_once_and_cancels_the_waiting_one(ray_address, tmp_path):
    """Two stand-in jobs of 2 CPUs each on the 2-CPU instance: b waits in Ray's queue while a runs."""
    runs = tmp_path / "runs"
    check_interrupted(*interrupt_a_queue(OnRay(ray_address, cpus=2, out=lambda x: None), runs, 2), runs)


def test_without_ray_the_flag_is_one_line_exit_2(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as where the package is not installed
    p = in_process("run", "recipes/person_split.py", "--ray", "auto", "--dry-run", cwd=REPO)
    assert p.returncode == 2 and p.stderr == f"fastmask: error: {NEEDS_RAY}\n" and not p.stdout


def test_an_address_where_nothing_listens_is_one_line_exit_2_not_minutes_of_retries(tmp_path):
    import socket
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = in_process("run", "recipes/person_split.py", "--ray", f"127.0.0.1:{port}", "--dry-run", cwd=REPO)
    assert p.returncode == 2 and p.stdout == f"queue: joining the Ray cluster at 127.0.0.1:{port} (it has 3 s to answer)\n"
    assert len(p.stderr.strip().splitlines()) == 1
    assert f"--ray 127.0.0.1:{port}: nothing answers" in p.stderr and "ray start --head" in p.stderr


def test_a_silent_address_is_one_line_exit_2_within_5_s(tmp_path):
    """A port that accepts connections and says nothing (not Ray): Ray itself would retry for minutes, printing a
    warning every few seconds. Two recipes, no --jobs, as a user first types a queue."""
    import socket
    import time
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # the kernel completes each connection; nothing is ever read or written
        addr = "127.0.0.1:%d" % s.getsockname()[1]
        started = time.monotonic()
        p = in_process("run", "recipes/oversample_cutmix.py", "recipes/rare_cutmix.py", "--ray", addr, "--dry-run",
                       cwd=REPO)
        took = time.monotonic() - started
    assert p.returncode == 2 and took < 5, (p.returncode, took)
    assert p.stdout == f"queue: joining the Ray cluster at {addr} (it has 3 s to answer)\n"
    assert p.stderr == (f"fastmask: error: --ray {addr}: {addr} accepts connections but did not answer as Ray within 3 s; "
                        f"is it the head's GCS port (ray start --head --port={addr.split(':')[1]})?\n")


def test_an_address_that_answers_in_another_protocol_is_one_line(tmp_path):
    import socket
    import threading
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        def http():  # a web server's answer, not HTTP/2's SETTINGS
            c, _ = s.accept()
            c.recv(100)
            c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            c.close()
        threading.Thread(target=http, daemon=True).start()
        addr = "127.0.0.1:%d" % s.getsockname()[1]
        p = in_process("run", "recipes/person_split.py", "--ray", addr, "--dry-run", cwd=REPO)
    assert p.returncode == 2 and p.stderr == (f"fastmask: error: --ray {addr}: {addr} answers, but not as Ray (no gRPC); "
                                              f"is it the head's GCS port (ray start --head --port={addr.split(':')[1]})?\n")


def test_a_task_that_cannot_start_its_run_fails_that_job_saying_why(ray_address, tmp_path):
    """A node without the command (another environment): that job fails with the cause, its child is
    skipped, and the queue ends with its table instead of a traceback."""
    todo = [Job("a", "a.py", "hypothesis"), Job("b", "b.py", "hypothesis", needs=["a"])]
    engine = OnRay(ray_address, out=lambda x: None)
    try:
        stopped = drive(todo, engine, lambda j: [str(tmp_path / "no-python"), "-m", "fastmask.run"], tmp_path / "runs",
                        2, out=lambda x: None)
    finally:
        engine.close()
    assert stopped is False
    assert todo[0].status == "failed" and todo[0].why.startswith("Ray: FileNotFoundError: "), todo[0].why
    assert "\x1b" not in todo[0].why  # Ray colours its errors for a terminal; the table is no terminal
    assert todo[1].status == "skipped" and todo[1].why == "a failed"


# joins Ray as the queue does, then gets SIGTERM (a scheduler's `kill`): it must end the queue as Ctrl-C does
TERM_PROBE = r'''
import os, signal, sys, threading
import ray
from fastmask.run import terminate_as_interrupt
from fastmask.runs.on_ray import connect
terminate_as_interrupt()
connect(ray, sys.argv[1])
threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
try:
    threading.Event().wait(30)
    print("not stopped")
except KeyboardInterrupt:
    print("interrupted")
finally:
    ray.shutdown()
'''


def test_joining_ray_keeps_sigterm_ending_the_queue_as_ctrl_c_does(ray_address):
    """ray.init makes SIGTERM exit at once, which would leave the runs to train on: the queue's handler stays."""
    p = subprocess.run([sys.executable, "-c", TERM_PROBE, ray_address], capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "interrupted", p.stdout + p.stderr[-2000:]


def test_a_ray_task_sees_the_queue_s_fastmask_settings_but_not_its_other_variables(ray_address, tmp_path, monkeypatch):
    """The Ray workers were started before these variables were set (the module's instance), as a node's are:
    only what the task is handed reaches the run."""
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "shared-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    probe = ("import os; print('run folder: ' + '|'.join(os.environ.get(k, '-') for k in "
             "('FASTMASK_CACHE', 'HF_HUB_OFFLINE', 'UNRELATED_SETTING', 'OMP_NUM_THREADS')))")
    todo = [Job("a", "a.py", "hypothesis")]
    engine = OnRay(ray_address, out=lambda x: None)
    try:
        drive(todo, engine, lambda j: [sys.executable, "-c", probe], tmp_path / "runs", 1, out=lambda x: None)
    finally:
        engine.close()
    assert todo[0].status == "finished" and str(todo[0].run) == f"{tmp_path / 'shared-cache'}|1|-|1"

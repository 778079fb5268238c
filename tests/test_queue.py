"""A queue of recipes on one machine: missing parents first and once, N runs at a time with their share of
the threads, a failed parent fails only its own children, the end table says what ran and each verdict."""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fastmask.runs.queue import Job, Local, drive, plan, slots

from conftest import TINY, in_process


def queue_folder(runs):
    """RUNS/.queue/<id>/, the folder of the one queue that ran into `runs`: its logs and its queue.json."""
    (folder,) = (d for d in (runs / ".queue").iterdir() if d.is_dir())
    return folder

ROOT = '''"""The tiny root."""
from fastmask.recipe import Recipe

recipe = Recipe(arch="test_resnet", size=(32, 24), epochs=1, bs=16, pretrained=False)
'''
CHILD = '''"""{doc}"""
from recipes.{parent} import recipe as parent

recipe = parent.but({change})
'''


def project(root):
    (root / "recipes").mkdir(parents=True)
    (root / "recipes" / "__init__.py").write_text("")
    (root / "recipes" / "root.py").write_text(ROOT)
    (root / "recipes" / "a.py").write_text(CHILD.format(doc="A lower lr helps.", parent="root", change="lr=2e-3"))
    (root / "recipes" / "b.py").write_text(CHILD.format(doc="Oversampling helps.", parent="root",
                                                        change='sampler="oversample"'))
    # a parent that fails before training (more images a batch than the split has), and its child
    (root / "recipes" / "broken.py").write_text(ROOT.replace("bs=16", "bs=100000").replace("tiny root", "broken"))
    (root / "recipes" / "c.py").write_text(CHILD.format(doc="After a broken parent.", parent="broken", change="lr=2e-3"))
    return root


@pytest.fixture(scope="module")
def queued(twin, tmp_path_factory):
    """a and b, children of root (which has no run yet), run as a queue of two jobs at a time."""
    root = project(tmp_path_factory.mktemp("queue"))
    p = in_process("run", "recipes/a.py", "recipes/b.py", "--jobs", "2", "--data", twin, "--runs", "runs", cwd=root)
    return root, p


def test_the_plan_puts_the_missing_parent_first_once(twin, tmp_path):
    root = project(tmp_path)
    p = in_process("run", "recipes/a.py", "recipes/b.py", "recipes/c.py", "--dry-run", "--data", twin, "--runs", "runs",
                   cwd=root)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [x.strip() for x in p.stdout.splitlines()]
    assert [x.split(":")[0] for x in lines[1:]] == ["root (parent)", "a (hypothesis) after root",
                                                    "b (hypothesis) after root", "broken (parent)",
                                                    "c (hypothesis) after broken"]
    assert "--no-parent" in lines[1] and "--no-parent" not in lines[2]  # a parent's own parent is not asked for
    assert not (root / "runs").exists() or not any((root / "runs").glob("*-*"))  # a dry run trains nothing


def test_a_queue_trains_the_parent_once_then_its_children_two_at_a_time(queued):
    root, p = queued
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    runs = root / "runs"
    folders = sorted(d.name.split("-", 1)[1] for d in runs.iterdir() if d.is_dir() and not d.name.startswith("."))
    assert folders == ["a", "b", "root"]  # root once, though two children wait for it
    (parent,) = runs.glob("*-root")
    for name in ("a", "b"):
        (d,) = runs.glob(f"*-{name}")
        assert json.loads((d / "metrics.json").read_text())["verdict"]["parent_run"] == parent.name
    assert "queue: 3 job(s), 2 at a time" in p.stdout
    table = p.stdout[p.stdout.index("queue"):]
    for name in ("root", "a", "b"):
        assert any(line.split("│")[1:4] and name == line.split("│")[1].strip() and "finished" in line
                   for line in table.splitlines() if "│" in line), (name, table)
    assert (queue_folder(runs) / "a.log").is_file()  # each job's output kept beside the runs, in its queue's folder


def test_a_finished_parent_is_reused_by_the_next_queue(queued, twin):
    root, _ = queued
    p = in_process("run", "recipes/a.py", "--dry-run", "--data", twin, "--runs", "runs", cwd=root)
    assert p.returncode == 0 and "root (parent): reused" in p.stdout, p.stdout


def test_a_failed_parent_fails_its_children_only(twin, tmp_path):
    root = project(tmp_path)
    p = in_process("run", "recipes/c.py", "recipes/a.py", "--jobs", "1", "--data", twin, "--runs", "runs", cwd=root)
    assert p.returncode == 1
    rows = {line.split("│")[1].strip(): line for line in p.stdout.splitlines() if line.count("│") >= 6}
    assert "failed" in rows["broken"]
    assert any(x.startswith("queue: failed broken in ") and "recipe field bs" in x for x in p.stdout.splitlines())
    assert "skipped" in rows["c"] and "broken failed" in rows["c"]
    assert "finished" in rows["a"] and "finished" in rows["root"]


def test_each_job_gets_its_share_of_the_threads_or_a_gpu(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert slots(2, gpus=0) == [{"OMP_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": ""}] * 2
    assert [s["CUDA_VISIBLE_DEVICES"] for s in slots(3, gpus=2)] == ["0", "1", "0"]
    assert slots(16, gpus=0)[0]["OMP_NUM_THREADS"] == "1"
    assert slots(2, gpus=0, cpus=3)[1]["OMP_NUM_THREADS"] == "3"  # --cpus-per-run


def test_a_missing_recipe_or_an_empty_folder_is_one_line(tmp_path):
    p = in_process("run", "recipes/person_split.py", tmp_path / "nope.py", "--dry-run")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "nope.py: no such recipe file or folder" in p.stderr
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no recipe files"):
        plan([tmp_path / "empty"])


def test_tiny_sets_are_passed_to_every_job(twin, tmp_path):
    root = project(tmp_path)
    p = in_process("run", "recipes/a.py", "--dry-run", *TINY[:2], "--data", twin, "--runs", "runs", cwd=root)
    assert p.returncode == 0 and "--set arch=test_resnet" in p.stdout.splitlines()[1]


def test_the_queue_file_says_how_each_job_ended(queued):
    """RUNS/.queue/<id>/queue.json, what the board reads: each job's status and run folder, the queue's pid."""
    root, _ = queued
    folder = queue_folder(root / "runs")
    q = json.loads((folder / "queue.json").read_text())
    assert q["pid"] == os.getpid() and q["id"] == folder.name  # in_process: the queue ran in this process
    jobs = {j["name"]: j for j in q["jobs"]}
    assert {n: j["status"] for n, j in jobs.items()} == {"root": "finished", "a": "finished", "b": "finished"}
    assert jobs["a"]["needs"] == ["root"] and jobs["a"]["hypothesis"] == "A lower lr helps."
    for j in jobs.values():
        assert (root / j["run"] / "config.json").is_file()
    assert not list((root / "runs" / ".queue").glob("**/stop-*"))  # no Ctrl-C: no stop file for the jobs


# a stand-in for `python -m fastmask.run`: names its run folder, then counts the SIGINTs it gets
SLEEPER = r'''
import signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda *a: got.append(1))
print("run folder: " + sys.argv[1], flush=True)
end = time.time() + 30
while not got and time.time() < end:
    time.sleep(0.05)
time.sleep(0.5)  # a second SIGINT would arrive meanwhile
print(f"SIGINT x{len(got)}", flush=True)
sys.exit(130 if got else 0)
'''


def interrupt_a_queue(engine, runs, jobs):
    """Jobs a and b (stand-ins) through `engine`, `jobs` in flight; Ctrl-C (a SIGINT to this process) as soon
    as a's log names its run folder. Returns (drive's answer, the jobs, what it printed)."""
    todo = [Job("a", "a.py", "hypothesis"), Job("b", "b.py", "hypothesis")]
    def ctrl_c():
        end = time.time() + 60
        while time.time() < end and not any("run folder: " in log.read_text() for log in runs.glob(".queue/*/a.log")):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
    lines, old = [], signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=ctrl_c, daemon=True).start()
        stopped = drive(todo, engine, lambda j: [sys.executable, "-c", SLEEPER, str(runs / f"RUN-{j.name}")], runs,
                        jobs, out=lines.append)
    finally:
        signal.signal(signal.SIGINT, old)
        engine.close()
    return stopped, {j.name: j for j in todo}, lines


def check_interrupted(stopped, jobs, lines, runs):
    """Ctrl-C interrupted the running job once (its run folder kept), started nothing new, said so everywhere."""
    assert stopped is True
    assert jobs["a"].status == "interrupted" and jobs["a"].run == runs / "RUN-a"
    folder = queue_folder(runs)
    assert "SIGINT x1" in (folder / "a.log").read_text()  # one SIGINT: a second drops the run's cleanup
    assert jobs["b"].status == "not started" and not (folder / "b.log").exists()
    assert any(x.startswith("queue: interrupted a") for x in lines), lines
    q = json.loads((folder / "queue.json").read_text())
    assert {j["name"]: j["status"] for j in q["jobs"]} == {"a": "interrupted", "b": "not started"}


def test_ctrl_c_interrupts_the_running_job_once_and_starts_nothing_new(tmp_path):
    runs = tmp_path / "runs"
    check_interrupted(*interrupt_a_queue(Local(1, cpus=1), runs, 1), runs)


# --- the forms users type first: no --jobs ----------------------------------------------------------

def test_a_queue_without_jobs_plans_one_at_a_time_with_commands_to_paste(twin, tmp_path):
    """`fastmask run A.py B.py` as first typed (no --jobs, relative --runs and --data): one run at a time, and
    each plan line is the command the job runs, pasteable from any folder (this interpreter, absolute paths)."""
    root = project(tmp_path / "proj")
    (tmp_path / "proj" / "data").symlink_to(twin)
    p = in_process("run", "recipes/a.py", "recipes/b.py", "--dry-run", "--data", "data", "--runs", "runs", cwd=root)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.splitlines()
    assert lines[0].startswith("queue: 3 job(s), 1 at a time (")
    cmd = shlex.split(lines[2].split(": ", 1)[1])  # a (hypothesis) after root: ...
    assert cmd == [sys.executable, "-m", "fastmask.run", str((root / "recipes" / "a.py").resolve()),
                   "--runs", str((root / "runs").resolve()), "--data", str((root / "data").resolve())]


def test_a_queue_without_jobs_runs_every_job(twin, tmp_path):
    """The default form trains, one run at a time: the parent, then its child, each finished."""
    root = project(tmp_path)
    p = in_process("run", "recipes/root.py", "recipes/a.py", "--data", twin, "--runs", "runs", cwd=root)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "queue: 2 job(s), 1 at a time" in p.stdout and "Traceback" not in p.stdout + p.stderr
    assert [x.split(" in ")[0] for x in p.stdout.splitlines() if x.startswith("queue: finished")] == [
        "queue: finished root", "queue: finished a"]
    assert json.loads(next((root / "runs").glob("*-a")).joinpath("metrics.json").read_text())["verdict"]


# --- two queues in one runs folder --------------------------------------------------------------------

def _table(stdout):
    """The end table's rows: recipe -> its cells."""
    return {cells[0]: cells for cells in ([c.strip() for c in line.split("│")[1:-1]]
                                          for line in stdout.splitlines() if line.count("│") >= 6)}


def _named(board_text, name, status):
    """How many rows of the terminal board are recipe `name` with `status`."""
    return sum(line.split()[:2] == [name, status] for line in board_text.splitlines())


def _qa_runs(runs):
    """The qa run folders' names (two started in one second: STAMP-qa and STAMP-qa-2)."""
    return sorted(d.name for d in runs.iterdir() if re.fullmatch(r"\d{8}T\d{6}Z-qa(-\d+)?", d.name))


def test_two_queues_in_one_runs_folder_keep_their_own_logs_state_and_runs(twin, tmp_path):
    """`qa qb` and `qa qc` queued at once into one runs folder, as two processes: each queue its own
    RUNS/.queue/<id>/ (logs, queue.json), each reports the qa run it made (two qa folders), and the board
    shows both live queues' waiting jobs."""
    root = tmp_path
    (root / "recipes").mkdir()
    (root / "recipes" / "__init__.py").write_text("")
    for name in ("qa", "qb", "qc"):
        (root / "recipes" / f"{name}.py").write_text(ROOT.replace("The tiny root", f"Recipe {name}"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    queues = [subprocess.Popen([sys.executable, "-m", "fastmask.run", "recipes/qa.py", f"recipes/{other}.py",
                                "--jobs", "1", *TINY, "--data", str(twin), "--runs", "runs"], cwd=root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for other in ("qb", "qc")]
    try:
        _two_queues(queues, root / "runs")
    finally:  # a failed check leaves no queue behind: Ctrl-C (its runs stop too), then a kill
        for q in queues:
            if q.poll() is None:
                q.send_signal(signal.SIGCONT)
                q.send_signal(signal.SIGINT)
                try:
                    q.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    q.kill()
                    q.communicate()


def _two_queues(queues, runs):
    from fastmask.views.board import queued as board_rows
    frozen = set()
    try:
        # each queue held still (SIGSTOP) once its qa runs (the log its queue.json gives names the run folder)
        # and its second job waits, to read the board then
        end = time.time() + 300
        while len(frozen) < 2 and time.time() < end and all(q.poll() is None for q in queues):
            for path in runs.glob(".queue/*/queue.json"):
                try:
                    q = json.loads(path.read_text())
                except ValueError:
                    continue
                status = [j["status"] for j in q["jobs"]]
                log = Path(q["jobs"][0]["log"] or path.parent / "none")
                if (q["pid"] not in frozen and status == ["running", "queued"] and log.is_file()
                        and "run folder: " in log.read_text()):
                    os.kill(q["pid"], signal.SIGSTOP)
                    frozen.add(q["pid"])
            time.sleep(0.02)
        assert len(frozen) == 2, [q.poll() for q in queues]
        rows = board_rows(runs)
        p = in_process("board", runs, "--no-html")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        live = _qa_runs(runs)
    assert sorted((r["name"], r["status"]) for r in rows) == [("qb", "queued"), ("qc", "queued")]
    assert p.returncode == 0, p.stderr
    assert len(live) == 2 and _named(p.stdout, "qa", "running") == 2, p.stdout  # both qa runs, as they train
    assert _named(p.stdout, "qb", "queued") == _named(p.stdout, "qc", "queued") == 1, p.stdout
    outs = [q.communicate(timeout=600)[0] for q in queues]
    for q, out in zip(queues, outs):
        assert q.returncode == 0, out[-3000:]
    tables = [_table(out) for out in outs]
    qa = [t["qa"][-1] for t in tables]  # each queue's qa: the run folder its own log named
    assert qa[0] != qa[1] and all((runs / name / "config.json").is_file() for name in qa), qa
    assert _qa_runs(runs) == sorted(qa)  # two qa runs, each reported once
    assert tables[0]["qb"][2] == tables[1]["qc"][2] == "finished"
    folders = sorted(d for d in (runs / ".queue").iterdir() if d.is_dir())
    assert len(folders) == 2 and not (runs / ".queue" / "qa.log").exists()
    by_pid = {json.loads((d / "queue.json").read_text())["pid"]: d for d in folders}
    for q, name, other in zip(queues, qa, ("qb", "qc")):
        d = by_pid[q.pid]
        assert sorted(f.name for f in d.glob("*.log")) == ["qa.log", f"{other}.log"]
        assert f"run folder: {runs.resolve() / name}" in (d / "qa.log").read_text()
        jobs = {j["name"]: j for j in json.loads((d / "queue.json").read_text())["jobs"]}
        assert Path(jobs["qa"]["run"]).name == name and jobs[other]["status"] == "finished"
    p = in_process("board", runs, "--no-html")  # both queues' runs, each queue's qa among them
    assert p.returncode == 0 and _named(p.stdout, "qa", "finished") == 2, p.stdout

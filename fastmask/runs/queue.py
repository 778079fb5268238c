"""Several hypotheses at once: `fastmask run A.py B.py ... --jobs N`, on this machine or (--ray) on a Ray cluster.

The recipes and their parents that lack a comparable finished run form a graph (a parent before its
children); graphlib's TopologicalSorter hands out what is ready and one concurrent.futures wait() loop runs
each as a normal `python -m fastmask.run` process (its own run folder in the one runs folder) through an
engine (job.Engine): on this machine N at a time, each with its share of the CPU threads (or one GPU each when there are
GPUs); on Ray (on_ray.py) as tasks with their CPUs and GPUs, which Ray places on the nodes. A failed run
fails its own descendants only; Ctrl-C interrupts what runs (each marked interrupted) and starts nothing new.
Each queue has its own id (UTC stamp and pid, like a run folder's name) and folder RUNS/.queue/<id>/: its jobs'
logs and queue.json (queue_file.py), which says at each change how each job stands (the board shows the queued ones), so
any number of queues write into one runs folder without reading each other's logs. While jobs run, each
finished epoch is one plain line (follow.py); the command ends with a table of what ran, what was reused, what
failed and why, and each verdict."""
import os
import shlex
import socket
import sys
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from fastmask.data.load import default_data, load_data
from fastmask.errors import FastmaskError
from fastmask.recipe import parse_sets
from fastmask.recipe_file import load_recipe
from fastmask.runs.follow import POLL_S, Follower
from fastmask.runs.job import run_job
from fastmask.runs.on_ray import OnRay, need_ray, reachable
from fastmask.runs.queue_file import STATE, State, job_log, queue_folder
from fastmask.store.index import RunIndex
from fastmask.store.run_folder import RunFolder


@dataclass
class Job:
    name: str
    file: str
    role: str                      # "hypothesis" (asked for) or "parent" (trained first for a verdict)
    needs: list = field(default_factory=list)
    status: str = "queued"         # queued, running, finished, failed, interrupted, reused, skipped, not started
    run: Optional[Path] = None
    why: str = ""
    seconds: Optional[float] = None
    log: Optional[Path] = None
    hypothesis: str = ""


def recipe_files(paths):
    """The recipe files named, a folder standing for its *.py files (not __init__.py), in the order given."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.glob("*.py") if f.name != "__init__.py")
        elif p.is_file():
            out.append(p)
        else:
            raise FastmaskError(f"{p}: no such recipe file or folder")
    if not out:
        raise FastmaskError(f"{', '.join(map(str, paths))}: no recipe files")
    return list(dict.fromkeys(out))


def plan(paths, sets=(), data=None, runs_dir="runs", skip_bad=False):
    """The jobs, in an order the graph allows: each recipe asked for, plus each parent of one that has no
    comparable finished run on this data (reused otherwise)."""
    files = recipe_files(paths)
    overrides = parse_sets(sets)
    recipes = [load_recipe(f, overrides) for f in files]
    asked = {r.name: r for r in recipes}
    if len(asked) < len(recipes):
        raise FastmaskError("two recipe files of the same name: " + ", ".join(str(f) for f in files))
    fp = load_data(data, skip_bad=skip_bad, progress=False).fingerprint
    index = RunIndex(runs_dir)
    jobs = {}
    for r in recipes:
        par = r.parent
        needs = []
        if par is not None and par.name in asked:
            needs = [par.name]
        elif par is not None and par.file and par.name not in jobs:
            seeds = r.seeds
            if set(seeds) <= index.seeds(par.name, fp, par.config()["fields"]):
                found = index.pool(par.name, fp, par.config()["fields"])
                jobs[par.name] = Job(par.name, par.file, "parent", status="reused", run=found[0].dir if found else None,
                                     why="a comparable finished run exists", hypothesis=par.hypothesis or "")
            else:
                jobs[par.name] = Job(par.name, par.file, "parent", hypothesis=par.hypothesis or "")
        if par is not None and par.name in jobs and jobs[par.name].status != "reused":
            needs = [par.name]
        jobs[r.name] = Job(r.name, str(r.file), "hypothesis", needs, hypothesis=r.hypothesis or "")
    return list(jobs.values())


def command(job, sets, data, runs_dir, skip_bad=False):
    """The `python -m fastmask.run` a job runs: a parent without its own parent's runs (its verdict is not
    what was asked), a hypothesis with its parent's (by then finished, so reused)."""
    cmd = [sys.executable, "-m", "fastmask.run", job.file, *[x for s in sets for x in ("--set", s)],
           "--runs", str(runs_dir)]
    if data is not None:
        cmd += ["--data", str(data)]
    if skip_bad:
        cmd.append("--skip-bad")
    if job.role == "parent":
        cmd.append("--no-parent")
    return cmd


def slots(jobs, gpus=None, cpus=None):
    """Per job slot: its environment additions: `cpus` threads (default: a share of this machine's), and one
    GPU each when there are GPUs."""
    if gpus is None:
        gpus = _gpus()
    threads = str(cpus or max(1, (os.cpu_count() or 1) // jobs))
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": str(i % gpus), "OMP_NUM_THREADS": threads} for i in range(jobs)]
    return [{"OMP_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""} for _ in range(jobs)]


def _gpus():
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return 0
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001  (no torch build with CUDA: CPU slots)
        return 0


class Local:
    """The queue's engine (job.Engine) on this machine: `jobs` processes at a time, each in its slot (slots())."""

    def __init__(self, jobs, cpus=None):
        self.envs = slots(jobs, cpus=cpus)
        self.pool = ThreadPoolExecutor(max_workers=jobs)
        self.where = f"{jobs} at a time ({_share(self.envs[0])} each)"
        self.starts = "started"

    def share(self, slot):
        return _share(self.envs[slot])

    def submit(self, job, cmd, slot, log, stop):
        return self.pool.submit(run_job, cmd, self.envs[slot], log, None, stop)

    def outcome(self, fut, log):
        return fut.result()

    def stop(self, futures, logs):
        pass  # each process is interrupted by the stop file

    def close(self):
        self.pool.shutdown(wait=True)


def run_queue(paths, sets=(), data=None, runs_dir="runs", jobs=None, dry_run=False, skip_bad=False, cpus=None,
              ray=None, out=print):
    """`fastmask run A.py B.py ... [--jobs N] [--cpus-per-run N] [--ray auto|ADDRESS] [--dry-run]`: the exit
    status (0 all finished or reused, 1 some failed or were skipped, 130 interrupted). With `ray` each job
    is a Ray task, `jobs` (default: every ready job) capping how many are in flight."""
    for flag, n in (("--jobs", jobs), ("--cpus-per-run", cpus)):
        if n is not None and n < 1:
            raise FastmaskError(f"{flag} {n}: at least 1")
    if ray is not None:  # before the plan's data work: a missing package or a dead address is one line
        need_ray()
        reachable(ray)  # `fastmask run` checked it already, saying what it tried (on_ray.trying)
    todo = plan(paths, sets, data, runs_dir, skip_bad)
    # absolute paths in every command: the plan's lines reproduce each job from any folder, and on Ray every
    # node sees the one shared runs folder, recipes and data at the same paths (the default twin: where the
    # plan found or made it)
    runs_dir, data = Path(runs_dir).resolve(), default_data() if data is None else Path(data).resolve()
    for j in todo:
        j.file = str(Path(j.file).resolve())
    # how many run at once: --jobs; without it one at a time here, and on Ray every ready job (Ray places them)
    limit = jobs or (len(todo) if ray is not None else 1)
    engine = OnRay(ray, cpus, out) if ray is not None else Local(limit, cpus)
    try:
        if ray is not None and jobs is not None:
            engine.where += f", at most {jobs} at a time"
        out(f"queue: {len(todo)} job(s), {engine.where}")
        for j in todo:
            out(plan_line(j, command(j, sets, data, runs_dir)))
        if dry_run:
            return 0
        interrupted = drive(todo, engine, lambda j: command(j, sets, data, runs_dir, skip_bad), Path(runs_dir),
                            limit, out)
    finally:
        engine.close()
    out_table(todo)
    if interrupted:
        return 130
    return 0 if all(j.status in ("finished", "reused") for j in todo) else 1


def plan_line(j, cmd):
    """A job as the plan prints it: what it waits for, and the run it reuses or the command it runs (as it
    runs it: this interpreter by its full path and absolute paths, so it can be pasted anywhere)."""
    return (f"  {j.name} ({j.role})" + (f" after {', '.join(j.needs)}" if j.needs else "")
            + (f": reused {j.run.name if j.run else ''}" if j.status == "reused" else f": {shlex.join(map(str, cmd))}"))


def drive(todo, engine, command_of, runs_dir, jobs, out=print):
    """Run the jobs, a parent before its children, at most `jobs` in flight, through `engine` (Local or
    OnRay: the same loop for both, since a Ray task's ObjectRef.future() is a concurrent.futures Future).
    Each change goes to this queue's RUNS/.queue/<id>/queue.json for the board; each epoch a running job finishes
    is one progress line (follow.Follower), looked for every POLL_S seconds at most. True when Ctrl-C ended it."""
    by_name = {j.name: j for j in todo}
    logs = queue_folder(runs_dir)  # this queue's own: its logs, its state file and its stop file
    stop = logs / f"stop-{socket.gethostname()}-{os.getpid()}"  # this queue's Ctrl-C, seen by each of its jobs
    state = State(logs / STATE, todo, engine.where)
    graph = TopologicalSorter({j.name: list(j.needs) for j in todo})
    graph.prepare()
    running, free, ready = {}, list(range(jobs)), deque()
    follow = Follower(todo, out)
    try:
        while graph.is_active():
            ready.extend(graph.get_ready())
            settled = False
            while ready and free:
                j = by_name[ready.popleft()]
                failed = [n for n in j.needs if by_name[n].status not in ("finished", "reused")]
                if j.status == "reused" or failed:  # nothing to run: its children may be ready now
                    if failed:
                        j.status, j.why = "skipped", f"{failed[0]} {by_name[failed[0]].status}"
                        state.save()
                    graph.done(j.name)
                    settled = True
                    continue
                slot = free.pop()
                j.log, j.status = job_log(logs, j.name), "running"
                # the job writes its log as it starts (on Ray, once a node has its resources) in this queue's
                # own folder: no other queue's log names a run folder for it (the board and a Ctrl-C read the log)
                running[engine.submit(j, command_of(j), slot, j.log, stop)] = (j, slot)
                out(f"queue: {engine.starts} {j.name} ({j.role}; {engine.share(slot)}; log {j.log})")
                state.save()
            if not running:
                if settled:
                    continue
                break  # nothing runs and nothing became ready: the graph is spent
            finished, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
            follow.poll([j for j, _ in running.values()])  # a job that ended: its last epochs before its end line
            for fut in finished:
                j, slot = running.pop(fut)
                free.append(slot)
                ended(j, *engine.outcome(fut, j.log), out)
                graph.done(j.name)
                state.save()
    except KeyboardInterrupt:
        out("queue: interrupted: stopping the running runs (each is marked interrupted), starting nothing new")
        # left in place: a Ray task that was starting as it was cancelled may still begin, and must stop at once
        stop.touch()
        engine.stop(list(running), [j.log for j, _ in running.values()])
        wait(running)
        for fut, (j, _) in running.items():
            ended(j, *engine.outcome(fut, j.log), out)
        return True
    finally:
        for j in todo:
            if j.status == "queued":
                j.status = "not started"
        state.save()
    return False


def _share(env):
    return (f"GPU {env['CUDA_VISIBLE_DEVICES']}, " if env.get("CUDA_VISIBLE_DEVICES") else "") + \
        f"{env['OMP_NUM_THREADS']} CPU thread(s)"


def ended(job, code, run, tail, seconds, out=print):
    """Record how a job ended from what its process handed back: its exit code (None: none, the reason at
    the end of `tail`; None with no tail: it never started), run folder, log tail and seconds."""
    job.seconds, job.run = seconds, Path(run) if run else None
    if code is None and not tail:
        job.status, job.why = "not started", "cancelled before it started"
    else:
        job.status = {0: "finished", 130: "interrupted"}.get(code, "failed")
    if job.status == "failed":
        lines = [x for x in tail.strip().splitlines() if x.strip()]
        job.why = (next((x for x in reversed(lines) if x.startswith("fastmask: error:")), lines[-1] if lines else "")
                   .removeprefix("fastmask: error: ")[:200] + ("" if code is None else f" (exit {code})"))
    out(f"queue: {job.status} {job.name}" + (f" in {_clock(seconds)}" if seconds is not None else "")
        + (f": {job.why}" if job.why else "") + (f" -> {job.run}" if job.run else ""))
    return job


def _clock(seconds):
    return "—" if seconds is None else f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def verdict_of(job):
    """The run's verdict as its card says it (word and delta), or "—"."""
    if job.run is None or job.role == "parent" and job.status == "reused":
        return "—"
    v = RunFolder(job.run).metrics.get("verdict") or {}
    if not isinstance(v, dict) or not v.get("verdict"):
        return "—"
    d = v.get("delta")
    return v["verdict"] + (f" ({d:+.3f})" if isinstance(d, (int, float)) else "")


def out_table(todo, console=None):
    """The end table: each job, how it ended and why, its run folder, minutes and verdict."""
    t = Table(title="queue", title_justify="left")
    for col in ("recipe", "role", "status", "minutes", "verdict", "run folder / why"):
        t.add_column(col, no_wrap=col != "run folder / why")
    for j in todo:
        t.add_row(j.name, j.role, j.status, _clock(j.seconds), verdict_of(j),
                  j.why if j.status in ("failed", "skipped") else (j.run.name if j.run else j.why))
    # into a pipe or a log, rich would squeeze the table to 80 columns and cut the folder names
    (console or Console(width=None if sys.stdout.isatty() else 160)).print(t)

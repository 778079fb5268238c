"""Several hypotheses at once on one machine: `fastmask run A.py B.py ... --jobs N`.

The recipes and their parents that lack a comparable finished run form a graph (a parent before its
children); graphlib's TopologicalSorter hands out what is ready and concurrent.futures runs each as a
normal `python -m fastmask.run` process (its own run folder in the one runs folder), N at a time, each with
its share of the CPU threads (or one GPU each when there are GPUs). A failed run fails its own descendants
only; Ctrl-C interrupts what runs (each marked interrupted) and starts nothing new. The command ends with a
table of what ran, what was reused, what failed and why, and each verdict."""
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from fastmask.data.layout import fingerprint
from fastmask.data.load import load_data
from fastmask.errors import FastmaskError
from fastmask.recipe import load_recipe, parse_sets
from fastmask.runs.hypothesis import covered
from fastmask.store.index import pool, seeds_of
from fastmask.store.run_folder import RunFolder

LOGS = ".queue"  # each job's output, in the runs folder


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
    proc: object = field(default=None, repr=False)  # the running process, while there is one


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
    fp = fingerprint(load_data(data, skip_bad=skip_bad, progress=False).train)
    jobs = {}
    for r in recipes:
        par = r.parent
        needs = []
        if par is not None and par.name in asked:
            needs = [par.name]
        elif par is not None and par.file and par.name not in jobs:
            seeds = seeds_of(r.config()["fields"])
            if set(seeds) <= covered(runs_dir, par, fp):
                found = pool(runs_dir, par.name, fp, par.config()["fields"])
                jobs[par.name] = Job(par.name, par.file, "parent", status="reused", run=found[0].dir if found else None,
                                     why="a comparable finished run exists")
            else:
                jobs[par.name] = Job(par.name, par.file, "parent")
        if par is not None and par.name in jobs and jobs[par.name].status != "reused":
            needs = [par.name]
        jobs[r.name] = Job(r.name, str(r.file), "hypothesis", needs)
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


def slots(jobs, gpus=None):
    """Per job slot: its environment additions: a share of the CPU threads, or one GPU each."""
    if gpus is None:
        gpus = _gpus()
    cpus = os.cpu_count() or 1
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": str(i % gpus), "OMP_NUM_THREADS": str(max(1, cpus // jobs))}
                for i in range(jobs)]
    return [{"OMP_NUM_THREADS": str(max(1, cpus // jobs)), "CUDA_VISIBLE_DEVICES": ""} for _ in range(jobs)]


def _gpus():
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return 0
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001  (no torch build with CUDA: CPU slots)
        return 0


def run_queue(paths, sets=(), data=None, runs_dir="runs", jobs=1, dry_run=False, skip_bad=False, out=print):
    """`fastmask run A.py B.py ... [--jobs N] [--dry-run]`: the exit status (0 all finished or reused, 1 some
    failed or were skipped, 130 interrupted)."""
    if jobs < 1:
        raise FastmaskError(f"--jobs {jobs}: at least 1")
    todo = plan(paths, sets, data, runs_dir, skip_bad)
    by_name = {j.name: j for j in todo}
    envs = slots(jobs)
    out(f"queue: {len(todo)} job(s), {jobs} at a time ({_share(envs[0])} each)")
    for j in todo:
        out(f"  {j.name} ({j.role})" + (f" after {', '.join(j.needs)}" if j.needs else "")
            + (f": reused {j.run.name if j.run else ''}" if j.status == "reused" else
               f": {' '.join(Path(x).name if i == 0 else x for i, x in enumerate(command(j, sets, data, runs_dir)))}"))
    if dry_run:
        return 0
    logs = Path(runs_dir) / LOGS
    logs.mkdir(parents=True, exist_ok=True)
    graph = TopologicalSorter({j.name: [n for n in j.needs] for j in todo})
    graph.prepare()
    running, free, ready, interrupted = {}, list(range(jobs)), deque(), False
    with ThreadPoolExecutor(max_workers=jobs) as ex:
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
                        graph.done(j.name)
                        settled = True
                        continue
                    slot = free.pop()
                    running[ex.submit(_run, j, command(j, sets, data, runs_dir, skip_bad), envs[slot], logs, out)] = (
                        j, slot)
                if not running:
                    if settled:
                        continue
                    break  # nothing runs and nothing became ready: the graph is spent
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    j, slot = running.pop(fut)
                    free.append(slot)
                    fut.result()
                    graph.done(j.name)
        except KeyboardInterrupt:
            interrupted = True
            out("queue: interrupted: stopping the running runs (each is marked interrupted), starting nothing new")
            for j, _ in running.values():
                if j.proc is not None and j.proc.poll() is None:
                    j.proc.send_signal(signal.SIGINT)
            wait(running)
    for j in todo:
        if j.status == "queued":
            j.status = "not started"
    out_table(todo)
    if interrupted:
        return 130
    return 0 if all(j.status in ("finished", "reused") for j in todo) else 1


def _share(env):
    return (f"GPU {env['CUDA_VISIBLE_DEVICES']}, " if env.get("CUDA_VISIBLE_DEVICES") else "") + \
        f"{env['OMP_NUM_THREADS']} CPU thread(s)"


def _run(job, cmd, env, logs, out):
    """One job as a process, its output into RUNS/.queue/<name>.log; the job records how it ended."""
    job.log = logs / f"{job.name}.log"
    job.status, started = "running", time.monotonic()
    out(f"queue: started {job.name} ({job.role}; {_share(env)}; log {job.log})")
    with job.log.open("w") as f:
        # its own process group: the terminal's Ctrl-C reaches the queue, which then interrupts each run once
        job.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                    start_new_session=True)
        code = job.proc.wait()
    job.seconds = time.monotonic() - started
    text = job.log.read_text(errors="replace")
    folders = re.findall(r"^run folder: (.+)$", text, re.M)
    job.run = Path(folders[-1]) if folders else None
    job.status = {0: "finished", 130: "interrupted"}.get(code, "failed")
    if job.status == "failed":
        lines = [x for x in text.strip().splitlines() if x.strip()]
        job.why = (next((x for x in reversed(lines) if x.startswith("fastmask: error:")), lines[-1] if lines else "")
                   .removeprefix("fastmask: error: ")[:200] + f" (exit {code})")
    out(f"queue: {job.status} {job.name} in {_clock(job.seconds)}" + (f": {job.why}" if job.why else "")
        + (f" -> {job.run}" if job.run else ""))
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

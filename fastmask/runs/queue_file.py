"""A queue's folder and state file, written by the queue (queue.drive) and read by the board: RUNS/.queue/<id>/
holds each job's log (<name>.log) and queue.json, which says at each change how each job stands. The writer
(State) and the reader (live_jobs) live here together, so the file has one shape.

Light on purpose (the standard library and the ground floor): the board reads it without importing the queue."""
import itertools
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from fastmask.io import atomic_write, pid_alive
from fastmask.runs.job import read_log
from fastmask.store.folder import utc_stamp

LOGS = ".queue"       # in the runs folder: a folder per queue (queue_folder()), its jobs' output and its state
STATE = "queue.json"  # in a queue's folder: the queue as the board shows it


def queue_folder(runs_dir):
    """RUNS/.queue/<id>, made now and this queue's alone: its id is the UTC stamp and this process's pid (a
    folder of that name already there, from a queue of this process in the same second or of another host
    with this pid, gets -2, -3, ...: mkdir claims a name once)."""
    base = Path(runs_dir) / LOGS
    base.mkdir(parents=True, exist_ok=True)
    qid = f"{utc_stamp()}-{os.getpid()}"
    for n in itertools.count(1):
        folder = base / (qid if n == 1 else f"{qid}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


def job_log(folder, name):
    """The log of job `name` in its queue's folder."""
    return Path(folder) / f"{name}.log"


class State:
    """RUNS/.queue/<id>/queue.json: each job's name, role, status, what it waits for and its run folder, with
    the queue's id, pid and host, rewritten whole at each change; the board shows the jobs not started yet while
    that pid lives."""

    def __init__(self, path, todo, where):
        self.path, self.todo = path, todo
        self.head = {"id": path.parent.name, "pid": os.getpid(), "host": socket.gethostname(), "engine": where,
                     "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.save()

    def save(self):
        jobs = [{"name": j.name, "role": j.role, "status": j.status, "needs": list(j.needs),
                 "run": str(j.run) if j.run else None, "log": str(j.log) if j.log else None,
                 "hypothesis": j.hypothesis} for j in self.todo]
        atomic_write(self.path, json.dumps({**self.head, "updated": datetime.now(timezone.utc).isoformat(
            timespec="seconds"), "jobs": jobs}, indent=1))


# --- the reader ---------------------------------------------------------------------------------------

class Damaged(ValueError):
    """A live queue's state file whose jobs are not what State writes."""


def queue_files(runs_dir):
    """Each queue's state file: RUNS/.queue/<id>/queue.json, oldest queue first (the ids begin with their UTC
    stamp), after the one RUNS/.queue/queue.json an earlier version wrote, still read when it is there (its
    logs beside it, as each queue's are in its folder)."""
    base = Path(runs_dir) / LOGS
    return [base / STATE] + sorted(base.glob(f"*/{STATE}"))


def live_jobs(path):
    """The jobs of the queue whose state file is `path`, as State wrote them (dicts: name, role, status, needs,
    hypothesis, ...), while that queue lives (its pid, on this host); [] when the file is missing or unreadable
    or its queue is gone or elsewhere. Damaged when they are not a queue's records (a job not an object, a name
    or status not text, needs not a list of names)."""
    try:
        q = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(q, dict) or q.get("host") != socket.gethostname() or pid_alive(q.get("pid")) is not True:
        return []
    jobs = q.get("jobs") or []
    if not (isinstance(jobs, list) and all(_job_record(j) for j in jobs)):
        raise Damaged(f"{path}: damaged (its jobs are not a queue's records)")
    return jobs


def _job_record(j):
    """Whether `j` is a job as State writes it, as far as a reader reads it."""
    return (isinstance(j, dict) and isinstance(j.get("name"), str) and isinstance(j.get("status"), (str, type(None)))
            and isinstance(j.get("needs", []), (list, type(None))) and all(isinstance(n, str) for n in j.get("needs") or []))


def has_run_folder(folder, name):
    """Whether job `name`'s log, in its own queue's folder, names its run folder yet (the run names it as
    soon as it makes it)."""
    return read_log(job_log(folder, name))[0] is not None

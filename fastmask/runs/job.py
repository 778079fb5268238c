"""One job of a queue, wherever it runs: its `python -m fastmask.run` as a process, its output in its log, and
what the log says afterwards (the run folder it made, its last lines). Both engines run every job through
`run_job` (Local in a thread here, OnRay as a Ray task on a node), and the board reads a job's log through
`read_log`; `Engine` states what the queue asks of an engine.

Light on purpose (the standard library only): each Ray worker imports it to run a job, and the board to read
a log, and neither must pay fastai's import or Ray's for that."""
import os
import re
import signal
import subprocess
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

POLL_S = 0.5      # how often a running job looks for the queue's stop file
TAIL_LINES = 40   # of its log, what a job hands back (the failure's reason is at the end)


class Engine(Protocol):
    """What the queue's loop (queue.drive) asks of the engine that runs its jobs: Local (queue.py) on this
    machine, OnRay (on_ray.py) on a Ray cluster."""
    where: str    # how the jobs run, for the queue's first line ("2 at a time (4 CPU thread(s) each)")
    starts: str   # the word for a job handed over: "started" here, "submitted" to Ray (it starts when placed)

    def share(self, slot) -> str:
        """What a job in `slot` gets, in words ("GPU 0, 4 CPU thread(s)")."""

    def submit(self, job, cmd, slot, log, stop) -> Future:
        """Start `run_job(cmd, ..., log, ..., stop)` for `job` in `slot`: a Future of its outcome."""

    def outcome(self, fut, log) -> tuple:
        """(exit code or None, run folder or None, log tail, seconds or None) of a job's ended Future; code
        None with no tail: it never started."""

    def stop(self, futures, logs) -> None:
        """Ctrl-C: stop what has not started (a started job stops by the queue's stop file)."""

    def close(self) -> None:
        """Release what the engine holds (threads, a Ray connection it made)."""


def run_job(cmd, env, log, cwd=None, stop=None):
    """Run `cmd` (environment `env` added) with its output into the file `log`: (exit code, the run folder
    its log names or None, the log's last lines, seconds). When the file `stop` appears (the queue's Ctrl-C)
    or a KeyboardInterrupt arrives (Ray's cancel), the process gets one SIGINT and is waited for, so its run
    folder is marked interrupted, and the code is 130 (0 if it finished meanwhile)."""
    started, log = time.monotonic(), Path(log)
    if cwd is not None and not Path(cwd).is_dir():
        cwd = None  # the queue's folder is not on this node: the command's paths are absolute anyway
    with log.open("w") as f:
        # its own session: a terminal's Ctrl-C reaches the queue alone, which stops each job exactly once
        p = _spawn(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=cwd,
                   start_new_session=True)
        try:
            code = _watch(p, stop)
        except KeyboardInterrupt:
            code = _interrupt(p)
    run, tail = read_log(log)
    return code, run, tail, time.monotonic() - started


def _spawn(cmd, **kw):
    # A Ray worker runs its tasks with SIGINT blocked, and a child inherits the blocked mask: its run would
    # never see the SIGINT that stops it cleanly. Unblocked for the fork alone, the worker's mask kept.
    if not hasattr(signal, "pthread_sigmask"):
        return subprocess.Popen(cmd, **kw)
    old = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        return subprocess.Popen(cmd, **kw)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _watch(p, stop):
    # a poll, not p.wait(): Ray raises its cancel's KeyboardInterrupt only between Python bytecodes
    while p.poll() is None:
        if stop is not None and os.path.exists(stop):
            return _interrupt(p)
        time.sleep(POLL_S)
    return p.returncode


def _interrupt(p):
    p.send_signal(signal.SIGINT)  # once: a second SIGINT would make the run drop its cleanup
    while True:
        try:
            code = p.wait()
            return 0 if code == 0 else 130
        except KeyboardInterrupt:  # Ray's cancel and the stop file may both ask: the one SIGINT is enough
            continue


def read_log(log):
    """(the last run folder a job's log names, or None; its last TAIL_LINES lines): what a job hands back."""
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return None, ""
    folders = re.findall(r"^run folder: (.+)$", text, re.M)
    return (folders[-1] if folders else None), "\n".join(text.splitlines()[-TAIL_LINES:])

"""A queue's jobs as Ray tasks (`fastmask run A.py B.py ... --ray auto|ADDRESS`): the queue's engine on Ray
(job.Engine), each task running job.run_job on a node.

The only module that imports ray, and only once --ray is given (`fastmask run` asks has_ray and reachable
first, light). Every node runs the same environment (fastmask installed) and sees the runs folder, the
recipes and the data at the same absolute paths (a shared filesystem): the queue passes absolute paths, and
each job writes its run folder and its log RUNS/.queue/<queue id>/<name>.log there, so the board, the
verdicts and the next queue see every run wherever it trained.

A job is one task however many runs it makes: with the recipe's `decide` field (--decide) the whole loop of
paired seeds runs inside that job's one `python -m fastmask.run`, not as a task per seed pair (the loop
decides after each pair whether to add another, so the pairs are not known up front)."""
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from fastmask.errors import FastmaskError, one_line
from fastmask.runs.job import read_log, run_job

NEEDS_RAY = "--ray needs Ray: pip install 'fastmask[ray]'"
FORWARD = ("FASTMASK_", "HF_", "MLFLOW_")  # environment prefixes a Ray task takes from the queue's process
CONNECT_S = 3     # how long --ray ADDRESS may take to answer (a head answers in milliseconds): the command
                  # fails within the README's 5 s, its start included


# --- the queue's engine on Ray ------------------------------------------------------------------------

def forwarded(environ):
    """The driver's settings a run on another node must see too (the cache folder, MLflow's URI, offline
    weights): FASTMASK_*, HF_* and MLFLOW_* variables. The rest is the node's own environment."""
    return {k: v for k, v in environ.items() if k.startswith(FORWARD)}


def has_ray():
    """Whether the ray package is installed, without importing it (a second or more)."""
    import importlib.util
    try:
        return importlib.util.find_spec("ray") is not None
    except ValueError:  # in sys.modules without a spec
        return "ray" in sys.modules and sys.modules["ray"] is not None


def need_ray():
    """ray, imported; its absence is a FastmaskError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise FastmaskError(NEEDS_RAY) from None
    return ray


class OnRay:
    """The queue's engine on Ray: each job a task with `cpus` CPUs (OMP_NUM_THREADS too) and one GPU when
    the cluster has GPUs, queued by Ray until a node has them free."""

    def __init__(self, address, cpus=None, out=print):
        ray = self.ray = need_ray()
        self.owned, self.address, said = connect(ray, address)
        out(f"queue: {said}")
        have = ray.cluster_resources()
        self.cpus, self.gpus = cpus or 1, 1 if have.get("GPU", 0) > 0 else 0
        self.where = (f"on Ray ({self.address}, {have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs): "
                      f"{self.share()} each")
        # no retry: a job is one run folder; a lost node fails the job, and the next queue reuses what finished
        self.task = ray.remote(run_job).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        self.refs = {}
        self.starts = "submitted"  # Ray starts it once a node has its CPUs and GPUs free

    def share(self, slot=None):
        return f"{self.cpus} CPU(s), {self.gpus} GPU(s)"

    def submit(self, job, cmd, slot, log, stop):
        env = {**forwarded(os.environ), "OMP_NUM_THREADS": str(self.cpus),
               **({} if self.gpus else {"CUDA_VISIBLE_DEVICES": ""})}
        ref = self.task.remote(cmd, env, str(log), os.getcwd(), str(stop))
        fut = ref.future()  # a concurrent.futures.Future: the queue's wait() loop is the same as on one machine
        self.refs[fut] = ref
        return fut

    def outcome(self, fut, log):
        """(code, run folder, log tail, seconds) of a task that ended; code None with no tail: never started."""
        self.refs.pop(fut, None)
        try:
            return fut.result()
        except self.ray.exceptions.TaskCancelledError:
            if not Path(log).exists():
                return None, None, "", None  # cancelled while it waited for a node
            return (130, *read_log(log), None)
        except Exception as e:  # noqa: BLE001  (a task's error, a lost worker or node: this job failed)
            return None, read_log(log)[0], f"fastmask: error: Ray: {_reason(e)}", None

    def stop(self, futures, logs):
        """Ctrl-C: cancel the tasks that have not started (no log yet); the started ones stop by the queue's
        stop file and hand back their outcome. Ray's own cancel of a running task is not relied on: it can
        be reported before the task has stopped its process, or reach the task late (ray-project/ray#32954)."""
        for fut, log in zip(futures, logs):
            if fut in self.refs and not Path(log).exists():
                self.ray.cancel(self.refs[fut])

    def close(self):
        if self.owned:
            self.ray.shutdown()


def _reason(e):
    # a task's own error comes wrapped (RayTaskError, its text coloured for a terminal): say the cause
    e = getattr(e, "cause", None) or e
    return re.sub(r"\x1b\[[0-9;]*m", "", one_line(e))[:300]


# HTTP/2's client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, its client server) answers
# with a frame of its own (its SETTINGS, frame type 4); a port that accepts and says nothing is not Ray
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def trying(address):
    """The line the queue prints before it joins Ray at `address`: what it is about to try."""
    if address == "auto":
        return "queue: joining Ray: the running cluster on this machine, else a local instance started now"
    return f"queue: joining the Ray cluster at {address} (it has {CONNECT_S} s to answer)"


def reachable(address):
    """A FastmaskError when nothing answers as Ray at a host:port `address` (ray:// too) within CONNECT_S
    seconds: nothing listening, or a port that accepts and stays silent (Ray itself would retry either for
    minutes, printing a warning every few seconds). Ray's head speaks gRPC: it must answer HTTP/2's opening
    within the same time (not checked with RAY_USE_TLS, whose servers wait for TLS). "auto" and other forms
    are left to Ray."""
    hostport = address.removeprefix("ray://")
    host, colon, port = hostport.rpartition(":")
    if not colon or not port.isdigit() or not host:
        return
    deadline = time.monotonic() + CONNECT_S
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_S) as conn:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return
            conn.sendall(PREFACE)
            head = b""
            while len(head) < 9:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                got = conn.recv(9 - len(head))
                if not got:
                    break
                head += got
    except socket.timeout:
        raise FastmaskError(f"--ray {address}: {host}:{port} accepts connections but did not answer as Ray within "
                            f"{CONNECT_S} s; is it the head's GCS port (ray start --head --port={port})?") from None
    except OSError as e:
        raise FastmaskError(f"--ray {address}: nothing answers at {host}:{port} ({e.strerror or e}); start the head "
                            f"there (ray start --head --port={port}) or use --ray auto") from None
    if len(head) < 4 or head[3] != 4:  # closed, or answered in another protocol
        raise FastmaskError(f"--ray {address}: {host}:{port} answers, but not as Ray (no gRPC); is it the head's GCS "
                            f"port (ray start --head --port={port})?")


def connect(ray, address):
    """Join Ray: (whether this call connected, so it disconnects at the end; the address; one line saying
    what it did). "auto": the running cluster if there is one, else a local instance started now."""
    if ray.is_initialized():  # a notebook or a test that joined Ray already: use that, leave it connected
        if address not in ("auto", _gcs(ray)):
            raise FastmaskError(f"--ray {address}: this process is already connected to Ray at {_gcs(ray)}")
        return False, _gcs(ray), f"using this process's Ray connection ({_gcs(ray)})"
    # Ray's own lines stay out of the console: its Python logging, its workers' output, and its C++ core's
    # warnings (RAY_BACKEND_LOG_LEVEL), which a slow or refused connection prints every few seconds
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    opts = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address == "auto":
        try:
            _init(ray, address="auto", **opts)
            return True, _gcs(ray), f"joined the running Ray cluster at {_gcs(ray)}"
        except ConnectionError:
            _init(ray, **opts)
            return True, _gcs(ray), f"no running Ray cluster: started a local Ray instance ({_gcs(ray)})"
    try:
        _init(ray, address=address, **opts)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise FastmaskError(f"--ray {address}: cannot connect: {one_line(e, named=False)}") from None
    return True, _gcs(ray), f"joined the Ray cluster at {_gcs(ray)}"


def _init(ray, **kw):
    # ray.init makes SIGTERM exit at once (even when it fails to connect); the queue's own handler, which ends
    # it as Ctrl-C does (each run marked interrupted), is put back
    if threading.current_thread() is not threading.main_thread():
        return ray.init(**kw)
    term = signal.getsignal(signal.SIGTERM)
    try:
        return ray.init(**kw)
    finally:
        if term is not None:
            signal.signal(signal.SIGTERM, term)


def _gcs(ray):
    return ray.get_runtime_context().gcs_address

"""Run folders: runs/<UTC stamp>-<recipe>/ with the recipe as run, its config, history, metrics,
plots, card and exported learner. Files are written atomically; a run never overwrites another.

status.json says what a run is doing and cannot lie for long: it carries the pid and host of the
process that writes it, and while the run is "running" a daemon thread refreshes its heartbeat.
A "running" run whose process is gone (this host) or whose heartbeat is stale (any host) reads as
"lost" (`effective_status`), and each new Run writes "lost" into such runs of its runs folder."""
import atexit
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import weakref
from datetime import datetime, timezone
from pathlib import Path

from fastmask.errors import FastmaskError, one_line
from fastmask.io import atomic_write, pid_alive, signature

# The run folder's files, by name: every module opens them through these (the names on disk never change).
RECIPE_FILE = "recipe.py"           # the recipe file as run
CONFIG = "config.json"              # every resolved field, written once before training
STATUS = "status.json"              # what the run is doing, with its heartbeat
HISTORY = "history.csv"             # per epoch (several folds or seeds: one frame with a fold/seed column)
VALID_PREDS = "valid_preds.csv"     # validation (out-of-fold) predictions: the verdict's input
HOLDOUT_PREDS = "holdout_preds.csv" # predictions on the eval images when they have answers
OOF = "oof.csv"                     # k folds: every training image once
SUSPECTS = "suspects.csv"           # k folds: images whose out-of-fold prediction disagrees with the label
FOLD_SCORES = "folds.csv"           # per-fold macro F1, read when metrics.json has no "folds"
METRICS = "metrics.json"
CARD = "card.md"
MODEL_PKL = "model.pkl"             # fastai's pickle (folds: fold0.pkl, ...; the first linked here)
MODEL_SAFETENSORS = "model.safetensors"  # with model.json: the model without code (models.model_files)

# The plots a run may draw beside its card (report.plots), in the order the card shows them, with alt text.
CONFUSION_PLOT, PER_CLASS_F1_PLOT, CURVES_PLOT = "confusion.png", "per_class_f1.png", "curves.png"
BATCHES_PLOT, LR_FIND_PLOT = "batches.png", "lr_find.png"
PLOTS = ((CONFUSION_PLOT, "confusion"), (PER_CLASS_F1_PLOT, "per-class F1"), (CURVES_PLOT, "learning curves"),
         (BATCHES_PLOT, "per-batch loss and lr"), (LR_FIND_PLOT, "lr finder"))
TOP_LOSSES = "top_losses.png"       # drawn beside the card from the validation predictions
# a child run's "Why": per-class F1 change against the parent run, and the images it fixed and broke
CLASS_DELTA_PLOT, FLIPS_PLOT = "class_delta.png", "flips.png"
PLOT_FILES = (*(name for name, _ in PLOTS), TOP_LOSSES, CLASS_DELTA_PLOT, FLIPS_PLOT)  # every plot a run folder may hold
# What a run publishes for a reader (the board's links, MLflow's artifacts), in this order.
RECORDS = (CARD, CONFIG, METRICS, HISTORY, VALID_PREDS, RECIPE_FILE)
HEARTBEAT_S = 30.0      # seconds between heartbeats; FASTMASK_HEARTBEAT_S overrides it (tests use less)
LOST_AFTER = 5          # heartbeats missed before a running run reads as lost (slow disks, busy GIL)


# --- files ----------------------------------------------------------------------------------------

def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path, default=None):
    """The JSON object in `path`, or `default` when it is missing, unreadable or not an object: every
    file fastmask reads is an object, and one folder holding `[]` must not crash a reader of all runs."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default
    return value if isinstance(value, dict) else default


def finite_number(v):
    """Whether `v`, as read from a run's JSON, is a number to show or log: an int or float that is finite
    (True/False are no figures; NaN and infinity, which a hand-edited file may hold, neither)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def json_problem(path):
    """Why `path` is not a readable JSON object (None when it is, or when it does not exist)."""
    return load_json(path)[1]


def load_json(path):
    """(the JSON object in `path`, else {}; why it is not a readable JSON object, else None), from one read: a
    missing file is {} with no problem (a run folder need not hold every file)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, None
    except OSError as e:
        return {}, f"{path.name}: {e.strerror}"
    except ValueError:  # not UTF-8 either
        return {}, f"{path.name} is not valid JSON"
    if not isinstance(value, dict):
        return {}, f"{path.name} holds {type(value).__name__}, not an object"
    return value, None


def utc_stamp():
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _now_iso(now=None):
    # milliseconds: a heartbeat of a fraction of a second (tests) must still move
    return (now or datetime.now(timezone.utc)).isoformat(timespec="milliseconds")


def heartbeat_period():
    """Seconds between heartbeats: FASTMASK_HEARTBEAT_S when set, else HEARTBEAT_S."""
    text = os.environ.get("FASTMASK_HEARTBEAT_S")
    if text is None:
        return HEARTBEAT_S
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise FastmaskError(f"FASTMASK_HEARTBEAT_S={text!r}: expected a positive number of seconds")
    return v


# --- is a running run alive? ------------------------------------------------------------------------

def _parse_time(text):
    try:
        t = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def lost_reason(st, now=None, host=None):
    """Why a status dict that says "running" is not (None when it may well be): its process is gone
    from this host, or its heartbeat is older than LOST_AFTER periods. A status without pid or
    heartbeat (written before they existed) cannot be judged and is taken at its word."""
    if not isinstance(st, dict) or st.get("status") != "running":
        return None
    host = host or socket.gethostname()
    if st.get("host") == host and pid_alive(st.get("pid")) is False:
        return f"process {st['pid']} on {host} is gone"
    beat = _parse_time(st.get("heartbeat"))
    if beat is None:
        return None
    period = st.get("heartbeat_s")
    period = period if isinstance(period, (int, float)) and math.isfinite(period) and period > 0 else HEARTBEAT_S
    silent = ((now or datetime.now(timezone.utc)) - beat).total_seconds()
    if silent > LOST_AFTER * period:  # a heartbeat from the future (clock skew) is taken as alive
        return f"no heartbeat for {silent:.0f} s (every {period:g} s expected) from {st.get('host') or 'its host'}"
    return None


def effective_status(run_dir_or_status):
    """A run's status as it truly is: the recorded one, or "lost" for a "running" run that is not.
    Takes a run folder or its status.json dict; "?" when the folder has no readable status."""
    st = run_dir_or_status
    if not isinstance(st, dict):
        st = read_json(Path(st) / STATUS, {})
    status = st.get("status")
    if not isinstance(status, str):
        return "?"
    return "lost" if lost_reason(st) else status


def mark_lost(runs_dir):
    """Write "lost" into every run folder of `runs_dir` whose status says running but is not (keeping
    its fields, adding when and why). Best effort: a folder we cannot write is left alone. Returns them."""
    found = []
    try:
        folders = sorted(p for p in Path(runs_dir).iterdir() if p.is_dir())
    except OSError:
        return found
    for d in folders:
        st = read_json(d / STATUS)
        why = lost_reason(st)
        if not why:
            continue
        try:
            write_json(d / STATUS, {**st, "status": "lost", "found_lost": _now_iso(), "lost_reason": why})
        except OSError:
            continue
        found.append(d)
    return found


# --- one run ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM blocked in this thread for the block. A thread started inside keeps them
    blocked, so the kernel hands those signals to the main thread only; otherwise a signal taken by the
    heartbeat thread would run the Python handler in the main thread even while the main thread holds
    them back (run.py does so around the final status)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


_BEATING = weakref.WeakSet()  # runs whose heartbeat thread may be writing


@atexit.register
def _quiet_heartbeats():
    # Daemon threads are frozen wherever they are at exit: let a beat in flight finish its rename
    # rather than leave a stray .status.json.* temp file behind.
    for run in list(_BEATING):
        run._stop.set()
        with run._lock:
            pass


class Run:
    """One run's folder. Created exclusively: two runs started in the same second get two folders.

    `mark(status, **extra)` rewrites status.json; while the status is "running" a daemon thread keeps
    its heartbeat fresh. As a context manager, a run left "running" when the block ends is marked
    "interrupted" (Ctrl-C, SIGTERM raised as KeyboardInterrupt) or "failed" with the error."""
    def __init__(self, runs_dir, recipe):
        # Absolute: fastai joins learn.path with every file name it writes, and a relative run folder
        # would be joined twice ("runs/x/runs/x/model.pkl"); normalised, so `proj/../runs` prints as `runs`
        # (abspath, not resolve: a symlinked runs folder keeps the name the user gave it)
        runs_dir = Path(os.path.abspath(runs_dir))
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FastmaskError(f"runs folder {runs_dir}: {e.strerror}") from None
        self.period = heartbeat_period()
        mark_lost(runs_dir)
        base = f"{utc_stamp()}-{recipe.name}"
        for i in range(1, 1000):
            d = runs_dir / (base if i == 1 else f"{base}-{i}")
            try:
                d.mkdir()
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise FastmaskError(f"runs folder {runs_dir}: {e.strerror}") from None
        self.dir, self.recipe = d, recipe
        self.started = datetime.now(timezone.utc)
        # RLock: a signal handler in the main thread may mark while the main thread is inside mark
        self._lock, self._state, self._beat, self._stop = threading.RLock(), {}, None, threading.Event()
        if recipe.file:
            shutil.copyfile(recipe.file, d / RECIPE_FILE)
        self.mark("running")

    def path(self, name):
        return self.dir / name

    def minutes(self):
        """Minutes since the run started."""
        return round((datetime.now(timezone.utc) - self.started).total_seconds() / 60, 2)

    @property
    def status(self):
        return self._state.get("status")

    @property
    def state(self):
        """status.json as last written (a copy)."""
        with self._lock:
            return dict(self._state)

    def mark(self, status, **extra):
        """Record `status` (e.g. "finished", or "failed" with error="...") and any extra fields."""
        with self._lock:
            self._state = {"status": status, "started": self.started.isoformat(timespec="seconds"),
                           "updated": _now_iso(), "pid": os.getpid(), "host": socket.gethostname(),
                           "heartbeat_s": self.period, **extra}
            if status != "running":
                self._stop.set()  # first: should this write fail, no later beat claims the run is alive
            self._write()
            if status == "running":
                self._start_heartbeat()

    def _write(self):
        now = datetime.now(timezone.utc)
        self._state.update(heartbeat=_now_iso(now), minutes=self.minutes())
        write_json(self.path(STATUS), self._state)

    def _start_heartbeat(self):
        if self._beat is not None and self._beat.is_alive() and not self._stop.is_set():
            return
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, args=(self._stop,), daemon=True,
                                      name=f"fastmask-heartbeat-{self.dir.name}")
        with _signals_held():  # the thread inherits the mask, so it never takes Ctrl-C or SIGTERM
            self._beat.start()
        _BEATING.add(self)

    def _heartbeat(self, stop):
        while not stop.wait(self.period):
            try:
                with self._lock:
                    # checked under the lock that mark holds while writing: a beat can never land
                    # after a final status
                    if stop.is_set() or self._state.get("status") != "running":
                        return
                    self._write()
            except Exception:  # noqa: BLE001  (a full disk for a moment must not kill the run; the next beat retries)
                continue

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if self.status == "running":
            if kind is None:
                self.mark("failed", error="the run ended without recording a final status")
            elif issubclass(kind, KeyboardInterrupt):
                self.mark("interrupted")
            else:
                self.mark("failed", error=one_line(exc, limit=500))
        return False


def device_name(torch):
    """The device a run trains on, as a person would name it: "NVIDIA H100 80GB HBM3" (x2), or "cpu"."""
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return torch.cuda.get_device_name(0) + (f" x{n}" if n > 1 else "")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def environment():
    """What a reader needs to reproduce a run: commit, dirty tree, versions, command; and for a team sharing a
    runs folder, who ran it, on which host and device."""
    import fastai
    import timm
    import torch

    from fastmask.learn.distributed import world_size
    env = {"python": platform.python_version(), "torch": torch.__version__, "fastai": fastai.__version__,
           "timm": timm.__version__, "command": " ".join([Path(sys.executable).name, "-m", "fastmask.run", *sys.argv[1:]]),
           "processes": world_size(),  # data-parallel: bs is per process, the effective batch bs x processes
           **signature(), "device": device_name(torch)}
    try:
        top = Path(__file__).resolve().parent.parent
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=top, capture_output=True,
                                       text=True, timeout=5).stdout.strip() or None
        env["dirty"] = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=top,
                                           capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        env["commit"] = None
    return env


"""Run folders: runs/<UTC stamp>-<recipe>/ with the recipe as run, its config, history, metrics,
plots, card and exported learner. Files are written atomically; a run never overwrites another."""
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from .errors import FastmaskError

STATUS = "status.json"


def atomic_write(path, data, mode="w"):
    """Write to a temp file beside `path` and rename, so a crash never leaves half a file under its name."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def utc_stamp():
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class Run:
    """One run's folder. Created exclusively: two runs started in the same second get two folders."""
    def __init__(self, runs_dir, recipe):
        # Absolute: fastai joins learn.path with every file name it writes, and a relative run folder
        # would be joined twice ("runs/x/runs/x/model.pkl").
        runs_dir = Path(runs_dir).absolute()
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FastmaskError(f"runs folder {runs_dir}: {e.strerror}") from None
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
        if recipe.file:
            shutil.copyfile(recipe.file, d / "recipe.py")
        self.mark("running")

    def path(self, name):
        return self.dir / name

    def mark(self, status, **extra):
        now = datetime.now(timezone.utc)
        write_json(self.path(STATUS), {"status": status, "started": self.started.isoformat(timespec="seconds"),
                                       "updated": now.isoformat(timespec="seconds"),
                                       "minutes": round((now - self.started).total_seconds() / 60, 2), **extra})


def environment():
    """What a reader needs to reproduce a run: commit, dirty tree, versions, command."""
    import fastai
    import timm
    import torch
    env = {"python": platform.python_version(), "torch": torch.__version__, "fastai": fastai.__version__,
           "timm": timm.__version__, "command": " ".join([Path(sys.executable).name, "-m", "fastmask.run", *sys.argv[1:]])}
    try:
        top = Path(__file__).resolve().parent.parent
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=top, capture_output=True,
                                       text=True, timeout=5).stdout.strip() or None
        env["dirty"] = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=top,
                                           capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        env["commit"] = None
    return env


def finished_runs(runs_dir, name=None, fingerprint=None):
    """Finished run folders (newest first), optionally of one recipe name and one data fingerprint."""
    out = []
    for d in sorted(Path(runs_dir).glob("*/"), reverse=True):
        st, cfg = read_json(d / STATUS, {}), read_json(d / "config.json", {})
        if st.get("status") != "finished":
            continue
        if name and cfg.get("name") != name:
            continue
        if fingerprint and cfg.get("data_fingerprint") != fingerprint:
            continue
        out.append(d)
    return out

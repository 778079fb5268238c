import contextlib
import io
import os
import sys

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one of several test workers sharing the cores: torch threads per worker (and per process a test starts)
    # would collapse each other, as two CPU-bound runs on 2 cores do
    os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: timm must not retry the hub
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
if "FASTMASK_CACHE" not in os.environ:  # tests never touch the user's image cache
    import tempfile
    os.environ["FASTMASK_CACHE"] = tempfile.mkdtemp(prefix="fastmask-cache-")

import pytest

TINY = ["--set", "arch=test_resnet", "--set", "size=32,24", "--set", "epochs=1", "--set", "bs=16",
        "--set", "pretrained=false"]


def _recipe_modules():
    return [k for k in sys.modules if k == "recipes" or k.startswith("recipes.")]


@pytest.fixture(autouse=True)
def recipes_as_found():
    """Each test leaves the `recipes` package (a project's, imported by load_recipe) and sys.path as it found
    them, so what a later test imports does not depend on which tests ran before it (or on which worker)."""
    mods, path = {k: sys.modules[k] for k in _recipe_modules()}, list(sys.path)
    yield
    for k in _recipe_modules():
        if k not in mods:
            del sys.modules[k]
    sys.modules.update(mods)
    sys.path[:] = path


@pytest.fixture(scope="session")
def twin(tmp_path_factory):
    """A tiny synthetic twin (train + eval with answers), made once per test session."""
    from fastmask.twin import make_twin
    root = tmp_path_factory.mktemp("twin") / "twin"
    make_twin(root, people=40, eval_people=10, seed=1, size=(48, 64), progress=False)
    return root


@contextlib.contextmanager
def as_new_process(cwd=None):
    """Run the body as a process started in `cwd` (default: the repository) would, then put this one back: the
    working directory, the `recipes` package (`cwd`'s project's while inside), sys.path, warning filters and
    the SIGINT/SIGTERM handlers a command installs. Yields (stdout, stderr) as StringIOs."""
    import signal
    import warnings
    from pathlib import Path
    out, err = io.StringIO(), io.StringIO()
    here, handlers = os.getcwd(), {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    recipes, path = {k: sys.modules.pop(k) for k in _recipe_modules()}, list(sys.path)
    try:
        os.chdir(cwd or Path(__file__).resolve().parent.parent)
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out, err
    finally:
        os.chdir(here)
        for k in _recipe_modules():
            del sys.modules[k]
        sys.modules.update(recipes)
        sys.path[:] = path
        for s, h in handlers.items():
            signal.signal(s, h)


def in_process(command, *args, cwd=None):
    """`python -m fastmask.COMMAND ARGS` called in this process, as the entry point calls it (FastmaskError ->
    exit 2, Ctrl-C -> 130), inside `as_new_process(cwd)`: a CompletedProcess with its exit status and what it
    printed. For tests where a new process is not what is tested, it saves the interpreter start and the
    torch/fastai import (seconds each)."""
    import importlib
    import subprocess

    from fastmask.errors import cli
    main = importlib.import_module(f"fastmask.{command}").main
    argv = [str(a) for a in args]
    with as_new_process(cwd) as (out, err):
        try:
            code = cli(main)(argv)
        except SystemExit as e:
            code = e.code
    return subprocess.CompletedProcess(argv, 0 if code is None else code, out.getvalue(), err.getvalue())

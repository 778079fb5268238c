import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: timm must not retry the hub
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
if "FASTMASK_CACHE" not in os.environ:  # tests never touch the user's image cache
    import tempfile
    os.environ["FASTMASK_CACHE"] = tempfile.mkdtemp(prefix="fastmask-cache-")

import pytest

TINY = ["--set", "arch=test_resnet", "--set", "size=32,24", "--set", "epochs=1", "--set", "bs=16",
        "--set", "pretrained=false"]


@pytest.fixture(scope="session")
def twin(tmp_path_factory):
    """A tiny synthetic twin (train + eval with answers), made once per test session."""
    from fastmask.twin import make_twin
    root = tmp_path_factory.mktemp("twin") / "twin"
    make_twin(root, people=40, eval_people=10, seed=1, size=(48, 64), progress=False)
    return root


def in_process(command, *args, cwd=None):
    """`python -m fastmask.COMMAND ARGS` called in this process, as the entry point calls it (FastmaskError ->
    exit 2, Ctrl-C -> 130): a CompletedProcess with its exit status and what it printed. For tests where a new
    process is not what is tested, it saves the interpreter start and the torch/fastai import (seconds each).
    The signal handlers and warning filters a command installs are put back, and the working directory."""
    import contextlib
    import importlib
    import io
    import signal
    import subprocess
    import warnings
    from pathlib import Path
    from fastmask.errors import cli
    main = importlib.import_module(f"fastmask.{command}").main
    out, err = io.StringIO(), io.StringIO()
    here, handlers = os.getcwd(), {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    argv = [str(a) for a in args]
    try:
        os.chdir(cwd or Path(__file__).resolve().parent.parent)
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli(main)(argv)
            except SystemExit as e:
                code = e.code
    finally:
        os.chdir(here)
        for s, h in handlers.items():
            signal.signal(s, h)
    return subprocess.CompletedProcess(argv, 0 if code is None else code, out.getvalue(), err.getvalue())

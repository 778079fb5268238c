"""What a run prints: bars on a terminal, one plain line per epoch into a pipe (no carriage returns, figures to
4 decimals, history.csv still exact), nothing but the headline with --quiet (MLflow's INFO lines included);
usage lines name the command as it was called."""
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fastmask import console

REPO = Path(__file__).resolve().parent.parent
SETS = ["--set", "arch=test_resnet", "--set", "size=32,24", "--set", "bs=16", "--set", "pretrained=false"]
FIG = r"-?\d+\.\d{4}"
EPOCH = re.compile(rf"epoch (\d+)/(\d+)  train_loss {FIG}  valid_loss {FIG}  macro_f1 {FIG}  accuracy {FIG}"
                   rf"  time \d\d:\d\d(  best)?")
HEADLINE = re.compile(r"^person_split \[finished\]: validation macro F1 ", re.M)


def run_piped(tmp_path, twin, *args, env=None):
    """`python -m fastmask.run` with stdout and stderr into pipes, as `... | tee log` runs it."""
    env = {**os.environ, "FASTMASK_QUIET": "", **(env or {})}
    p = subprocess.run([sys.executable, "-m", "fastmask.run", "recipes/person_split.py", "--no-parent", *SETS, *args,
                        "--data", str(twin), "--runs", str(tmp_path / "runs")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env, timeout=600)
    out, err = p.stdout.decode(), p.stderr.decode()
    assert p.returncode == 0, err[-2000:]
    return out, err


# --- a run into a pipe (subprocesses: ~20 s each) ---------------------------------------------------------

def test_piped_run_prints_one_plain_line_per_epoch_with_rounded_figures(tmp_path, twin):
    out, err = run_piped(tmp_path, twin, "--set", "epochs=2")
    assert "\r" not in out + err and "\x1b" not in out
    epochs = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 2, out
    for n, line in enumerate(epochs, 1):
        m = EPOCH.fullmatch(line)
        assert m and (int(m[1]), int(m[2])) == (n, 2), line
    assert epochs[0].endswith("  best")  # the first epoch is always KeepBest's best so far
    assert "Better model found" not in out  # said on the epoch's line instead
    assert HEADLINE.search(out) and "\n\n" not in out  # no empty line a rich bar leaves in a pipe
    # the figures are rounded on screen only: history.csv keeps fastai's full values
    hist = pd.read_csv(next((tmp_path / "runs").glob("*/history.csv")))
    assert len(hist) == 2 and any(len(str(x).split(".")[-1]) > 4 for x in hist["valid_loss"])


def test_quiet_run_prints_the_headline_and_no_epochs_and_mlflow_stays_quiet(tmp_path, twin):
    env = {}
    try:
        import mlflow  # noqa: F401
        env["FASTMASK_MLFLOW"] = str(tmp_path / "mlflow.db")  # a new store: MLflow would say it creates tables
    except ImportError:
        pass
    out, err = run_piped(tmp_path, twin, "--set", "epochs=1", "--quiet", env=env)
    assert HEADLINE.search(out), out
    assert not re.search(r"^(epoch|Epoch|precision:|Better model)", out, re.M), out
    assert "\r" not in out + err and "INFO" not in err, err[-2000:]
    if env:
        assert (tmp_path / "mlflow.db").is_file()  # tracking did run


# --- in process -----------------------------------------------------------------------------------------

def test_mode_follows_the_command_then_the_environment_then_the_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.delenv("FASTMASK_QUIET", raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert console.mode() == console.LINES or "ipykernel" in sys.modules
    monkeypatch.setattr(sys, "stdout", Tty())
    assert console.mode() == console.BARS
    monkeypatch.setenv("FASTMASK_QUIET", "1")
    assert console.mode() == console.QUIET
    with console.using(console.LINES):
        assert console.mode() == console.LINES
        with console.using(None):
            assert console.mode() == console.LINES
    assert console.mode() == console.QUIET
    with pytest.raises(ValueError):
        with console.using("loud"):
            pass


def test_figures_are_rounded_to_four_decimals():
    import numpy as np
    assert [console.figure(x) for x in (3, 0.123456789, np.float32(2.5), np.float64(1e-7), "00:03", None)] == \
        ["3", "0.1235", "2.5000", "0.0000", "00:03", "None"]


def test_usage_names_the_command_as_it_was_called(capsys):
    from fastmask.__main__ import main
    from fastmask.run import parse
    with pytest.raises(SystemExit):
        parse(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m fastmask.run ")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert capsys.readouterr().out.startswith("usage: fastmask run ")
    assert console.prog("mlflow-sync") == "python -m fastmask.mlflow_sync"  # the dispatcher's name is gone again


def test_bars_keep_fastais_table_rounded_and_lines_leave_the_learner_as_fastai_left_it(twin, capsys, tmp_path):
    from fastai.callback.progress import CSVLogger

    from fastmask.data.dls import build_dls
    from fastmask.data.load import load_data
    from fastmask.learn.build import build_learner
    from fastmask.recipe import load_recipe, parse_sets
    r = load_recipe(REPO / "recipes" / "person_split.py", parse_sets(SETS[1::2] + ["epochs=1"]))
    with console.using(console.BARS):
        learn = build_learner(r, build_dls(r, load_data(twin, progress=False).train), notify=lambda m: None)
        learn.path = tmp_path
        capsys.readouterr()
        learn.fit(1, 1e-3)
    out = capsys.readouterr().out.replace("\r", "\n")
    row = next(line for line in out.splitlines() if re.match(r"^1\s+\d", line))  # epochs from 1, as everywhere
    assert re.fullmatch(rf"1\s+{FIG}\s+{FIG}\s+{FIG}\s+{FIG}\s+\d\d:\d\d\s*", row), row
    assert "Better model found at epoch 1" in out
    assert "_write_stats" not in learn.progress.__dict__  # nothing of ours left on fastai's callback
    assert learn.logger is print
    with console.using(console.LINES):  # CSVLogger wraps our logger and puts it back after the fit: not ours
        learn.fit(1, 1e-3, cbs=[CSVLogger()])
    out = capsys.readouterr().out
    assert EPOCH.fullmatch(out.strip()) and "\r" not in out, out
    assert learn.logger is print and learn.progress.run  # an export pickles no ConsoleProgress through it

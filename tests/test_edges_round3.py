"""Issue 31's odd ones: --decide-minutes that mean no limit are refused, and the commands the package prints
for a user to paste do what they say from any folder (the card's --decide command continues the evidence
there is, with this interpreter, the recipe file, --data and --runs by their full paths; init's hint goes
into the project first)."""
import json
import shlex
import sys

import pytest

from conftest import in_process
from test_queue import project


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf", "-0"])
def test_decide_minutes_that_set_no_limit_are_one_line_exit_2(tmp_path, minutes):
    p = in_process("run", "recipes/oversample_cutmix.py", "--decide", "--decide-minutes", minutes,
                   "--runs", tmp_path / "runs", "--data", tmp_path / "nowhere")
    shown = {"-0": "-0", "inf": "inf", "nan": "nan"}.get(minutes, minutes)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == (f"fastmask: error: python -m fastmask.run: --decide-minutes {shown}: not a positive number of "
                        "minutes (leave it out for no time limit)\n")
    assert not (tmp_path / "runs").exists()


def test_a_positive_decide_minutes_is_taken(tmp_path):
    from fastmask.run import parse
    assert parse(["recipes/a.py", "--decide-minutes", "0.5"]).decide_minutes == 0.5


def test_the_cards_decide_command_pasted_in_another_folder_continues_the_evidence(twin, tmp_path):
    """Trained from the project with relative --data and --runs, the child's card prints its --decide command;
    pasted as printed from another folder it reuses the child's run (no new twin, no seed 0 again)."""
    root = project(tmp_path / "proj")
    (root / "data").symlink_to(twin)
    p = in_process("run", "recipes/a.py", "--data", "data", "--runs", "runs", cwd=root)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    (child,) = (root / "runs").glob("*-a")
    cfg = json.loads((child / "config.json").read_text())  # what a re-judge from any folder rebuilds it from
    assert (cfg["data"], cfg["recipe_file"]) == (str((root / "data").resolve()), str((root / "recipes" / "a.py").resolve()))
    verdict = json.loads((child / "metrics.json").read_text())["verdict"]
    command = verdict["command"]
    if verdict["verdict"] == "unreplicated":  # a card prints it there ("neither learned" says what to change)
        assert f"`{command}` decides it." in (child / "card.md").read_text()
    args = shlex.split(command)
    assert args == [sys.executable, "-m", "fastmask", "run", str((root / "recipes" / "a.py").resolve()),
                    "--data", str((root / "data").resolve()), "--runs", str((root / "runs").resolve()), "--decide", "6"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = {d.name for d in (root / "runs").iterdir()}
    q = in_process("run", *args[4:-1], "2", cwd=elsewhere)  # as printed, with a budget of 2 paired seeds
    assert q.returncode == 0, q.stdout[-3000:] + q.stderr[-2000:]
    assert f"a: reusing {child.name} for seed(s) 0; adding paired seeds from there" in q.stdout
    assert not list(elsewhere.iterdir())  # no data/twin, no runs/ where it was pasted
    new = {d.name for d in (root / "runs").iterdir()} - before
    assert all(not n.endswith("-a") or "seed" not in n for n in new)
    for d in new:  # only seeds the evidence lacked: seed 1 of each side, if the first look did not stop it
        assert json.loads((root / "runs" / d / "config.json").read_text())["fields"]["seed"] == 1


def test_init_hint_goes_into_the_project_then_runs_this_interpreter(tmp_path, capsys, monkeypatch):
    from fastmask.__main__ import main
    monkeypatch.chdir(tmp_path)
    run = shlex.join([sys.executable, "-m", "fastmask", "run", "recipes/person_split.py", "--set", "epochs=1"])
    assert main(["init", "my-project"]) == 0
    hint = capsys.readouterr().out.splitlines()[-1]
    assert hint == f"run one with: cd {shlex.quote(str(tmp_path / 'my-project'))} && {run}"
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert main(["init"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"run one with: {run}"  # already in the project

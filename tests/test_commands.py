"""The `fastmask` command: the dispatcher hands each subcommand its arguments unchanged through errors.cli, every
subcommand's --help works, an unknown one gets a "did you mean"; `init` writes the shipped recipes and never
overwrites; `mlflow-sync` back-fills each run once."""
import subprocess
import sys
from pathlib import Path

import pytest

from fastmask.__main__ import COMMANDS, main
from fastmask.errors import FastmaskError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name,module", [("run", "fastmask.run"), ("mlflow-sync", "fastmask.mlflow_sync"),
                                         ("synth", "fastmask.synth")])
def test_the_dispatcher_passes_argv_through_unchanged(monkeypatch, name, module):
    import importlib
    seen = []
    monkeypatch.setattr(importlib.import_module(module), "main", lambda argv: seen.append(argv) or 7)
    args = ["recipes/x.py", "--set", "epochs=1", "--data", "a folder", "--", "-x"]
    assert main([name, *args]) == 7
    assert seen == [args]


def test_from_the_shell_the_subcommand_sees_its_own_command_line(monkeypatch):
    """A run records `python -m fastmask.run` + sys.argv[1:] to reproduce it: under `fastmask run ...` that
    must be the run's arguments, not "run recipes/x.py"."""
    import fastmask.run
    seen = []
    monkeypatch.setattr(fastmask.run, "main", lambda argv: seen.append((argv, sys.argv[1:])) or 0)
    monkeypatch.setattr(sys, "argv", ["/venv/bin/fastmask", "run", "recipes/x.py", "--set", "epochs=1"])
    assert main() == 0
    assert seen == [(["recipes/x.py", "--set", "epochs=1"], ["recipes/x.py", "--set", "epochs=1"])]


def test_bad_input_from_a_subcommand_is_one_line_exit_2_and_debug_shows_it(monkeypatch, capsys):
    import fastmask.run

    def bad(argv):
        raise FastmaskError("recipes/x.py: no such recipe file")
    monkeypatch.setattr(fastmask.run, "main", bad)
    with pytest.raises(SystemExit) as e:
        main(["run", "recipes/x.py"])
    assert e.value.code == 2 and capsys.readouterr().err == "fastmask: error: recipes/x.py: no such recipe file\n"
    with pytest.raises(FastmaskError):  # --debug anywhere: the traceback comes through
        main(["run", "recipes/x.py", "--debug"])
    with pytest.raises(FastmaskError):
        main(["--debug", "run", "recipes/x.py"])


def test_python_m_fastmask_help_lists_every_command_with_a_line():
    p = subprocess.run([sys.executable, "-m", "fastmask", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    listed = {line.split()[0]: line for line in p.stdout.splitlines() if line.startswith("  ")}
    assert set(listed) == set(COMMANDS) == {"run", "predict", "compare", "board", "search", "synth", "suspects",
                                            "mlflow-sync", "init", "plan", "note", "tag", "archive", "report"}
    assert all(len(line.split()) > 4 for line in listed.values())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_subcommand_has_a_working_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    out = capsys.readouterr()
    assert e.value.code == 0, out.err
    assert out.out.startswith("usage:") and "not found" not in out.out + out.err
    assert out.out.startswith(f"usage: fastmask {name} "), out.out[:200]  # as called, not `python -m fastmask.run`
    module = sys.modules[COMMANDS[name][0]]
    if name in ("board", "suspects", "compare", "init", "mlflow-sync", "run", "predict", "plan"):  # the whole description
        words = " ".join(module.__doc__.split("\n\n", 1)[1].split())
        assert words in " ".join(out.out.split())


def test_an_unknown_command_gets_a_did_you_mean(capsys):
    for typo, meant in (("compar", "compare"), ("mlflow_sync", "mlflow-sync"), ("preditc", "predict")):
        with pytest.raises(SystemExit) as e:
            main([typo, "x"])
        err = capsys.readouterr().err.splitlines()
        assert e.value.code == 2 and len(err) == 1 and f"did you mean {meant}?" in err[0], err


# --- init ---------------------------------------------------------------------------------------------

def shipped():
    return {p.name: p.read_text() for p in (REPO / "recipes").glob("*.py")}


def test_init_writes_the_shipped_recipes(tmp_path, capsys):
    assert main(["init", str(tmp_path / "proj")]) == 0
    written = {p.name: p.read_text() for p in (tmp_path / "proj" / "recipes").glob("*.py")}
    assert written == shipped() and "__init__.py" in written and "person_split.py" in written
    assert "person_split.py" in capsys.readouterr().out


def test_init_writes_the_shipped_recipes_even_inside_a_project_that_has_its_own(tmp_path, capsys, monkeypatch):
    """`python -m fastmask init` from a project folder: `import recipes` there is the project's package."""
    proj = tmp_path / "proj"
    (proj / "recipes").mkdir(parents=True)
    (proj / "recipes" / "__init__.py").write_text("")
    (proj / "recipes" / "baseline.py").write_text("# the project's own\n")
    for k in [k for k in sys.modules if k == "recipes" or k.startswith("recipes.")]:
        monkeypatch.delitem(sys.modules, k)
    monkeypatch.syspath_prepend(str(proj))
    import recipes
    assert Path(recipes.__file__).parent == proj / "recipes"
    assert main(["init", str(tmp_path / "new")]) == 0
    assert {p.name: p.read_text() for p in (tmp_path / "new" / "recipes").glob("*.py")} == shipped()


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path, capsys):
    mine = tmp_path / "recipes" / "oversample.py"
    mine.parent.mkdir()
    mine.write_text("# my own edit\n")
    with pytest.raises(SystemExit) as e:
        main(["init", str(tmp_path)])
    err = capsys.readouterr().err.splitlines()
    assert e.value.code == 2 and len(err) == 1 and str(mine) in err[0]
    assert mine.read_text() == "# my own edit\n"
    assert sorted(p.name for p in mine.parent.iterdir()) == ["oversample.py"]  # all or nothing


def test_recipes_written_by_init_import_their_parents_from_the_project(tmp_path):
    """A child loads its parent from the project's recipes/ (a regular package beside it), so editing the
    project's parent changes the child, whatever `recipes` package is installed."""
    assert main(["init", str(tmp_path)]) == 0
    parent = tmp_path / "recipes" / "oversample.py"
    parent.write_text(parent.read_text().replace("recipe = parent.but(", "recipe = parent.but(lr=0.0123, "))
    code = ("from fastmask import load_recipe; r = load_recipe('recipes/oversample_cutmix.py'); "
            "print(r.parent.file); print(r.lr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(parent.resolve()), "0.0123"]


# --- mlflow-sync -------------------------------------------------------------------------------------

def test_mlflow_sync_logs_each_run_once(tmp_path, capsys, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from test_card import make_run
    runs = tmp_path / "runs"
    a, _, _ = make_run(runs, "20260101T000000Z", "person_split", metrics={"macro_f1": 0.4})
    b, _, _ = make_run(runs, "20260102T000000Z", "oversample", parent="person_split", metrics={"macro_f1": 0.5})
    (b / "history.csv").write_text("epoch,valid_loss,macro_f1\n0,2.0,0.3\n1,1.5,0.5\n")
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    c = MlflowClient(uri)
    exp = c.create_experiment("fastmask", artifact_location=(tmp_path / "mlartifacts").as_uri())  # not ./mlruns
    stale = c.create_run(exp, tags={"fastmask.run_dir": str(b.resolve())}).info.run_id  # a back-fill that died
    monkeypatch.chdir(tmp_path)  # folders as a user types them: relative
    assert main(["mlflow-sync", f"runs/{b.name}", "--uri", uri]) == 0  # one run folder
    assert main(["mlflow-sync", "runs", "--uri", uri]) == 0  # then its runs folder: only the other is new
    assert main(["mlflow-sync", "runs/", "--uri", uri]) == 0  # nothing new
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("mlflow-sync:")] == [
        "mlflow-sync: 1 run(s) logged, 0 already there", "mlflow-sync: 1 run(s) logged, 1 already there",
        "mlflow-sync: 0 run(s) logged, 2 already there"]
    assert c.get_run(stale).info.lifecycle_stage == "deleted"
    logged = c.search_runs([c.get_experiment_by_name("fastmask").experiment_id])
    assert sorted(r.data.tags["fastmask.run_dir"] for r in logged) == [str(a.resolve()), str(b.resolve())]
    hist = c.get_metric_history(next(r.info.run_id for r in logged if r.data.tags["fastmask.run_dir"] == str(b.resolve())),
                                "macro_f1")
    assert [m.value for m in sorted(hist, key=lambda m: m.step)] == [0.3, 0.5]


def test_mlflow_sync_of_a_folder_without_runs_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["mlflow-sync", str(tmp_path), "--uri", f"sqlite:///{tmp_path / 's.db'}"])
    err = capsys.readouterr().err.splitlines()
    assert e.value.code == 2 and len(err) == 1 and str(tmp_path) in err[0]
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("command", ["run", "predict", "board", "search", "compare", "synth", "plan", "suspects",
                                     "init", "mlflow_sync"])
def test_a_usage_error_is_one_line_exit_2_naming_the_command(command):
    """argparse alone prints its usage above the error (two lines and more): every command says one line."""
    from conftest import in_process
    p = in_process(command, "a", "b", "c", "--no-such-option")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith(f"fastmask: error: python -m fastmask.{command}: ") and "usage:" not in p.stderr
    assert "--no-such-option" in p.stderr or "arguments" in p.stderr

"""A run's notebook: notes, tags and archive written after training, in their own file, by several processes
at once, never touching what training wrote; RUN as a folder or a unique prefix of its name."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastmask.__main__ import main as _main
from fastmask.errors import FastmaskError
from fastmask.store import notebook

REPO = Path(__file__).resolve().parent.parent
TRAINED = {"config.json": '{"recipe": "r"}', "status.json": '{"status": "finished"}', "metrics.json": '{"macro_f1": 0.5}'}


def make_run(runs, name):
    d = runs / name
    d.mkdir(parents=True)
    for f, text in TRAINED.items():
        (d / f).write_text(text)
    return d


@pytest.fixture
def runs(tmp_path):
    r = tmp_path / "runs"
    make_run(r, "20261201T100000Z-person_split")
    make_run(r, "20261201T110000Z-oversample")
    make_run(r, "20261201T120000Z-oversample_cutmix")
    make_run(r, "20261202T090000Z-oversample_cutmix")
    return r


def fastmask(argv):
    """`fastmask ARGV` in this process: its exit status (bad input exits 2 through errors.cli)."""
    try:
        return _main(argv)
    except SystemExit as e:
        return e.code


def cli(*args, cwd):
    """The command as a user types it, `fastmask ...`, from `cwd`."""
    return subprocess.run([sys.executable, "-m", "fastmask", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


def test_a_note_as_typed_from_the_projects_folder_is_dated_signed_and_listed(runs):
    p = cli("note", "20261201T11", "weighting helps the rare classes", cwd=runs.parent)
    assert p.returncode == 0, p.stderr
    assert "20261201T110000Z-oversample: note added" in p.stdout
    lines = (runs / "20261201T110000Z-oversample" / notebook.NOTEBOOK).read_text().splitlines()
    ev = json.loads(lines[0])
    assert len(lines) == 1 and ev["kind"] == "note" and ev["text"] == "weighting helps the rare classes"
    assert ev["user"] and ev["host"] and ev["at"].startswith("20") and ev["at"].endswith("Z")
    listed = cli("note", "20261201T11", cwd=runs.parent)
    assert listed.returncode == 0 and "weighting helps the rare classes" in listed.stdout
    assert f"{ev['user']}@{ev['host']}" in listed.stdout


def test_what_training_wrote_is_never_rewritten(runs):
    d = runs / "20261201T100000Z-person_split"
    before = {f: ((d / f).read_bytes(), (d / f).stat().st_mtime_ns) for f in TRAINED}
    fastmask(["note", str(d), "first", "--runs", str(runs)])
    fastmask(["tag", str(d), "keep", "baseline"])
    fastmask(["archive", str(d)])
    fastmask(["archive", str(d), "--restore"])
    assert {f: ((d / f).read_bytes(), (d / f).stat().st_mtime_ns) for f in TRAINED} == before
    assert sorted(p.name for p in d.iterdir()) == sorted([*TRAINED, notebook.NOTEBOOK])


WRITER = """
import sys
from fastmask.store import notebook
for i in range(int(sys.argv[3])):
    notebook.append(sys.argv[1], "note", text=f"{sys.argv[2]}-{i} " + "x" * 20000)
"""


def test_notes_written_by_four_processes_at_once_all_land_whole(runs):
    d = runs / "20261201T100000Z-person_split"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(d), f"p{k}", "40"],
                              env={**os.environ, "PYTHONPATH": str(REPO)}) for k in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    notes = notebook.read(d).notes  # a torn or interleaved line would be refused here
    assert sorted(n["text"].split()[0] for n in notes) == sorted(f"p{k}-{i}" for k in range(4) for i in range(40))


def test_tags_add_once_remove_and_refuse_what_a_filter_could_not_match(runs, capsys):
    d = runs / "20261201T110000Z-oversample"
    assert fastmask(["tag", str(d), "keep", "baseline", "keep"]) == 0
    assert fastmask(["tag", str(d), "keep"]) == 0  # already there: nothing recorded
    assert notebook.read(d).tags == ["keep", "baseline"]
    assert len((d / notebook.NOTEBOOK).read_text().splitlines()) == 2
    assert fastmask(["tag", str(d), "keep", "--remove"]) == 0
    assert notebook.read(d).tags == ["baseline"]
    capsys.readouterr()
    for bad in ("two words", "tab\there", "-leading", "", "x" * 41, 'quote"d'):
        assert fastmask(["tag", str(d), "good", bad]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "tag" in err, err
    assert notebook.read(d).tags == ["baseline"]  # the good tag before the bad one was not written either


def test_archive_hides_restore_brings_back_and_the_history_stays(runs, capsys):
    a, b = runs / "20261201T110000Z-oversample", runs / "20261201T100000Z-person_split"
    assert fastmask(["archive", str(a), str(b)]) == 0
    assert notebook.read(a).archived["user"] and notebook.read(b).archived
    assert fastmask(["archive", str(a)]) == 0
    assert "already archived" in capsys.readouterr().out
    assert fastmask(["archive", str(a), "--restore"]) == 0
    assert notebook.read(a).archived is None and notebook.read(b).archived is not None
    kinds = [json.loads(line)["kind"] for line in (a / notebook.NOTEBOOK).read_text().splitlines()]
    assert kinds == ["archive", "restore"]


def test_run_is_a_folder_or_a_unique_prefix_of_its_stamp_or_recipe_name(runs):
    assert notebook.resolve("20261201T10", runs).name == "20261201T100000Z-person_split"
    assert notebook.resolve("person", runs).name == "20261201T100000Z-person_split"
    # a recipe name that is whole names its run even where a longer recipe name starts with it
    assert notebook.resolve("oversample", runs).name == "20261201T110000Z-oversample"
    with pytest.raises(FastmaskError, match="2 run folders .* match"):
        notebook.resolve("oversample_cutmix", runs)
    with pytest.raises(FastmaskError, match="3 run folders .* match"):
        notebook.resolve("20261201T1", runs)
    with pytest.raises(FastmaskError, match="no run folder"):
        notebook.resolve("nothing", runs)
    with pytest.raises(FastmaskError, match="not a run folder"):
        notebook.resolve(str(runs), runs)


def test_a_missing_run_and_a_damaged_notebook_are_one_line_exit_2_and_nothing_is_added(runs):
    p = cli("note", "20991231", "text", cwd=runs.parent)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "20991231" in p.stderr, p.stderr
    d = runs / "20261201T110000Z-oversample"
    fastmask(["note", str(d), "kept"])
    book = d / notebook.NOTEBOOK
    book.write_text(book.read_text() + "{not json\n")
    damaged = book.read_text()
    for args in (["note", "20261201T11", "more"], ["tag", "20261201T11", "keep"], ["archive", "20261201T11"]):
        p = cli(*args, cwd=runs.parent)
        assert p.returncode == 2, p.stderr
        assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "line 2" in p.stderr, p.stderr
    assert book.read_text() == damaged

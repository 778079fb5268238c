"""The study report: the tree of hypotheses from run folders alone, open questions with the command that decides
each, the best recipe so far against its root, notes and tags, archived runs left out; as the user types it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastmask.store import notebook
from fastmask.views.study import build, markdown, write

from test_card import make_run

REPO = Path(__file__).resolve().parent.parent


def v(word, delta=None, low=None, high=None, **more):
    return {"verdict": {"verdict": word, "delta": delta, "low": low, "high": high, **more}}


@pytest.fixture
def runs(tmp_path):
    r = tmp_path / "runs"
    make_run(r, "20260101T000000Z", "baseline", fields={"split": "random"},
             metrics={"macro_f1": 0.9, "holdout_macro_f1": 0.30})
    make_run(r, "20260102T000000Z", "person_split", parent="baseline",
             metrics={"macro_f1": 0.5, "holdout_macro_f1": 0.31})  # an older run of the same recipe
    make_run(r, "20260103T000000Z", "person_split", parent="baseline",
             metrics={"macro_f1": 0.4, "holdout_macro_f1": 0.35, **v("supported", 0.05, 0.01, 0.09, seeds=3)})
    make_run(r, "20260104T000000Z", "oversample", parent="person_split",
             metrics={"macro_f1": 0.42, "holdout_macro_f1": 0.38, **v("unreplicated", 0.02, -0.01, 0.05)})
    make_run(r, "20260105T000000Z", "face_crop", parent="person_split",
             metrics={"macro_f1": 0.05, **v("neither learned", advice="Train longer (`--set epochs=15`).")})
    d, _, _ = make_run(r, "20260106T000000Z", "oversample_cutmix", parent="oversample",
                       metrics={"macro_f1": 0.6, "holdout_macro_f1": 0.50, **v("supported", 0.1, 0.05, 0.15)})
    notebook.append(d, "archive")
    make_run(r, "20260107T000000Z", "kfold", parent="person_split", status="running")
    notebook.append(r / "20260104T000000Z-oversample", "note", text="rare classes up; mask errors unchanged")
    notebook.append(r / "20260104T000000Z-oversample", "tag", tag="keep")
    return r


def test_the_tree_open_questions_and_the_best_so_far(runs, tmp_path):
    md = markdown(build([runs]), tmp_path)
    heads = [line for line in md.splitlines() if line.startswith("###")]
    # depth first from the root, children by name; the archived and the running run are not in the tree
    assert heads == ["### baseline", "#### person_split", "##### face_crop", "##### oversample"]
    assert "5 recipes" not in md and "4 recipes, 5 finished runs (1 archived runs left out)" in md
    # best by holdout macro F1: oversample 0.380, the root baseline 0.300 -> +0.080
    assert ("**Best so far:** `oversample`, holdout macro F1 0.380, +0.080 from the root `baseline` (0.300); its line: "
            "`baseline` → `person_split` → `oversample`.") in md
    questions = md.split("## Open questions")[1].split("## Hypotheses")[0]
    assert "- `person_split`" not in questions  # decided
    assert "`oversample` against `person_split`: **unreplicated** +0.020 [-0.010, +0.050]. Decide it: `" in questions
    assert "--decide" in questions and f"--runs {runs.resolve()}" in questions  # pasted from any folder
    assert "`face_crop` against `person_split`: **neither learned**. Train longer (`--set epochs=15`)." in questions
    over = md.split("##### oversample")[1]
    assert "Tags: `keep`" in over and "rare classes up; mask errors unchanged" in over
    ps = md.split("#### person_split")[1].split("#####")[0]
    assert "**supported** +0.050 [+0.010, +0.090] against `baseline` ✔; 3 seeds" in ps and "2 runs" in ps
    assert "newest [20260103T000000Z-person_split](runs/20260103T000000Z-person_split/card.md)" in ps
    assert "(runs/20260103T000000Z-person_split/curves.png)" in ps  # the plot, relative to the report


def test_archived_runs_come_back_when_asked(runs, tmp_path):
    md = markdown(build([runs], archived=True), tmp_path)
    assert "###### oversample_cutmix" in md and "archived runs left out" not in md
    assert "**Best so far:** `oversample_cutmix`, holdout macro F1 0.500, +0.200 from the root" in md


def test_a_random_split_is_not_ranked_on_validation(tmp_path):
    r = tmp_path / "runs"
    make_run(r, "20260101T000000Z", "baseline", fields={"split": "random"}, metrics={"macro_f1": 0.9})
    make_run(r, "20260102T000000Z", "person_split", parent="baseline", metrics={"macro_f1": 0.4})
    md = markdown(build([r]), tmp_path)
    assert "**Best so far:** `person_split`, validation macro F1 0.400;" in md  # not the leaky 0.9


def test_two_team_members_folders_make_one_study(runs, tmp_path):
    other = tmp_path / "alice"
    make_run(other, "20260108T000000Z", "age58", parent="person_split",
             metrics={"macro_f1": 0.41, **v("inconclusive", 0.0, -0.03, 0.03)})
    md = markdown(build([runs, other]), tmp_path)
    assert "##### age58" in md and "`age58` against `person_split`: **inconclusive**" in md


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastmask", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


def test_as_typed_it_writes_the_runs_folders_study_html_with_working_images(runs):
    p = cli("report", cwd=runs.parent)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("study report: runs/study.html (4 recipes, 2 open questions; best so far oversample")
    page = (runs / "study.html").read_text()
    assert "<h1>Study of runs</h1>" in page and '<img src="20260103T000000Z-person_split/curves.png"' in page
    assert (runs / "20260103T000000Z-person_split/curves.png").is_file()
    md = cli("report", str(runs), "--out", "study.md", cwd=runs.parent)
    assert md.returncode == 0 and (runs.parent / "study.md").read_text().startswith("# Study of ")


@pytest.mark.parametrize("setup,args,says", [
    (lambda t: (t / "empty").mkdir(), ["empty"], "empty: no run folders here"),
    (lambda t: (t / "foreign").mkdir() or (t / "foreign" / "x.txt").write_text("x"), ["foreign"], "no run folders"),
    (lambda t: None, ["nowhere"], "nowhere: no such folder"),
    (lambda t: None, ["runs", "--out", "study.txt"], "a study report is .html or .md"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(runs, setup, args, says):
    setup(runs.parent)
    before = sorted(p.name for p in runs.parent.iterdir())
    p = cli("report", *args, cwd=runs.parent)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [p.stderr.strip()] and says in p.stderr, p.stderr
    assert sorted(x.name for x in runs.parent.iterdir()) == before and not (runs / "study.html").exists()


def test_the_default_out_is_refused_before_it_is_written_when_the_folder_is_gone(runs, tmp_path):
    with pytest.raises(Exception, match="no folder"):
        write([runs], tmp_path / "missing" / "s.html")

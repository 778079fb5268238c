"""The board a team shares: each run's notebook (tags, notes, archived) in the table and on the page, who ran it and
on what, several runs folders as one board, `--open`, `--watch` ending once nothing moves, a running run's live
figures, and a child's per-class F1 against its parent. Run folders are written by hand; no training."""
import json
import re
import webbrowser
from pathlib import Path

import pytest
from rich.console import Console

from fastmask.report import explain
from fastmask.store import notebook
from fastmask.views.board import board, watch

from conftest import in_process
from test_card import ENV, fake_preds, make_run

HISTORY = "epoch,train_loss,valid_loss,accuracy,macro_f1,time\n"  # accuracy before macro_f1: columns by name


@pytest.fixture
def runs(tmp_path):
    """person_split -> {oversample -> oversample_cutmix, albu_light (archived)}; a running tta; two people."""
    r = tmp_path / "runs"
    alice = {**ENV, "user": "alice", "host": "lab1", "device": "NVIDIA H100"}
    make_run(r, "20260101T000000Z", "person_split", vp=fake_preds(tmp_path, acc=0.4, seed=3), env=alice)
    make_run(r, "20260101T010000Z", "oversample", parent="person_split", vp=fake_preds(tmp_path, acc=0.7, seed=3),
             env={**ENV, "user": "bob", "host": "lab2", "device": "cpu"})
    make_run(r, "20260101T020000Z", "oversample_cutmix", parent="oversample", vp=fake_preds(tmp_path, acc=0.5, seed=3))
    make_run(r, "20260101T030000Z", "albu_light", parent="person_split", vp=fake_preds(tmp_path, acc=0.5, seed=3))
    make_run(r, "20260101T040000Z", "tta", parent="person_split", status="running", fields={"epochs": 3})
    notebook.append(r / "20260101T010000Z-oversample", "tag", tag="keep")
    notebook.append(r / "20260101T010000Z-oversample", "note", text="rare classes up;\nage still weak")
    notebook.append(r / "20260101T010000Z-oversample", "note", text="second look: the >=60 women gained most")
    notebook.append(r / "20260101T020000Z-oversample_cutmix", "tag", tag="keeper")  # "keep" must not pick it
    notebook.append(r / "20260101T030000Z-albu_light", "archive")
    return r


def table_of(runs, **kw):
    console = Console(record=True, width=250)
    rows = board(runs, console=console, **kw)
    return rows, console.export_text()


def line_of(text, name):
    return next(x for x in text.splitlines() if re.search(rf"(^|\s){name}(\s|$)", x))


def page_data(path):
    html = Path(path).read_text()
    data = re.search(r'<script type="application/json" id="board-data">(.*?)</script>', html, re.S)[1]
    return html, {r["id"]: r for r in json.loads(data)["runs"]}


# --- the notebook on the board --------------------------------------------------------------------

def test_an_archived_run_is_hidden_from_the_table_and_counted_and_shown_with_archived(runs):
    rows, text = table_of(runs)
    assert "albu_light" not in text  # the archived run: not a row
    assert "1 archived run hidden (--archived shows it)" in text
    assert any(r["id"].endswith("albu_light") and r["archived"] for r in rows)  # still read, still evidence
    _, text = table_of(runs, archived=True)
    assert "finished" in line_of(text, "├─ albu_light") and "archived run" not in text
    p = in_process("board", runs, "--archived", "--no-html")
    assert p.returncode == 0 and "albu_light" in p.stdout


def test_hiding_an_archived_parent_leaves_no_guide_to_it(runs):
    notebook.append(runs / "20260101T010000Z-oversample", "archive")
    _, text = table_of(runs)
    assert "2 archived runs hidden (--archived shows them)" in text
    # oversample_cutmix hangs under person_split now, its nearest ancestor shown, with no "│" to a hidden row
    assert [x.split()[:2] for x in text.splitlines() if "finished" in x or "running" in x] == [
        ["person_split", "finished"], ["├─", "oversample_cutmix"], ["└─", "tta"]]


def test_tags_and_notes_are_columns_of_the_table(runs):
    _, text = table_of(runs)
    head = next(x for x in text.splitlines() if x.strip().startswith("run "))
    assert re.split(r"\s{2,}", head.strip())[8:11] == ["tags", "notes", "who"]
    line = line_of(text, "├─ oversample")
    assert "keep" in line and "2: second look: the >=60 women gained most" in line
    assert "keeper" in line_of(text, "└─ oversample_cutmix")


def test_the_page_shows_chips_a_tag_list_notes_in_the_card_and_archived_rows_marked(runs):
    board(runs, console=Console(record=True, width=200))
    html, data = page_data(runs / "index.html")
    assert "study.html" not in html  # no study report beside the page: no link to one
    (runs / "study.html").write_text("<p>the study</p>")
    board(runs, console=Console(record=True, width=200))
    html, data = page_data(runs / "index.html")
    assert 'The study report: <a href="study.html">study.html</a>.' in html
    assert data["20260101T010000Z-oversample"]["tags"] == ["keep"]
    assert [n["text"] for n in data["20260101T010000Z-oversample"]["notes"]] == [
        "rare classes up;\nage still weak", "second look: the >=60 women gained most"]
    assert '<option value="keep">keep</option><option value="keeper">keeper</option>' in html
    assert '<button type="button" class="chip" data-tag="keep"' in html
    assert re.search(r'<tr data-id="20260101T030000Z-albu_light" data-card="[^"]+" data-archived="1" class="archived"',
                     html)
    assert 'id="show-archived"' in html and "show archived (1)" in html
    card = html[html.index('<details class="run" id="run-20260101T010000Z-oversample"'):]
    card = card[:card.index("</details>")]
    assert "<h3>Notes</h3>" in card and "rare classes up;\nage still weak" in card and "bob@lab2" in card


def test_a_damaged_notebook_shows_notebook_unreadable_and_the_board_still_draws(runs, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    (runs / "20260101T020000Z-oversample_cutmix" / notebook.NOTEBOOK).write_text("not json\n")
    p = in_process("board", runs)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("fastmask: warning: board: ")
    assert "notebook.jsonl" in p.stderr and "line 1" in p.stderr
    assert "notebook unreadable" in next(x for x in p.stdout.splitlines() if "oversample_cutmix" in x)
    html, data = page_data(runs / "index.html")
    assert data["20260101T020000Z-oversample_cutmix"]["notebook"] == "notebook unreadable"
    assert "person_split" in html and "tta" in html  # the other runs all drawn


# --- who ran it --------------------------------------------------------------------------------------

def test_who_ran_each_run_and_on_what_an_older_run_blank(runs):
    rows, text = table_of(runs)
    by = {r["name"]: r for r in rows}
    assert (by["person_split"]["who"], by["person_split"]["device"]) == ("alice@lab1", "NVIDIA H100")
    assert (by["oversample"]["who"], by["oversample"]["device"]) == ("bob@lab2", "cpu")
    assert (by["oversample_cutmix"]["who"], by["oversample_cutmix"]["device"]) == ("", "")  # recorded before
    assert "alice@lab1" in line_of(text, "person_split") and "NVIDIA H100" in line_of(text, "person_split")
    assert "@" not in line_of(text, "└─ oversample_cutmix")


def test_runs_that_never_said_who_ran_them_add_no_columns(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "20260101T000000Z", "person_split", vp=fake_preds(tmp_path))
    _, text = table_of(runs)
    head = next(x for x in text.splitlines() if x.strip().startswith("run "))
    assert not {"tags", "notes", "who", "device", "folder"} & set(re.split(r"\s{2,}", head.strip()))


# --- several runs folders -------------------------------------------------------------------------

@pytest.fixture
def two_folders(tmp_path):
    """alice/runs and bob/runs: both folders named "runs", a run of one name in each."""
    a, b = tmp_path / "alice" / "runs", tmp_path / "bob" / "runs"
    make_run(a, "20260101T000000Z", "person_split", vp=fake_preds(tmp_path, seed=1))
    make_run(a, "20260101T010000Z", "oversample", parent="person_split", vp=fake_preds(tmp_path, seed=2))
    make_run(b, "20260101T000000Z", "person_split", vp=fake_preds(tmp_path, seed=3))
    make_run(b, "20260102T000000Z", "cutmix_halves", parent="person_split", vp=fake_preds(tmp_path, seed=4))
    return a, b


def test_several_runs_folders_are_one_board_each_run_labelled_with_its_own_folder(two_folders, tmp_path):
    a, b = two_folders
    rows, text = table_of([a, b])
    got = [(r["folder"], r["id"], r["key"]) for r in rows]
    la, lb = str(a), str(b)  # both named "runs": the paths tell them apart
    assert got == [(la, "20260101T000000Z-person_split", f"{la}/20260101T000000Z-person_split"),
                   (la, "20260101T010000Z-oversample", f"{la}/20260101T010000Z-oversample"),
                   (lb, "20260101T000000Z-person_split", f"{lb}/20260101T000000Z-person_split"),
                   (lb, "20260102T000000Z-cutmix_halves", f"{lb}/20260102T000000Z-cutmix_halves")]
    by = {r["key"]: r for r in rows}
    # each child under the parent run of its own folder
    assert by[f"{lb}/20260102T000000Z-cutmix_halves"]["up"] is by[f"{lb}/20260101T000000Z-person_split"]
    assert str(b) in line_of(text, "└─ cutmix_halves") and str(a) in line_of(text, "└─ oversample")
    # one page, in the first folder, linking the second folder's files from there
    assert (a / "index.html").is_file() and not (b / "index.html").exists()
    html, data = page_data(a / "index.html")
    assert set(data) == set(by) and data[f"{lb}/20260102T000000Z-cutmix_halves"]["folder"] == lb
    assert data[f"{lb}/20260102T000000Z-cutmix_halves"]["parent_run"] == f"{lb}/20260101T000000Z-person_split"
    links = re.findall(r'href="(\.\./\.\./bob/runs/[^"]+)"', html)
    assert links and all((a / l).resolve().is_file() for l in links)
    assert "../../bob/runs/20260102T000000Z-cutmix_halves/card.md" in links or \
        "../../bob/runs/20260102T000000Z-cutmix_halves/config.json" in links


def test_folders_of_different_names_are_labelled_by_name_and_out_writes_the_page_elsewhere(tmp_path):
    a, b = tmp_path / "alice_runs", tmp_path / "bob_runs"
    make_run(a, "20260101T000000Z", "person_split", vp=fake_preds(tmp_path))
    make_run(b, "20260101T000000Z", "person_split", vp=fake_preds(tmp_path))
    out = tmp_path / "shared" / "team.html"
    p = in_process("board", a, b, "--out", out)
    assert p.returncode == 0, p.stderr
    assert out.is_file() and not (a / "index.html").exists()
    _, data = page_data(out)
    assert sorted(r["folder"] for r in data.values()) == ["alice_runs", "bob_runs"]


def test_an_unknown_runs_folder_among_several_is_one_line_exit_2(two_folders, tmp_path):
    a, _ = two_folders
    p = in_process("board", a, tmp_path / "carol")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and str(tmp_path / "carol") in p.stderr, p.stderr
    assert not p.stdout and not (a / "index.html").exists()
    p = in_process("board", a, "--out", tmp_path)  # a folder as the page
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--out" in p.stderr and not p.stdout, p.stderr


# --- --open ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("browser", ["opens", "none", "broken"])
def test_open_prints_the_file_address_with_or_without_a_browser(runs, monkeypatch, browser):
    asked = []

    def fake_open(uri):
        asked.append(uri)
        if browser == "broken":
            raise webbrowser.Error("could not locate runnable browser")
        return browser == "opens"
    monkeypatch.setattr(webbrowser, "open", fake_open)
    p = in_process("board", runs, "--open")
    assert p.returncode == 0 and not p.stderr, p.stderr
    uri = (runs / "index.html").resolve().as_uri()
    assert asked == [uri]
    line = next(x for x in p.stdout.splitlines() if "file://" in x)
    assert line.startswith(f"board: {uri}") and (("no browser" in line) == (browser != "opens"))


# --- --watch ends by itself -----------------------------------------------------------------------

def test_watch_ends_once_nothing_runs_or_waits(runs, monkeypatch):
    import fastmask.views.board as view
    slept = []

    def fake_sleep(seconds):
        slept.append(seconds)
        if len(slept) == 1:  # the running run ends during the first sleep
            st = runs / "20260101T040000Z-tta" / "status.json"
            st.write_text(json.dumps({**json.loads(st.read_text()), "status": "finished"}))
        if len(slept) > 5:
            raise AssertionError("--watch did not end")
    monkeypatch.setattr(view, "sleep", fake_sleep)
    console = Console(record=True, width=250)
    watch(runs, 0.5, console=console)
    assert slept == [0.5]  # round 1 saw a running run; round 2 none: no third sleep
    last = console.export_text().strip().splitlines()[-1]
    assert last == f"board: no run is running and no queue waits in {runs}: stopped watching"
    assert "location.reload" not in (runs / "index.html").read_text()


def test_keep_watching_goes_on_until_ctrl_c(tmp_path, monkeypatch):
    import fastmask.views.board as view
    runs = tmp_path / "runs"
    make_run(runs, "20260101T000000Z", "person_split", vp=fake_preds(tmp_path))
    slept = []

    def fake_sleep(seconds):
        slept.append(seconds)
        if len(slept) == 3:
            raise KeyboardInterrupt
    monkeypatch.setattr(view, "sleep", fake_sleep)
    p = in_process("board", runs, "--watch", "1", "--keep-watching")
    assert p.returncode == 0 and len(slept) == 3 and p.stdout.splitlines()[-1] == f"board: stopped watching {runs}"
    slept.clear()
    p = in_process("board", runs, "--watch", "1")  # nothing running: one round, then the line that says so
    assert p.returncode == 0 and slept == [] and "stopped watching" in p.stdout.splitlines()[-1]
    assert in_process("board", runs, "--keep-watching").returncode == 2


# --- live figures ---------------------------------------------------------------------------------

def test_a_running_row_shows_its_last_epochs_validation_f1_and_loss_by_column_name(runs):
    tta = runs / "20260101T040000Z-tta"
    (tta / "history.csv").write_text(HISTORY + "0,2.0,1.9,0.81,0.071,00:05\n1,1.8,1.7,0.86,0.093,00:05\n")
    rows, text = table_of(runs)
    line = line_of(text, "└─ tta")
    assert "running (epoch 2/3)" in line and "0.093 · loss 1.700" in line and "0.86" not in line
    html, data = page_data(runs / "index.html")
    assert data["20260101T040000Z-tta"]["live"] == {"epoch": 2, "part": None, "macro_f1": 0.093, "valid_loss": 1.7}
    assert data["20260101T040000Z-tta"]["curves"]["macro_f1"] == [0.071, 0.093]  # the curve so far
    assert re.search(r'<td class="num live" data-sort="0.093" title="[^"]*epoch 2[^"]*">0.093 · loss 1.700</td>', html)
    # the next epoch: the next redraw shows it
    with (tta / "history.csv").open("a") as f:
        f.write("2,1.6,1.5,0.9,0.112,00:05\n")
    _, text = table_of(runs)
    assert "0.112 · loss 1.500" in line_of(text, "└─ tta") and "running (epoch 3/3)" in line_of(text, "└─ tta")


def test_several_folds_training_show_the_fold_training_now_and_curves_of_the_folds_so_far(runs):
    import os
    tta = runs / "20260101T040000Z-tta"
    (tta / "history_fold0.csv").write_text(HISTORY + "0,2,1.0,0.5,0.30,00:05\n1,2,0.8,0.5,0.50,00:05\n")
    (tta / "history_fold1.csv").write_text(HISTORY + "0,2,1.2,0.5,0.10,00:05\n")
    os.utime(tta / "history_fold0.csv", (1, 1))
    rows, text = table_of(runs)
    r = next(x for x in rows if x["name"] == "tta")
    assert r["live"] == {"epoch": 1, "part": "fold1", "macro_f1": 0.1, "valid_loss": 1.2}
    assert r["curves"] == {"epoch": [1, 2], "macro_f1": [0.2, 0.5], "valid_loss": [1.1, 0.8], "of": "2 folds"}
    assert "running (fold1, epoch 1/3)" in line_of(text, "└─ tta")


# --- the per-class chart's figures ----------------------------------------------------------------

def test_each_child_carries_its_per_class_deltas_against_its_parent_run(runs):
    board(runs, console=Console(record=True, width=200))
    _, data = page_data(runs / "index.html")
    child, parent = (runs / n / "valid_preds.csv" for n in ("20260101T010000Z-oversample", "20260101T000000Z-person_split"))
    import pandas as pd
    want = explain.class_deltas(explain.paired_rows(pd.read_csv(child, dtype={"person": str}),
                                                    pd.read_csv(parent, dtype={"person": str})))
    got = data["20260101T010000Z-oversample"]["class_deltas"]
    assert [(g["cls"], g["support"]) for g in got] == [(d.cls, d.support) for d in want]
    assert [g["delta"] for g in got] == pytest.approx([d.delta for d in want], abs=1e-4)
    assert [g["low"] for g in got] == pytest.approx([d.low for d in want], abs=1e-4)
    assert data["20260101T010000Z-oversample"]["parent_run"] == "20260101T000000Z-person_split"
    assert data["20260101T000000Z-person_split"]["class_deltas"] is None  # a root: no parent
    assert data["20260101T040000Z-tta"]["class_deltas"] is None  # running: no predictions yet


def test_a_child_without_valid_preds_has_no_chart_and_the_board_draws(runs):
    (runs / "20260101T020000Z-oversample_cutmix" / "valid_preds.csv").unlink()
    (runs / "20260101T010000Z-oversample" / "valid_preds.csv").write_text("path,label\nx,1\n")  # foreign columns
    p = in_process("board", runs)
    assert p.returncode == 0 and not p.stderr, p.stderr
    _, data = page_data(runs / "index.html")
    assert data["20260101T020000Z-oversample_cutmix"]["class_deltas"] is None
    assert data["20260101T010000Z-oversample"]["class_deltas"] is None

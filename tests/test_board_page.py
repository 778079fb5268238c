"""The board's run table (index.html and the terminal): the recipe fields that vary as columns, one row per
run, the cards folded in <details>, the runs' data embedded as JSON that no hypothesis can break out of,
and a k-fold run that says why it has no delta against a single-split parent. Run folders are a few JSON
files written by hand; no training. (The page's script is checked for syntax here; it was driven by hand
in jsdom, since no headless browser is available.)"""
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from fastmask.board import main
from fastmask.views.board import board

REPO = Path(__file__).resolve().parent.parent
BASE = {"arch": "regnetx_002", "size": [64, 48], "split": "person", "split_seed": 0, "seed": 0, "epochs": 15,
        "lr": 0.005, "sampler": None, "cutmix": None, "bs": 32}
EVIL = "cutmix helps </script><script>alert(1)</script> <!-- & </SCRIPT >"


def run_folder(runs, stamp, name, parent=None, fields=None, metrics=None, status="finished", hypothesis=None):
    d = runs / f"{stamp}-{name}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"name": name, "parent": parent, "fields": {**BASE, **(fields or {})},
                                               "data_fingerprint": "fp1", "hypothesis": hypothesis or f"{name} helps."}))
    (d / "status.json").write_text(json.dumps({"status": status, "started": "2026-01-01T00:00:00+00:00", "minutes": 2.0}))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    return d.name


@pytest.fixture
def runs(tmp_path):
    """baseline -> {person_split -> kfold, two search trials (lr, cutmix), a running oversample}."""
    r = tmp_path / "runs"
    base = run_folder(r, "20260101T000000Z", "baseline", metrics={"macro_f1": 0.50, "holdout_macro_f1": 0.45})
    run_folder(r, "20260101T010000Z", "person_split", "baseline", {"epochs": 20},
               {"macro_f1": 0.55, "holdout_macro_f1": 0.47})
    run_folder(r, "20260101T020000Z", "kfold", "person_split", {"epochs": 20, "split": "kfold:5"},
               {"macro_f1": 0.61, "folds": [0.6, 0.62, 0.6, 0.61, 0.62], "cv_mean": 0.61})
    for i, (lr, cutmix) in enumerate([(0.0031622776601683794, "box"), (0.012, "halves")]):
        run_folder(r, f"20260101T03000{i}Z", f"search_lr_cutmix-trial{i}", "baseline", {"lr": lr, "cutmix": cutmix},
                   {"macro_f1": 0.52 + i / 100, "verdict": {"verdict": "inconclusive", "delta": 0.02 + i / 100,
                                                              "parent_run": base}},
                   hypothesis=EVIL if i else None)
    run_folder(r, "20260101T040000Z", "oversample", "baseline", {"sampler": "oversample"}, status="running")
    return r


IDS = ["20260101T000000Z-baseline", "20260101T010000Z-person_split", "20260101T020000Z-kfold",
       "20260101T030000Z-search_lr_cutmix-trial0", "20260101T030001Z-search_lr_cutmix-trial1",
       "20260101T040000Z-oversample"]


class Page(HTMLParser):
    """The run table (headers; per row its data-id, cell texts, cell attributes and links), the
    <details> elements and the <script> blocks of a page."""
    def __init__(self, text):
        super().__init__()
        self.heads, self.rows, self.details, self.scripts, self.ids = [], [], {}, [], set()
        self._in, self._cell, self._script = None, None, None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table" and a.get("id") == "runs":
            self._in = "table"
        elif self._in and tag == "tr" and "data-id" in a:
            self.rows.append({"id": a["data-id"], "cells": [], "attrs": [], "links": [], "boxes": []})
        elif self._in and tag in ("th", "td"):
            self._cell = [tag, ""]
            if tag == "td":
                self.rows[-1]["attrs"].append(a)
        elif self._in and self.rows and tag == "a":
            self.rows[-1]["links"].append(a["href"])
        elif self._in and self.rows and tag == "input":
            self.rows[-1]["boxes"].append(a.get("value"))
        elif tag == "details":
            self.details[a.get("id")] = a
        elif tag == "script":
            self._script = [a, ""]

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = None
        elif tag in ("th", "td") and self._cell:
            kind, text = self._cell
            (self.heads if kind == "th" else self.rows[-1]["cells"]).append(text.strip())
            self._cell = None
        elif tag == "script" and self._script:
            self.scripts.append(tuple(self._script))
            self._script = None

    def handle_data(self, data):
        if self._cell:
            self._cell[1] += data
        if self._script:
            self._script[1] += data


def page_of(runs):
    board(runs, console=Console(record=True, width=200))
    return Page((runs / "index.html").read_text())


def cell(p, run_id, head):
    row = next(r for r in p.rows if r["id"] == run_id)
    return row["cells"][p.heads.index(head)]


def test_the_table_has_a_column_per_varying_field_and_a_row_per_run(runs):
    p = page_of(runs)
    # the figures first (a wide table must not push them off-screen), then the varying fields in recipe order
    assert p.heads[:9] == ["compare", "run", "status", "verdict", "val F1", "holdout F1", "Δ parent", "minutes",
                           "started UTC"]
    assert p.heads[9:13] == ["split", "epochs", "lr", "sampler"] and "cutmix" in p.heads[13:]
    assert not {"arch", "size", "seed", "split_seed", "bs"} & set(p.heads)  # the same in every run
    assert [r["id"] for r in p.rows] == IDS
    assert cell(p, IDS[3], "lr") == "0.003162" and cell(p, IDS[3], "cutmix") == "box"  # a search trial's values
    assert cell(p, IDS[4], "lr") == "0.012" and cell(p, IDS[4], "cutmix") == "halves"
    assert cell(p, IDS[2], "split") == "kfold:5" and cell(p, IDS[0], "sampler") == "None"
    lr = p.rows[3]["attrs"][p.heads.index("lr")]
    assert float(lr["data-sort"]) == pytest.approx(0.0031622776601683794)  # sorts by value, not by text


def test_each_card_is_a_folded_details_the_row_links_to(runs):
    p = page_of(runs)
    assert len(p.details) == len(IDS)
    for r in p.rows:
        anchor = r["links"][0]
        assert anchor.startswith("#") and anchor[1:] in p.details, (r["id"], anchor)
        assert "open" not in p.details[anchor[1:]]  # collapsed until asked for
        assert r["boxes"] == [r["id"]]  # the compare tick names its run


def test_the_embedded_json_holds_every_run_and_no_hypothesis_breaks_out(runs):
    p = page_of(runs)
    assert [a for a, _ in p.scripts] == [{"type": "application/json", "id": "board-data"}, {}]
    data = json.loads(p.scripts[0][1])
    assert [r["id"] for r in data["runs"]] == IDS
    trial = data["runs"][4]
    assert trial["hypothesis"] == EVIL  # the whole text, back from its escapes
    assert trial["fields"]["lr"] == 0.012 and trial["figures"]["macro_f1"] == pytest.approx(0.53)
    assert trial["path"] == str(runs / IDS[4])  # what the panel's `fastmask compare` line names
    assert ["holdout_macro_f1", "holdout macro F1"] in data["metrics"]
    assert "fastmask compare" in (runs / "index.html").read_text()


def test_a_kfold_run_says_why_it_has_no_delta_against_a_single_split_parent(runs):
    console = Console(record=True, width=200)
    board(runs, console=console)
    text = console.export_text()
    line = next(l for l in text.splitlines() if "kfold" in l and "finished" in l)
    assert "not comparable" in line and "+0.060" not in line  # 0.61 - 0.55: two different measurements
    assert "not comparable: k-fold vs single split (kfold:5 vs person)" in text
    p = Page((runs / "index.html").read_text())
    assert cell(p, IDS[2], "Δ parent") == "—" and cell(p, IDS[2], "verdict") == "not comparable"  # one line
    html = (runs / "index.html").read_text()
    row = html[html.index(f'data-id="{IDS[2]}"'):].split("</tr>")[0]
    # why: on hover
    assert re.search(r'<td title="[^"]*k-fold vs single split[^"]*"><span class="not-comparable">', row), row
    # no verdict recorded (its card says no comparable parent run): no bare difference either
    assert cell(p, IDS[1], "Δ parent") == "—"
    assert cell(p, IDS[3], "Δ parent") == "+0.020"  # the verdict's paired delta


def test_a_cannot_compare_verdict_shows_no_delta(runs):
    """The same split, yet the verdict found no images in common (another valid_pct, say): no bare delta."""
    m = runs / IDS[1] / "metrics.json"
    m.write_text(json.dumps({**json.loads(m.read_text()), "verdict": {"verdict": "cannot compare",
                                                                       "parent_run": IDS[0]}}))
    p = page_of(runs)
    assert cell(p, IDS[1], "Δ parent") == "—" and cell(p, IDS[1], "verdict").startswith("cannot compare")


def test_terminal_params_and_columns(runs, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main([str(runs), "--params", "--no-html"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(l for l in lines if l.strip().startswith("run "))
    words = head.split()
    assert words[:3] == ["run", "status", "verdict"] and "arch" not in head
    assert words[words.index("UTC") + 1:][:5] == ["split", "epochs", "lr", "sampler", "cutmix"]  # after the figures
    trial = next(l for l in lines if "trial0" in l)
    assert "0.003162" in trial and "box" in trial
    assert main([str(runs), "--columns", "cutmix, seed", "--no-html"]) == 0
    head = next(l for l in capsys.readouterr().out.splitlines() if l.strip().startswith("run "))
    assert head.split()[-2:] == ["cutmix", "seed"]  # the named ones, constant or not, after the figures


def test_an_unknown_column_is_one_line_exit_2(runs):
    p = subprocess.run([sys.executable, "-m", "fastmask.board", str(runs), "--columns", "lr,cutmx"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 2 and not p.stdout and p.stderr.count("\n") == 1, p.stderr
    assert "'cutmx'" in p.stderr and "cutmix" in p.stderr  # names it, and the field meant
    assert not (runs / "index.html").exists()


@pytest.mark.skipif(not shutil.which("node"), reason="node checks the page script's syntax")
def test_the_page_script_parses(runs, tmp_path):
    p = page_of(runs)
    js = tmp_path / "board.js"
    js.write_text(p.scripts[1][1])
    out = subprocess.run(["node", "--check", str(js)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_each_row_names_its_card_so_the_filter_can_hide_both(runs):
    """The page's filter hides a row's folded card with the row (the script reads data-card): every row
    must name the <details> of its own run."""
    page_of(runs)  # writes index.html
    html = (runs / "index.html").read_text()
    rows = dict(re.findall(r'<tr data-id="([^"]+)" data-card="([^"]+)"', html))
    cards = re.findall(r'<details class="run" id="([^"]+)"><summary><strong>[^<]*</strong> '
                       r'<span class="small">([^<]+)</span>',
                       html)
    assert rows and {run: card for card, run in cards} == rows
    assert 'getElementById(r.getAttribute("data-card"))' in html and "card.hidden = !ok" in html


# --- learning curves in the compare panel ----------------------------------------------------------

HISTORY = "epoch,train_loss,valid_loss,macro_f1,accuracy,time\n"


def test_the_embedded_json_holds_each_runs_curves_from_epoch_1_and_the_mean_over_seeds_or_folds(runs):
    """history.csv counts epochs from 0 (fastai's CSVLogger); the page counts from 1. Several seeds or folds
    are one curve: their mean epoch by epoch (a seed that stopped early leaves the later epochs to the others)."""
    (runs / IDS[0] / "history.csv").write_text(HISTORY + "0,2.1,1.987654,0.123456,0.2,00:05\n"
                                               "1,1.6,1.5,,0.4,00:05\n"  # an epoch without its F1
                                               "2,1.2,1.25,0.51,0.6,00:05\n")
    (runs / IDS[1] / "history.csv").write_text(  # seed 1 (stopped after 2 epochs) written before seed 0
        "epoch,train_loss,valid_loss,macro_f1,accuracy,time,seed\n"
        "0,2.0,1.6,0.2,0.3,00:05,1\n1,1.0,1.0,0.6,0.5,00:05,1\n"
        "0,2.0,1.8,0.3,0.3,00:05,0\n1,1.0,1.2,0.5,0.5,00:05,0\n2,0.9,1.0,0.6,0.6,00:05,0\n")
    (runs / IDS[2] / "history.csv").write_text(  # k-fold: two folds of one epoch
        "epoch,train_loss,valid_loss,macro_f1,accuracy,time,fold\n0,1,0.9,0.4,0.5,00:05,0\n0,1,0.7,0.6,0.5,00:05,1\n")
    p = page_of(runs)
    by = {r["id"]: r for r in json.loads(p.scripts[0][1])["runs"]}
    assert by[IDS[0]]["curves"] == {"epoch": [1, 2, 3], "macro_f1": [0.1235, None, 0.51],
                                    "valid_loss": [1.9877, 1.5, 1.25]}  # 4 decimals, a gap where none was recorded
    # epoch 1: F1 (0.3 + 0.2) / 2, loss (1.8 + 1.6) / 2; epoch 2: (0.5 + 0.6) / 2, (1.2 + 1.0) / 2; epoch 3: seed 0's
    assert by[IDS[1]]["curves"] == {"epoch": [1, 2, 3], "macro_f1": [0.25, 0.55, 0.6], "valid_loss": [1.7, 1.1, 1.0],
                                    "of": "2 seeds"}
    assert by[IDS[2]]["curves"] == {"epoch": [1], "macro_f1": [0.5], "valid_loss": [0.8], "of": "2 folds"}
    assert by[IDS[3]]["curves"] is None  # no history.csv: the legend says so


def test_the_compare_panel_draws_the_curves_as_inline_svg(runs):
    """The script builds the two charts itself (SVG elements, no library, nothing fetched): axes labelled, a
    coloured line and a legend entry per ticked run, "no history.csv" for a run without one. (Its drawing was
    driven by hand in jsdom: four ticked runs, a seeds run's mean, a run without history.)"""
    p = page_of(runs)
    script = p.scripts[1][1]
    assert "curveChart(runs, c[0], c[1])" in script and 'createElementNS(SVG, tag)' in script
    assert 'var SVG = "http://www.w3.org/2000/svg"' in script and '"polyline"' in script
    assert '[["macro_f1", "validation macro F1"], ["valid_loss", "validation loss"]]' in script
    assert '"epoch")' in script and '"no history.csv"' in script and "legend(runs)" in script
    assert not re.search(r"\bsrc=|fetch\(|XMLHttpRequest|import\(", script)  # opens offline


# --- a running run: its epoch, and a page that reloads itself -------------------------------------

def test_a_running_run_shows_its_epoch_and_the_page_reloads_itself_until_none_runs(runs):
    run = runs / IDS[5]  # oversample: running, epochs 15
    (run / "history.csv").write_text(HISTORY + "".join(f"{e},1,1,0.5,0.5,00:05\n" for e in range(3)))
    p = page_of(runs)
    assert cell(p, IDS[5], "status") == "running (epoch 3/15)"  # three rows: three epochs done
    assert cell(p, IDS[0], "status") == "finished"
    data = {r["id"]: r for r in json.loads(p.scripts[0][1])["runs"]}
    assert data[IDS[5]]["status"] == "running" and data[IDS[5]]["state"] == "running (epoch 3/15)"
    assert "setTimeout(function () { location.reload(); }, 10000);" in p.scripts[1][1]
    html = (runs / "index.html").read_text()
    assert 'data-status="running"><td class="pick">' in html  # the status filter still reads the bare word
    assert "this page reloads itself every 10 s" in html
    # several folds or seeds log to history_<part>.csv until the run ends: the newest file is the one training
    # (seed 9 done, seed 10 started: by name "seed10" would sort first)
    (run / "history.csv").unlink()
    (run / "history_seed9.csv").write_text(HISTORY + "".join(f"{e},1,1,0.5,0.5,00:05\n" for e in range(15)))
    (run / "history_seed10.csv").write_text(HISTORY + "0,1,1,0.5,0.5,00:05\n")
    os.utime(run / "history_seed9.csv", (1, 1))
    assert cell(page_of(runs), IDS[5], "status") == "running (seed10, epoch 1/15)"
    # the run ends: no reload left in the page
    (run / "status.json").write_text(json.dumps({"status": "finished", "started": "2026-01-01T00:00:00+00:00"}))
    page_of(runs)  # writes index.html
    html = (runs / "index.html").read_text()
    assert "location.reload" not in html and "setTimeout" not in html and "reloads itself" not in html
    assert cell(Page(html), IDS[5], "status") == "finished"


def test_the_terminal_shows_a_running_runs_epoch(runs):
    (runs / IDS[5] / "history.csv").write_text(HISTORY + "0,1,1,0.5,0.5,00:05\n1,1,1,0.5,0.5,00:05\n")
    console = Console(record=True, width=200)
    board(runs, console=console, html_out=False)
    line = next(l for l in console.export_text().splitlines() if "oversample" in l)
    assert "running (epoch 2/15)" in line


# --- fastmask board --watch -------------------------------------------------------------------------

def test_watch_rewrites_the_page_and_prints_the_table_only_when_it_changed(runs, monkeypatch):
    import fastmask.views.board as view

    from conftest import in_process
    page, history = runs / "index.html", runs / IDS[5] / "history.csv"
    rounds = []

    def fake_sleep(seconds):
        rounds.append((seconds, page.is_file()))
        page.unlink()  # the next round must write it again
        if len(rounds) == 1:
            history.write_text(HISTORY + "0,1,1,0.5,0.5,00:05\n")  # the running run finished an epoch
        if len(rounds) == 3:
            raise KeyboardInterrupt  # Ctrl-C
    monkeypatch.setattr(view, "sleep", fake_sleep)
    monkeypatch.setenv("COLUMNS", "250")
    p = in_process("board", runs, "--watch", "0.2")  # as the command runs: an uncaught Ctrl-C would exit 130
    assert p.returncode == 0 and not p.stderr, p.stderr
    assert rounds == [(0.2, True)] * 3  # written in every round, then slept 0.2 s
    lines = p.stdout.splitlines()
    tables = [l for l in lines if l.strip().startswith("run ")]
    assert len(tables) == 2  # round 1, and round 2 (epoch 0/15 -> 1/15); round 3 changed nothing
    assert sum("running (epoch 0/15)" in l for l in lines) == 1 and sum("running (epoch 1/15)" in l for l in lines) == 1
    rewrites = [l for l in lines if l.startswith("board ") and "index.html rewritten" in l]
    assert [("no change" in l) for l in rewrites] == [False, False, True] and "1 running" in rewrites[0]
    assert lines[-1] == f"board: stopped watching {runs}"  # Ctrl-C: one line, exit 0


def test_watch_ends_on_ctrl_c_with_exit_0_and_one_line(runs):
    import signal
    import time
    p = subprocess.Popen([sys.executable, "-m", "fastmask.board", str(runs), "--watch", "0.2"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    page, seen, deadline = runs / "index.html", set(), time.monotonic() + 120
    while len(seen) < 2 and time.monotonic() < deadline and p.poll() is None:  # two writes: two mtimes
        try:
            seen.add(page.stat().st_mtime_ns)
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert len(seen) >= 2, (out, err)
    assert p.returncode == 0 and not err, err
    assert out.splitlines()[-1] == f"board: stopped watching {runs}"


def test_watch_takes_a_positive_number_of_seconds(runs, monkeypatch):
    import fastmask.views.board as view

    from conftest import in_process
    for bad in ("0", "-1", "nan", "soon"):
        p = in_process("board", runs, "--watch", bad)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--watch" in p.stderr and not p.stdout, p.stderr
    periods = []
    def stop(seconds):
        periods.append(seconds)
        raise KeyboardInterrupt
    monkeypatch.setattr(view, "sleep", stop)
    # `--watch RUNS`: the folder, at the default period; `RUNS --watch`: the default period
    assert in_process("board", "--watch", runs).returncode == 0 and in_process("board", runs, "--watch").returncode == 0
    assert periods == [10.0, 10.0]

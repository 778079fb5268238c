"""The board's run table (index.html and the terminal): the recipe fields that vary as columns, one row per
run, the cards folded in <details>, the runs' data embedded as JSON that no hypothesis can break out of,
and a k-fold run that says why it has no delta against a single-split parent. Run folders are a few JSON
files written by hand; no training. (The page's script is checked for syntax here; it was driven by hand
in jsdom, since no headless browser is available.)"""
import json
import re
import os
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
    assert re.search(r'<td title="[^"]*k-fold vs single split[^"]*"><span class="not-comparable">', row), row  # why: on hover
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
    html = page_of(runs) and (runs / "index.html").read_text()
    rows = dict(re.findall(r'<tr data-id="([^"]+)" data-card="([^"]+)"', html))
    cards = re.findall(r'<details class="run" id="([^"]+)"><summary><strong>[^<]*</strong> <span class="small">([^<]+)</span>',
                       html)
    assert rows and {run: card for card, run in cards} == rows
    assert 'getElementById(r.getAttribute("data-card"))' in html and "card.hidden = !ok" in html

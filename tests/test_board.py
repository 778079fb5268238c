"""The board: runs as a tree under their parents (fake run folders, no training), and index.html that
parses and links only files that exist."""
import json
import os
import re
import socket
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from fastmask.views.board import active, board, collect, tree, verdict_word

from conftest import in_process
from test_card import fake_preds, make_run, write_card

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def runs(tmp_path):
    """baseline -> person_split -> {oversample, albu_light -> cutmix_halves}, a second baseline, a child
    whose parent never ran, a running run, other data, and things that are not runs."""
    r = tmp_path / "runs"
    vp = fake_preds(tmp_path, acc=0.5, seed=1)
    make_run(r, "20260101T000000Z", "baseline", vp=vp)
    make_run(r, "20260101T010000Z", "person_split", parent="baseline", vp=vp,
             metrics={"verdict": {"verdict": "inconclusive", "delta": 0.0, "low": -0.1, "high": 0.1,
                                  "parent_run": "20260101T000000Z-baseline"}})
    make_run(r, "20260101T030000Z", "albu_light", parent="person_split", vp=vp)
    make_run(r, "20260101T020000Z", "oversample", parent="person_split", vp=vp, metrics={"macro_f1": 0.9})
    make_run(r, "20260101T040000Z", "cutmix_halves", parent="albu_light", status="running", plots=False)
    make_run(r, "20260101T050000Z", "baseline", vp=vp)
    make_run(r, "20260101T060000Z", "multihead", parent="nobody", vp=vp)
    make_run(r, "20260101T070000Z", "age58", parent="person_split", fingerprint="other", vp=vp)
    (r / "mlflow.db").write_bytes(b"")
    (r / "mlartifacts" / "1").mkdir(parents=True)
    (r / "notes").mkdir()
    return r


EXPECTED = [  # (folder, depth) in display order
    ("20260101T000000Z-baseline", 0),
    ("20260101T010000Z-person_split", 1),
    ("20260101T020000Z-oversample", 2),
    ("20260101T030000Z-albu_light", 2),
    ("20260101T040000Z-cutmix_halves", 3),
    ("20260101T050000Z-baseline", 0),
    ("20260101T060000Z-multihead", 0),
    ("20260101T070000Z-age58", 0),
]


def test_board_nests_runs_under_parents_in_order(runs):
    rows = tree(collect(runs))
    assert [(r["id"], r["depth"]) for r in rows] == EXPECTED
    by = {r["id"]: r for r in rows}
    assert by["20260101T030000Z-albu_light"]["prefix"] == "   └─ "
    assert by["20260101T020000Z-oversample"]["prefix"] == "   ├─ "
    assert by["20260101T040000Z-cutmix_halves"]["prefix"] == "      └─ "
    assert by["20260101T060000Z-multihead"]["up"] is None  # parent never ran
    assert by["20260101T070000Z-age58"]["up"] is None  # the parent ran only on other data


def test_board_prints_the_tree_table(runs):
    console = Console(record=True, width=160)
    board(runs, html_out=False, console=console)
    text = console.export_text()
    order = [text.index(f"{pre}{name}") for pre, name in
             [("", "baseline"), ("└─ ", "person_split"), ("├─ ", "oversample"), ("└─ ", "albu_light"),
              ("└─ ", "cutmix_halves")]]
    assert order == sorted(order)
    line = next(l for l in text.splitlines() if "person_split" in l)
    assert "finished" in line and "inconclusive" in line and "+0.000" in line and "2026-01-01 01:00" in line
    line = next(l for l in text.splitlines() if "oversample" in l)
    assert "0.900" in line and "+0.900" not in line  # delta vs the person_split run's macro F1
    assert "running" in next(l for l in text.splitlines() if "cutmix_halves" in l)
    assert "no parent run" in next(l for l in text.splitlines() if "multihead" in l)
    assert not (runs / "index.html").exists()


class Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.ids, self.tags = [], set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids.add(a["id"])
        for k in ("src", "href"):
            if a.get(k):
                self.refs.append((tag, a[k]))


def test_index_html_parses_and_references_only_existing_files(runs, tmp_path, monkeypatch):
    # one real card, with its top-losses grid, among the fake runs
    child = runs / "20260101T020000Z-oversample"
    cfg = json.loads((child / "config.json").read_text())
    m = json.loads((child / "metrics.json").read_text())
    (child / "card.md").write_text(write_card(child, cfg, m, "finished", runs)
                                   + "\n![gone](missing.png) [a link](../../elsewhere.txt) ![remote](https://x.org/a.png)\n")
    monkeypatch.setenv("COLUMNS", "160")
    p = in_process("board", runs)
    assert p.returncode == 0, p.stderr
    assert "person_split" in p.stdout and "index.html" in p.stdout
    page = (runs / "index.html").read_text()
    parser = Refs()
    parser.feed(page)
    parser.close()
    assert {"table", "img", "section", "h2"} <= set(parser.tags)
    srcs = [ref for tag, ref in parser.refs if tag == "img"]
    assert "20260101T020000Z-oversample/top_losses.png" in srcs
    assert "20260101T020000Z-oversample/confusion.png" in srcs
    for tag, ref in parser.refs:
        assert not re.match(r"^[a-z]+:|^/", ref), ref  # relative only: opens offline, from any folder
        if ref.startswith("#"):
            assert ref[1:] in parser.ids, ref
        else:
            assert (runs / ref).is_file(), ref
    assert "[gone: not available]" in page and "missing.png" not in page and "x.org" not in page
    assert "<h3>Result</h3>" in page and "read as" in page and re.search(r"<td>seed</td>\s*<td>0</td>", page)
    assert page.count('<section class="run"') == len(EXPECTED)


def _page(runs):
    board(runs, console=Console(record=True, width=160))
    page = (runs / "index.html").read_text()
    Refs().feed(page)
    return page


def test_a_card_renders_as_html_relative_to_the_page(runs):
    """Card Markdown (what cards use: headings, tables, emphasis, code, lists, images, links) as HTML, its
    targets rewritten to the page's folder."""
    d = runs / "20260101T020000Z-oversample"
    (d / "card.md").write_text("# oversample  (finished)\n\npara **b** `c<d>` *e* person_split and age_threshold\n\n"
                               "## Result\n\n| | this run |\n|---|---|\n| macro F1 | 0.9 |\n\n- x\n- y\n\n"
                               "```\nx < y\n```\n\n![confusion](confusion.png) [the history](./history.csv) "
                               "[docs](https://example.org/a)\n")
    (d / "history.csv").write_text("epoch\n0\n")
    page = _page(runs)
    sec = page[page.index('id="run-20260101T020000Z-oversample"'):]
    sec = sec[:sec.index("</section>")]
    assert "<h2>oversample  (finished)</h2>" in sec and "<h3>Result</h3>" in sec  # one level down
    assert "<strong>b</strong>" in sec and "<code>c&lt;d&gt;</code>" in sec and "<em>e</em>" in sec
    assert "person_split and age_threshold" in sec  # underscores are not emphasis
    assert re.search(r"<table>\s*<thead>\s*<tr>\s*<th></th>\s*<th>this run</th>", sec)
    assert re.search(r"<td>macro F1</td>\s*<td>0.9</td>", sec)
    assert re.search(r"<ul>\s*<li>x</li>\s*<li>y</li>\s*</ul>", sec) and "<pre><code>x &lt; y" in sec
    assert '<img src="20260101T020000Z-oversample/confusion.png" alt="confusion"' in sec
    assert sec.count("confusion.png") == 1  # the card shows it: no second copy of the plot
    assert '<a href="20260101T020000Z-oversample/history.csv">the history</a>' in sec
    assert '<a href="https://example.org/a">docs</a>' in sec
    assert '<img src="20260101T020000Z-oversample/curves.png"' in sec  # a plot the card leaves out


def test_text_from_run_folders_is_escaped(runs):
    """A hypothesis, name or status holding HTML shows as text: in a card, in a run without one, and in
    the table."""
    d = runs / "20260101T020000Z-oversample"
    (d / "card.md").write_text("# over<b>sample ![t](https://x.org/t.png)\n\n"
                               "**Hypothesis.** <script>alert(1)</script> helps.\n\n"
                               '<img src=x onerror="alert(2)">\n\n[x](javascript:alert(3))\n')
    r = runs / "20260101T040000Z-cutmix_halves"  # running: no card yet, so the page shows config's hypothesis
    cfg = json.loads((r / "config.json").read_text())
    (r / "config.json").write_text(json.dumps({**cfg, "hypothesis": "<script>alert(4)</script>",
                                               "name": "<i>cutmix</i>"}))
    (r / "status.json").write_text(json.dumps({"status": "<b>x</b>"}))
    page = _page(runs)
    # the template's own two scripts (the runs' data, the table's code) and no other
    assert re.findall(r"<script\b[^>]*>", page) == ['<script type="application/json" id="board-data">', "<script>"]
    assert "<script" not in page[:page.index('<script type="application/json"')]
    assert "<b>" not in page and "<i>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;script&gt;alert(4)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=" in page and "&lt;b&gt;x&lt;/b&gt;" in page and "&lt;i&gt;cutmix&lt;/i&gt;" in page
    assert 'href="javascript:' not in page and "[x](javascript:alert(3))" in page  # not a link: shown as text
    assert '<h2>over&lt;b&gt;sample <span class="missing">[t: not available]</span></h2>' in page
    assert "x.org" not in page  # the page loads nothing remote, the card's title included


def test_missing_runs_folder_is_one_line_exit_2(tmp_path):
    p = in_process("board", tmp_path / "nope")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "nope" in p.stderr and not p.stdout


def test_empty_runs_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    console = Console(record=True, width=120)
    assert board(tmp_path / "runs", console=console) == []
    assert "no runs" in console.export_text()
    page = (tmp_path / "runs" / "index.html").read_text()
    Refs().feed(page)
    assert "No runs yet" in page and "$" not in page  # the template is filled


def test_a_malformed_folder_is_skipped_with_one_warning_line(runs, monkeypatch):
    """JSON that parses but is not an object (or does not parse) skips that folder only, saying so."""
    bad = {"20260102T000000Z-list_status": ("status.json", "[]"),
           "20260102T010000Z-number_config": ("config.json", "3"),
           "20260102T020000Z-string_metrics": ("metrics.json", '"x"'),
           "20260102T030000Z-broken_status": ("status.json", "{not json")}
    for folder, (name, text) in bad.items():
        d = runs / folder
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"name": folder.split("-", 1)[1]}))
        (d / name).write_text(text)
    odd = runs / "20260102T040000Z-odd_fields"  # objects holding the wrong types: shown, not a crash
    odd.mkdir()
    (odd / "config.json").write_text(json.dumps({"name": 5, "parent": ["x"], "hypothesis": {}}))
    (odd / "status.json").write_text(json.dumps({"status": 3, "started": 7, "minutes": "long"}))
    (odd / "metrics.json").write_text(json.dumps({"macro_f1": "high", "verdict": ["supported"]}))
    monkeypatch.setenv("COLUMNS", "160")
    p = in_process("board", runs)
    assert p.returncode == 0, p.stderr
    warnings = p.stderr.strip().splitlines()
    assert len(warnings) == len(bad) and all(w.startswith("fastmask: warning: board: skipping") for w in warnings)
    for folder, (name, _) in bad.items():
        assert any(folder in w and name in w for w in warnings), (folder, warnings)
    assert "holds list, not an object" in p.stderr and "not valid JSON" in p.stderr
    assert "person_split" in p.stdout and "odd_fields" in p.stdout and "list_status" not in p.stdout
    assert (runs / "index.html").read_text().count('<section class="run"') == len(EXPECTED) + 1


def test_a_damaged_or_empty_history_csv_draws_no_curve_and_hides_nothing(runs):
    """The compare panel's curves come from history.csv as fastai wrote it; a hand-edited one (text where the
    epochs or figures go) is no curve, one with its header alone is a curve with no epoch yet (the running run's
    first epoch has not ended), and neither hides a run."""
    (runs / "20260101T000000Z-baseline" / "history.csv").write_text("epoch,valid_loss,macro_f1\nfirst,1.0,0.5\n")
    (runs / "20260101T010000Z-person_split" / "history.csv").write_text("epoch,valid_loss,macro_f1\n0,low,high\n")
    (runs / "20260101T040000Z-cutmix_halves" / "history.csv").write_text(
        "epoch,train_loss,valid_loss,macro_f1,accuracy,time\n")
    page = _page(runs)
    data = json.loads(re.search(r'<script type="application/json" id="board-data">(.*?)</script>', page, re.S)[1])
    by = {r["id"]: r for r in data["runs"]}
    assert len(by) == len(EXPECTED)
    assert by["20260101T000000Z-baseline"]["curves"] is None and by["20260101T010000Z-person_split"]["curves"] is None
    assert by["20260101T040000Z-cutmix_halves"]["curves"] == {"epoch": [], "macro_f1": [], "valid_loss": []}
    assert by["20260101T040000Z-cutmix_halves"]["state"] == "running (epoch 0/1)"  # make_run asks for 1 epoch
    assert by["20260101T020000Z-oversample"]["curves"] is None  # no history.csv at all


# --- a live queue's jobs without a run folder yet ---------------------------------------------------

QUEUE_JOBS = [  # as runs/queue.py writes RUNS/.queue/<id>/queue.json
    {"name": "person_split", "role": "parent", "status": "finished", "needs": []},
    {"name": "lr_low", "role": "hypothesis", "status": "running", "needs": []},  # started: no run folder yet
    {"name": "tta", "role": "hypothesis", "status": "running", "needs": []},  # its run folder is on the board
    {"name": "mixup", "role": "hypothesis", "status": "queued", "needs": ["lr_low", "person_split"],
     "hypothesis": "Mixup <b>helps</b>."},
    {"name": "swa", "role": "hypothesis", "status": "skipped", "needs": ["tta"]},
]


def write_queue(runs, pid, qid="20260102T000000Z-1", jobs=QUEUE_JOBS):
    """A queue's own folder RUNS/.queue/<qid>/: its state file and tta's log (qid None: the one RUNS/.queue/
    queue.json and its logs an earlier version wrote)."""
    folder = runs / ".queue" / (qid or "")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "queue.json").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "jobs": jobs}))
    (folder / "tta.log").write_text(f"run folder: {runs}/20260102T000000Z-tta\n")


def test_a_live_queue_shows_its_waiting_jobs_as_queued_rows(runs):
    write_queue(runs, os.getpid())
    console = Console(record=True, width=160)
    rows = board(runs, console=console)
    assert [r["id"] for r in rows[:len(EXPECTED)]] == [i for i, _ in EXPECTED]  # the runs' tree as it was
    assert [(r["name"], r["status"], verdict_word(r)) for r in rows[len(EXPECTED):]] == [
        ("lr_low", "queued", "starting"), ("mixup", "queued", "waits for lr_low")]
    text = console.export_text()
    line = next(x for x in text.splitlines() if "mixup" in x)
    assert "queued" in line and "waits for lr_low" in line
    page = (runs / "index.html").read_text()
    Refs().feed(page)
    assert re.search(r'<tr data-id="queued: mixup" [^>]*data-status="queued">', page)
    assert "Mixup &lt;b&gt;helps&lt;/b&gt;." in page  # its folded card says what it will test, escaped
    assert page.count('<section class="run"') == len(EXPECTED) + 2
    # its card says what it waits for, not a run folder it does not have yet
    mixup = page[page.index('<summary><strong>mixup</strong>'):]
    mixup = mixup[:mixup.index("</section>")]
    assert "waits for lr_low (the queue makes its run folder when it starts)" in mixup and "run folder <code>" not in mixup


def test_queued_rows_show_only_while_the_queue_lives_and_keep_the_board_watching(tmp_path):
    runs = tmp_path / "runs"
    write_queue(runs, os.getpid())
    rows = board(runs, console=Console(record=True, width=160))
    assert [r["status"] for r in rows] == ["queued", "queued"] and active(rows)  # no run running: the queue is
    assert "location.reload" in (runs / "index.html").read_text()
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()  # a queue that ended (or was killed) without saying so
    write_queue(runs, gone.pid)
    rows = board(runs, console=Console(record=True, width=160))
    assert rows == [] and not active(rows) and "location.reload" not in (runs / "index.html").read_text()


def test_each_live_queue_shows_its_own_rows_and_an_old_single_queue_file_still_reads(tmp_path):
    """Two live queues in one runs folder (each its own RUNS/.queue/<id>/): each one's waiting jobs, a job both
    queue twice under two ids; a running job is "starting" by its own queue's log only (tta's run folder is
    named in the first queue's log, not the second's). The one RUNS/.queue/queue.json of an earlier version is
    read as before, its logs beside it."""
    runs = tmp_path / "runs"
    write_queue(runs, os.getpid())
    write_queue(runs, os.getpid(), "20260102T000001Z-2", [
        {"name": "tta", "role": "hypothesis", "status": "running", "needs": []},
        {"name": "mixup", "role": "hypothesis", "status": "queued", "needs": []}])
    (runs / ".queue" / "20260102T000001Z-2" / "tta.log").write_text("starting\n")  # no run folder yet
    rows = board(runs, console=Console(record=True, width=160))
    assert [(r["id"], verdict_word(r)) for r in rows] == [
        ("queued: lr_low", "starting"), ("queued: mixup", "waits for lr_low"),
        ("queued: tta", "starting"), ("queued: mixup (queue 20260102T000001Z-2)", "waits for a free slot")]
    cards = re.findall(r'<tr data-id="queued: [^"]*" data-card="([^"]*)"', (runs / "index.html").read_text())
    assert len(cards) == len(set(cards)) == 4  # each row its own card
    old = tmp_path / "old"
    write_queue(old, os.getpid(), None)
    assert [r["id"] for r in board(old, console=Console(record=True, width=160))] == ["queued: lr_low",
                                                                                       "queued: mixup"]


@pytest.mark.parametrize("jobs", [
    [{"name": "a", "role": "hypothesis", "status": "queued", "needs": 5}],         # needs: an int
    [{"name": "a", "role": "hypothesis", "status": "queued", "needs": [["b"]]}],  # a name that is a list
    [{"name": "a", "status": ["queued"], "needs": []}],                           # a status that is a list
    7,                                                                            # jobs: not a list
])
@pytest.mark.parametrize("watching", [False, True])
def test_a_live_queue_file_of_the_wrong_types_is_one_warning_not_a_traceback(tmp_path, monkeypatch, jobs, watching):
    runs = tmp_path / "runs"
    make_run(runs, "20260101T000000Z", "baseline", vp=fake_preds(tmp_path))
    (runs / ".queue").mkdir()
    (runs / ".queue" / "queue.json").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                            "jobs": jobs}))  # its process (this one) alive
    rounds = []
    def sleep(s):  # --watch: two rounds, then Ctrl-C
        rounds.append(s)
        if len(rounds) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr("fastmask.views.board.sleep", sleep)
    p = in_process("board", runs, "--no-html", *(["--watch", "1"] if watching else []))
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr == (f"fastmask: warning: board: {runs / '.queue' / 'queue.json'}: damaged (its jobs are not a "
                        "queue's records); its queued jobs are not shown\n")  # once, however many rounds
    assert "baseline" in p.stdout and "queued" not in p.stdout


@pytest.mark.parametrize("width", [80, 120])
def test_params_at_a_narrow_width_keep_the_run_name_and_count_what_they_leave_out(tmp_path, monkeypatch, width):
    """`board --params` in an 80- or 120-column terminal: whole columns go (never the run column, no header cut
    short), and the footer's count and names are exactly the columns missing from the table."""
    from fastmask.views.board import COLUMNS
    monkeypatch.setenv("COLUMNS", str(width))
    runs = tmp_path / "runs"
    vp = fake_preds(tmp_path, acc=0.5, seed=1)
    make_run(runs, "20260101T000000Z", "person_split_long_name", vp=vp)
    changed = {"sampler": "oversample", "cutmix": "halves", "mix_prob": 0.5, "lr": 0.003, "epochs": 4,
               "replicates": 2, "size": [64, 48], "augment": "light", "pretrained": False}
    make_run(runs, "20260101T010000Z", "oversample_cutmix_long", parent="person_split_long_name", vp=vp, fields=changed)
    console = Console(record=True, width=width)
    board(runs, html_out=False, console=console, params=True)
    text = console.export_text()
    lines = text.splitlines()
    assert max(map(len, lines)) <= width
    assert any("person_split_long_name" in x for x in lines) and any("oversample_cutmix_long" in x for x in lines)
    header = next(x for x in lines if x.strip().startswith("run "))
    shown = re.split(r"\s{2,}", header.strip())
    every = [*COLUMNS, *sorted(changed)]
    assert set(shown) <= set(every) and shown[0] == "run"  # each header whole, the run first
    missing = [c for c in every if c not in shown]
    after = re.sub(r"\s+", " ", text[text.index(" column(s) left out") - 3:])  # the footer, however it wrapped
    foot = re.search(r"(\d+) column\(s\) left out to fit (\d+) columns: (.*?) \(a wider window", after)
    assert foot and int(foot[2]) == width
    assert int(foot[1]) == len(missing) and sorted(foot[3].split(", ")) == sorted(missing)
    assert ("epochs" in shown) == (width == 120)  # by hand: 80 leaves out every field, 120 keeps four

"""Notes on the card: `fastmask note`, `tag` and `archive` write the run's card.md again (a view generated from
the run's records) so its Notes section is current, touching nothing training wrote and re-judging nothing;
the cards whose verdict pooled an archived run say so."""
import json
import os
import subprocess
import sys
from pathlib import Path

from fastmask.__main__ import main as _main
from fastmask.runs.cards import rewrite_card
from fastmask.store import notebook

from test_card import fake_preds, make_run, write_card

REPO = Path(__file__).resolve().parent.parent
TRAINED = ("config.json", "metrics.json", "status.json", "valid_preds.csv", "class_delta.png", "flips.png",
           "top_losses.png", "confusion.png", "curves.png")


def fastmask(*argv):
    try:
        return _main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


def trained(tmp_path):
    """A parent run and a child run as training leaves them: the child's card, its verdict in metrics.json."""
    runs = tmp_path / "runs"
    par, pcfg, _ = make_run(runs, "20260101T000000Z", "oversample", vp=fake_preds(tmp_path, acc=0.2, seed=7))
    child, cfg, m = make_run(runs, "20260102T000000Z", "oversample_cutmix", parent="oversample",
                             vp=fake_preds(tmp_path, acc=0.8, seed=7), parent_fields=pcfg["fields"])
    (child / "card.md").write_text(write_card(child, cfg, m, "finished", runs))
    (child / "metrics.json").write_text(json.dumps(m))
    return runs, par, child


def records(d):
    return {f: ((d / f).read_bytes(), (d / f).stat().st_mtime_ns) for f in TRAINED}


def notes_of(md):
    return md.split("## Notes", 1)[1].split("\n## ", 1)[0] if "## Notes" in md else None


def test_a_note_shows_on_the_card_and_nothing_else_changes(tmp_path):
    runs, par, child = trained(tmp_path)
    before, card = records(child), (child / "card.md").read_text()
    assert "## Notes" not in card
    assert fastmask("note", child.name, "cutmix helps the old classes\nbut not the young", "--runs", runs) == 0
    ev = notebook.read(child).notes[0]
    after = (child / "card.md").read_text()
    section = (f"## Notes\n\n- {ev['at']}, {ev['user']}@{ev['host']}: cutmix helps the old classes\n"
               "  but not the young\n\n")
    assert section in after
    # the same card as training wrote, plus the section: the verdict read back, not re-judged or redrawn
    assert after.replace(section, "") == card
    assert records(child) == before


def test_tags_and_the_archive_flag_show_and_leave_again(tmp_path):
    runs, par, child = trained(tmp_path)
    assert fastmask("tag", child, "keep", "baseline") == 0
    assert "**Tags.** `keep` `baseline`" in notes_of((child / "card.md").read_text())
    assert fastmask("tag", child, "keep", "--remove") == 0
    assert "**Tags.** `baseline`\n" in notes_of((child / "card.md").read_text())
    assert fastmask("archive", child) == 0
    ev = notebook.read(child).archived
    assert f"**Archived** {ev['at']} by {ev['user']}@{ev['host']}: hidden from the board" in (child / "card.md").read_text()
    assert fastmask("tag", child, "baseline", "--remove") == 0 and fastmask("archive", child, "--restore") == 0
    assert "## Notes" not in (child / "card.md").read_text()


def test_archiving_the_parent_run_says_so_on_the_childs_card(tmp_path):
    runs, par, child = trained(tmp_path)
    line = f"The parent run `{par.name}` is archived; it stays evidence for this verdict."
    before = records(child)
    assert fastmask("archive", par, "--runs", runs) == 0
    card = (child / "card.md").read_text()
    assert line in card and card.index(line) < card.index("## Why")
    assert records(child) == before and not (par / "card.md").exists()  # the parent had no card: none is made
    assert fastmask("archive", par, "--restore") == 0
    assert line not in (child / "card.md").read_text()


def test_notes_there_at_the_end_of_training_are_on_the_card_it_writes(tmp_path):
    runs = tmp_path / "runs"
    par, pcfg, _ = make_run(runs, "20260101T000000Z", "a", vp=fake_preds(tmp_path, seed=1))
    child, cfg, m = make_run(runs, "20260102T000000Z", "b", parent="a", vp=fake_preds(tmp_path, seed=2),
                             parent_fields=pcfg["fields"])
    notebook.append(child, "note", text="written while it trained")
    notebook.append(par, "archive")
    md = write_card(child, cfg, m, "finished", runs)
    assert ": written while it trained" in notes_of(md) and f"`{par.name}` is archived" in md


def test_a_run_without_a_card_yet_gets_none(tmp_path):
    runs = tmp_path / "runs"
    d, _, _ = make_run(runs, "20260101T000000Z", "a", status="running")
    assert fastmask("note", d, "early days") == 0
    assert rewrite_card(d) is None and not (d / "card.md").exists()


NOTE = "import sys; from fastmask.__main__ import main; sys.exit(main(['note', sys.argv[1], sys.argv[2]]))"


def test_two_notes_at_once_both_reach_the_card(tmp_path):
    runs, par, child = trained(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", NOTE, str(child), f"note {k}"], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(REPO)}) for k in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    section = notes_of((child / "card.md").read_text())
    assert ": note 0\n" in section and ": note 1\n" in section

"""fastmask compare on fake run folders (no training): the deltas against a hand computation, the paired test
run in the right direction, per-class F1 keyed by ids or names on one row per class, fold curves averaged,
the tables and the PNG, and bad input as one line with exit 2."""
import json
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console
from sklearn.metrics import f1_score

from fastmask.__main__ import main
from fastmask.labels import CLASS_NAMES
from fastmask.views.compare import class_key, compare_runs, comparison

from test_card import fake_preds, make_run


def hand(vp):
    return f1_score(vp["label"], vp["pred"], average="macro", zero_division=0), float((vp["label"] == vp["pred"]).mean())


def rekey(run, key):
    """Key the run's per-class figures by key(class id), whichever form scores() wrote them in."""
    m = json.loads((run / "metrics.json").read_text())
    for name in ("per_class_f1", "per_class_support"):
        if name in m:
            m[name] = {key(int(k) if k.isdigit() else CLASS_NAMES.index(k)): v for k, v in m[name].items()}
    (run / "metrics.json").write_text(json.dumps(m))


@pytest.fixture
def two(tmp_path):
    """A (acc 0.2) and B (acc 0.8) on the same 14 validation people; B keys per_class_f1 by class name and
    has two folds of history."""
    runs = tmp_path / "runs"
    va, vb = fake_preds(tmp_path, acc=0.2, seed=7), fake_preds(tmp_path, acc=0.8, seed=7)
    a, _, _ = make_run(runs, "20260101T000000Z", "oversample", vp=va, fields={"lr": 0.005, "cutmix": None},
                       metrics={"holdout_macro_f1": 0.31, "holdout_task_f1": {"mask": 0.9, "gender": 0.8, "age": 0.4}})
    b, _, _ = make_run(runs, "20260102T000000Z", "oversample_cutmix", parent="oversample", vp=vb,
                       fields={"lr": 0.01, "cutmix": "halves"},
                       metrics={"holdout_macro_f1": 0.42, "holdout_task_f1": {"mask": 0.95, "gender": 0.8, "age": 0.55}})
    rekey(a, str)  # an older run: class codes "0".."17"
    rekey(b, lambda i: CLASS_NAMES[i])  # a newer one: class names
    pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [3, 2, 1.5], "valid_loss": [3.0, 2.5, 2.0],
                  "macro_f1": [0.1, 0.2, 0.25]}).to_csv(a / "history.csv", index=False)
    pd.DataFrame({"epoch": [0, 1, 0, 1], "fold": [0, 0, 1, 1], "valid_loss": [2.0, 1.0, 3.0, 2.0],
                  "macro_f1": [0.1, 0.3, 0.3, 0.5]}).to_csv(b / "history.csv", index=False)
    return a, b, va, vb


def test_deltas_and_the_paired_test_match_a_hand_computation(two):
    a, b, va, vb = two
    c = comparison([a, b], n=300)
    (fa, acc_a), (fb, acc_b) = hand(va), hand(vb)
    assert c.deltas("macro_f1")[1] == pytest.approx(fb - fa)
    assert c.deltas("accuracy")[1] == pytest.approx(acc_b - acc_a)
    assert c.deltas("holdout_macro_f1")[1] == pytest.approx(0.42 - 0.31)
    assert c.deltas("holdout_age_f1")[1] == pytest.approx(0.55 - 0.4)
    assert c.deltas("holdout_gender_f1")[1] == pytest.approx(0.0)
    assert c.deltas("macro_f1")[0] == 0
    # the paired test is B against A (not A against B): its delta is the same hand-computed difference
    v = c.verdicts[0]
    # one seed each: the delta, but no claim (training noise is not in a one-seed interval)
    assert v["method"] == "bootstrap" and v["delta"] == pytest.approx(fb - fa) and v["verdict"] == "unreplicated"
    assert set(c.diff) == {"recipe", "lr", "cutmix"} and c.diff["lr"] == [0.005, 0.01]


def test_per_class_f1_by_id_or_by_name_lines_up_on_one_row_per_class(two):
    a, b, va, vb = two
    assert class_key("3") == 3 and class_key(3) == 3 and class_key(" female  30-59 no-mask ") == 16
    assert class_key("someone else's name") == "someone else's name"
    pc = comparison([a, b], n=10).per_class
    assert len(pc) == 18 and not pc.isna().any().any()
    per = f1_score(vb["label"], vb["pred"], labels=range(18), average=None, zero_division=0)
    assert pc.iloc[:, 1].to_numpy() == pytest.approx(per)
    assert pc.index[16] == f"16 {CLASS_NAMES[16]}"
    assert comparison([a, b], n=10).support == [int((va["label"] == k).sum()) for k in range(18)]


def test_fold_curves_are_their_mean_per_epoch(two):
    a, b, _, _ = two
    c = comparison([a, b], n=10)
    assert c.models == [1, 2] and c.kinds == ["", "folds"]
    assert c.curves[1]["macro_f1"].tolist() == pytest.approx([0.2, 0.4])
    assert c.curves[1]["valid_loss"].tolist() == pytest.approx([2.5, 1.5])
    assert c.curves[0]["macro_f1"].tolist() == pytest.approx([0.1, 0.2, 0.25])


def test_tables_name_the_differing_fields_and_the_png_is_drawn(two, tmp_path):
    a, b, va, vb = two
    out = tmp_path / "out" / "cmp.png"
    buf = StringIO()
    compare_runs([a, b], out=out, console=Console(file=buf, width=200), n=100)
    text = buf.getvalue()
    config = text.split("config: the fields that differ", 1)[1].split("figures", 1)[0]
    rows = {line.split("│")[1].strip(): [x.strip() for x in line.split("│")[2:-1]]
            for line in config.splitlines() if line.startswith("│")}
    assert rows == {"recipe": ["oversample", "oversample_cutmix"], "lr": ["0.005", "0.01"], "cutmix": ["—", "halves"]}
    (fa, _), (fb, _) = hand(va), hand(vb)
    assert f"{fb:.3f} ({fb - fa:+.3f})" in text
    assert "B oversample_cutmix vs A: Unreplicated — macro F1" in text  # one seed each: no claim
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 800 and img.size[1] > 600
    assert np.asarray(img.convert("L")).std() > 10  # something is drawn


def test_runs_on_other_images_get_no_paired_test_and_say_why(two, tmp_path):
    a, b, _, _ = two
    other, _, _ = make_run(tmp_path / "runs", "20260103T000000Z", "other",
                           vp=fake_preds(tmp_path / "elsewhere", acc=0.5, seed=1, people=9))
    moved, _, _ = make_run(tmp_path / "runs", "20260104T000000Z", "moved", vp=fake_preds(tmp_path, acc=0.5),
                           fingerprint="fp2")
    buf = StringIO()
    c = compare_runs([a, other, moved], out=tmp_path / "c.png", console=Console(file=buf, width=200), n=50)
    assert c.verdicts == [None, None]
    assert "predicted different images" in c.notes[0] and "other data" in c.notes[1]
    assert "no paired test" in buf.getvalue()


@pytest.mark.parametrize("bad", ["not_a_run", "missing", "one"])
def test_bad_input_is_one_line_and_exit_2(two, tmp_path, capsys, bad):
    a, b, _, _ = two
    (tmp_path / "not_a_run").mkdir()
    args = {"not_a_run": [a, tmp_path / "not_a_run"], "missing": [a, tmp_path / "nope"], "one": [a]}[bad]
    with pytest.raises(SystemExit) as e:
        main(["compare", *map(str, args), "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("fastmask: error:")
    assert (str(args[-1]) if bad != "one" else "two run folders") in err[0]
    assert not (tmp_path / "x.png").exists()


def test_each_runs_tags_and_notes_are_printed_and_a_damaged_notebook_is_one_warning(two, tmp_path):
    from fastmask.store import notebook

    from conftest import in_process
    a, b, _, _ = two
    notebook.append(a, "tag", tag="baseline")
    notebook.append(b, "tag", tag="keep")
    notebook.append(b, "note", text="rare classes gained; age did not")
    notebook.append(b, "archive")
    buf = StringIO()
    c = compare_runs([a, b], out=tmp_path / "c.png", console=Console(file=buf, width=200), n=20)
    assert [book.tags for book in c.books] == [["baseline"], ["keep"]]
    text = buf.getvalue()
    part = text.split("notebook: tags and notes", 1)[1]
    rows = {line.split("│")[1].strip(): [x.strip() for x in line.split("│")[2:-1]]
            for line in part.splitlines() if line.startswith("│") and line.split("│")[1].strip()}
    assert rows["A oversample"] == ["baseline", "—"]
    assert rows["B oversample_cutmix"][0] == "keep (archived)"
    assert rows["B oversample_cutmix"][1].endswith("rare classes gained; age did not")
    (a / notebook.NOTEBOOK).write_text("{broken\n")
    p = in_process("compare", a, b, "--out", tmp_path / "d.png", "--resamples", "20")
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("\n") == 1 and "notebook.jsonl" in p.stderr and p.stderr.startswith("fastmask: warning:")
    assert "notebook unreadable" in p.stdout and "keep (archived)" in p.stdout

"""A child card's "Why": which classes moved against the parent run, the images that flipped, and what to try
next naming only recipes that exist and that the run does not descend from; guarded so an odd parent never
costs the run its card. Planted predictions whose figures are worked out by hand."""
import json
import re
import shlex
import sys
import warnings

import pandas as pd
import pytest
from PIL import Image

from fastmask.labels import CLASS_NAMES, describe, label_of

from test_card import make_run, write_card

X, Y = label_of("wear", "male", 45), label_of("wear", "male", 62)  # male 30-59 and male >=60, both masked


def planted(root):
    """20 people with 2 images each: x0..x9 (age 45, class X) and y0..y9 (age 62, class Y). The parent reads
    every Y image as X; the child gets y0..y4 right and reads y5..y9 as X (age errors across 60)."""
    rows = []
    for who, age, y in [(f"x{i}", 45, X) for i in range(10)] + [(f"y{i}", 62, Y) for i in range(10)]:
        for k in range(2):
            path = root / "images" / who / f"mask{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (12, 16), (40 * k, 90, 160)).save(path)
            child = y if y == X or int(who[1:]) < 5 else X
            rows.append({"path": str(path), "person": who, "age": age, "label": y, "child": child, "parent": X})
    frame = pd.DataFrame(rows)
    return (frame.drop(columns="parent").rename(columns={"child": "pred"}),
            frame.drop(columns="child").rename(columns={"parent": "pred"}))


def recipes(root, files):
    """A project's recipes folder: {name: parent name or None}."""
    folder = root / "recipes"
    folder.mkdir()
    for name, parent in files.items():
        body = f"from recipes.{parent} import recipe as parent\n" if parent else ""
        (folder / f"{name}.py").write_text(f'"""{name}."""\n{body}')
    return folder


def pair(tmp_path, folder, child_name="child", parent_name="mid", parent_vp=True):
    runs = tmp_path / "runs"
    child_vp, parent_vp_frame = planted(tmp_path)
    par, pcfg, _ = make_run(runs, "20260101T000000Z", parent_name, vp=parent_vp_frame if parent_vp else None)
    d, cfg, m = make_run(runs, "20260102T000000Z", child_name, parent=parent_name, vp=child_vp,
                         parent_fields=pcfg["fields"])
    cfg["recipe_file"] = str(folder / f"{child_name}.py")
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "metrics.json").unlink()  # the session writes metrics.json after the card
    return runs, par, d, cfg, m


def why_of(md):
    assert "## Why" in md
    return md.split("## Why", 1)[1].split("\n## ", 1)[0]


def test_the_why_shows_the_classes_that_moved_the_flips_and_the_age_threshold_recipe(tmp_path):
    folder = recipes(tmp_path, {"root": None, "mid": "root", "child": "mid", "age58": "root", "face_crop": "root"})
    runs, par, d, cfg, m = pair(tmp_path, folder)
    md = write_card(d, cfg, m, "finished", runs)
    why = why_of(md)
    # by hand: parent X tp 20 fp 20 -> F1 2/3, Y F1 0; child X tp 20 fp 10 -> 0.8, Y tp 10 fn 10 -> 2/3
    assert "on the 40 validation images both predicted (20 people)" in why
    up = re.search(rf"^- up: {re.escape(describe(Y))} \+0\.667 \[(\S+), (\S+)\] \(F1 0\.000 → 0\.667, 20 images\)$",
                   why, re.M)
    assert up and 0 < float(up[1]) <= 0.667 <= float(up[2]), why
    # X: the child's false X are a subset of the parent's, so its delta is never below 0 and is 0 only in a draw
    # with none of y0..y4 ((15/20)^20 = 0.3 % of draws): above 0 at 95 %, as is Y's for the same reason
    assert re.search(rf"^- up: {re.escape(describe(X))} \+0\.133 \[\+0\.\d+, \+0\.\d+\] \(F1 0\.667 → 0\.800, 20 images\)$",
                     why, re.M), why
    assert "- down:" not in why
    # fixed: the child right, the parent wrong: y0..y4's 10 images; broken: none
    assert "**Flips:** 10 validation images this run gets right that the parent got wrong (fixed), 0 the reverse" in why
    assert f"| {CLASS_NAMES[Y]} | 10 | 0 |" in why and why.count("| 10 | 0 |") == 1
    # all 10 of the child's age errors cross 60: the age-threshold recipe, with the line to paste
    want = shlex.join([sys.executable, "-m", "fastmask", "run", str(folder / "age58.py"), "--set", "epochs=1",
                       "--data", "/d/twin", "--runs", str(runs.resolve())])
    assert f"- `age58`: 10 of 10 age errors fall between 30-59 and >=60. Run `{want}`" in why
    assert "face_crop" not in why  # no mask-status error: nothing points to it
    # the figures beside the card, in the order the section reads
    assert why.index("![per-class F1 change against the parent](class_delta.png)") < why.index("**Flips") \
        < why.index("![validation images fixed and broken](flips.png)") < why.index("**What to try next**")
    for f in ("class_delta.png", "flips.png"):
        with Image.open(d / f) as im:
            assert im.size[0] > 300
    # after the figures and before the error analysis
    assert md.index("## Result") < md.index("## Why") < md.index("## Error analysis")


def test_suggestions_name_only_recipes_that_exist(tmp_path):
    folder = recipes(tmp_path, {"root": None, "mid": "root", "child": "mid", "face_crop": "root"})  # no age58.py
    runs, par, d, cfg, m = pair(tmp_path, folder)
    why = why_of(write_card(d, cfg, m, "finished", runs))
    assert "age58" not in why
    assert f"**What to try next:** nothing measured here points to a recipe in `{folder}`" in why


def test_suggestions_leave_out_what_the_run_descends_from(tmp_path):
    # child <- mid <- age58: the run already has the age threshold, two generations up
    folder = recipes(tmp_path, {"root": None, "age58": "root", "mid": "age58", "child": "mid"})
    runs, par, d, cfg, m = pair(tmp_path, folder)
    why = why_of(write_card(d, cfg, m, "finished", runs))
    assert "`age58`" not in why and "**What to try next:** nothing measured here" in why


def test_a_parent_without_validation_predictions_leaves_the_section_out(tmp_path):
    folder = recipes(tmp_path, {"root": None, "mid": "root", "child": "mid", "age58": "root"})
    runs, par, d, cfg, m = pair(tmp_path, folder, parent_vp=False)
    (par / "metrics.json").write_text(json.dumps({"macro_f1": 0.3, "accuracy": 0.5}))
    md = write_card(d, cfg, m, "finished", runs)
    assert "## Why" not in md and not (d / "class_delta.png").exists() and not (d / "flips.png").exists()
    assert "## Error analysis" in md and "## Reproducibility" in md


def test_an_odd_parent_frame_leaves_the_section_out_with_a_warning(tmp_path):
    folder = recipes(tmp_path, {"root": None, "mid": "root", "child": "mid", "age58": "root"})
    runs, par, d, cfg, m = pair(tmp_path, folder)
    vp = pd.read_csv(par / "valid_preds.csv")
    pd.concat([vp, vp]).to_csv(par / "valid_preds.csv", index=False)  # every image twice, and no seed to tell them
    with pytest.warns(UserWarning, match="explaining the verdict"):
        md = write_card(d, cfg, m, "finished", runs)
    assert "## Why" not in md and "## Error analysis" in md and m["verdict"]["parent_run"] == par.name


def test_a_root_card_has_no_why(tmp_path):
    folder = recipes(tmp_path, {"root": None})
    child_vp, _ = planted(tmp_path)
    d, cfg, m = make_run(tmp_path / "runs", "20260101T000000Z", "root", vp=child_vp)
    cfg["recipe_file"] = str(folder / "root.py")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        md = write_card(d, cfg, m, "finished", tmp_path / "runs")
    assert "## Why" not in md and not (d / "class_delta.png").exists()

"""Verdicts that explain themselves: per-class deltas with person-bootstrap intervals, flips, and what to try next,
on planted predictions whose answers are worked out by hand."""
import numpy as np
import pandas as pd
import pytest

from fastmask.labels import CLASS_NAMES, encode
from fastmask.report.explain import class_deltas, errors, flip_counts, flips, paired_rows, suggest

#            path person label child parent
ROWS = [("a1", "A", 0, 0, 0), ("a2", "A", 1, 1, 0), ("b1", "B", 1, 1, 1), ("b2", "B", 0, 0, 1),
        ("c1", "C", 2, 2, 0), ("d1", "D", 0, 1, 0)]


COLUMNS = ["path", "person", "label", "pred", "seed"]


def frames(rows=ROWS):
    child = pd.DataFrame([(p, who, y, c, 0) for p, who, y, c, _ in rows], columns=COLUMNS)
    parent = pd.DataFrame([(p, who, y, q, 0) for p, who, y, _, q in rows], columns=COLUMNS)
    return child, parent


def test_per_class_deltas_pair_images_by_path_not_by_row_order():
    child, parent = frames()
    pairs = paired_rows(child.iloc[[2, 0, 5, 1, 4, 3]], parent)  # the child listed its images in another order
    assert dict(zip(pairs["path"], pairs["parent"])) == {p: q for p, _, _, _, q in ROWS}
    assert dict(zip(pairs["path"], pairs["child"])) == {p: c for p, _, _, c, _ in ROWS}
    got = {d.cls: d for d in class_deltas(pairs)}
    # by hand: child class 0 tp a1,b2 fn d1 -> 4/5; class 1 tp a2,b1 fp d1 -> 4/5; class 2 tp c1 -> 1
    #          parent class 0 tp a1,d1 fp a2,c1 fn b2 -> 4/7; class 1 tp b1 fp b2 fn a2 -> 2/4; class 2 fn c1 -> 0
    assert sorted(got) == [0, 1, 2]  # classes without a validation image are left out
    assert got[0].child == pytest.approx(0.8) and got[0].parent == pytest.approx(4 / 7)
    assert got[0].delta == pytest.approx(0.8 - 4 / 7) and got[1].delta == pytest.approx(0.3)
    assert got[2].delta == pytest.approx(1.0) and (got[0].support, got[1].support, got[2].support) == (3, 2, 1)
    for d in got.values():
        assert d.low <= d.delta + 1e-9 and d.high >= d.delta - 1e-9 and d.low < d.high


def test_the_interval_is_over_people_not_images():
    """Seven photos of one person are one draw: copying every image of a 4-person set 7 times under the same
    people leaves the interval as wide, where an image bootstrap would narrow it."""
    child, parent = frames()
    one = class_deltas(paired_rows(child, parent), seed=1)
    many = [pd.concat([f.assign(path=f["path"] + f"_{k}") for k in range(7)]) for f in (child, parent)]
    seven = class_deltas(paired_rows(*many), seed=1)
    assert [round(d.high - d.low, 6) for d in seven] == [round(d.high - d.low, 6) for d in one]


def test_flips_are_the_images_one_model_gets_right_and_the_other_wrong():
    pairs = paired_rows(*frames())
    fixed, broken = flips(pairs)
    assert sorted(fixed["path"]) == ["a2", "b2", "c1"] and list(broken["path"]) == ["d1"]
    assert flip_counts(pairs) == [(CLASS_NAMES[0], 1, 1), (CLASS_NAMES[1], 1, 0), (CLASS_NAMES[2], 1, 0)]


def test_seeds_pair_with_the_same_seed():
    child, parent = frames()
    child2 = pd.concat([child, child.assign(seed=1, pred=child["label"])])  # seed 1: all right
    parent2 = pd.concat([parent, parent.assign(seed=1, pred=parent["label"])])
    pairs = paired_rows(child2, parent2)
    assert len(pairs) == 12 and len(flips(pairs)[0]) == 3  # seed 1 flips nothing


def planted(errors_at):
    """10 images of each of the 18 classes (two people a class), all predicted right, then `errors_at(y, p)`
    plants the mistakes."""
    y = np.repeat(np.arange(18), 10)
    p = y.copy()
    errors_at(y, p)
    person = [f"p{k // 5}" for k in range(len(y))]
    return pd.DataFrame({"path": [f"i{k}" for k in range(len(y))], "person": person, "label": y, "pred": p})


RECIPES = ["person_split", "oversample", "rare_cutmix", "face_crop", "age58", "kfold"]


def names(s):
    return [x.recipe for x in s]


def test_age_errors_across_60_suggest_the_age_threshold_recipe_quoting_the_figure():
    def plant(y, p):
        for (m, g, a), b in (((0, 0, 1), (0, 0, 2)), ((0, 1, 2), (0, 1, 1))):
            idx = np.where(y == encode(m, g, a))[0][:6]
            p[idx] = encode(*b[:2], b[2])
        p[np.where(y == encode(0, 0, 0))[0][0]] = encode(0, 0, 1)  # one error that is not at the boundary
    v = planted(plant)
    assert (errors(v["label"], v["pred"])["age_errors"], errors(v["label"], v["pred"])["age_boundary_errors"]) == (13, 12)
    s = suggest(v, {}, RECIPES, command=lambda r: f"fastmask run recipes/{r}.py")
    assert names(s) == ["age58"] and "12 of 13 age errors" in s[0].why and s[0].command == "fastmask run recipes/age58.py"
    assert suggest(v, {}, [r for r in RECIPES if r != "age58"]) == []  # only recipes that exist


def test_rare_old_classes_far_below_suggest_oversampling_or_what_the_run_has_not_tried():
    def plant(y, p):
        for c in range(18):
            if c % 3 == 2:  # the >=60 classes: 8 of 10 taken for <30
                p[np.where(y == c)[0][:8]] = c - 2
    v = planted(plant)
    e = errors(v["label"], v["pred"])
    # by hand: >=60 classes tp 2 fn 8 -> 4/12; <30 classes tp 10 fp 8 -> 20/28; 30-59 classes 1
    assert e["old_f1"] == pytest.approx(1 / 3) and e["rest_f1"] == pytest.approx((20 / 28 + 1) / 2)
    assert names(suggest(v, {}, RECIPES)) == ["oversample"]
    assert names(suggest(v, {}, RECIPES, lineage=["person_split", "oversample"])) == ["rare_cutmix"]


def test_mask_confusions_suggest_the_face_crop():
    def plant(y, p):
        idx = np.arange(0, len(y), 9)  # 20 of 180 images: 11 %
        p[idx] = (y[idx] + 6) % 18  # the mask status moved, gender and age kept
    s = suggest(planted(plant), {}, RECIPES)
    assert names(s) == ["face_crop"] and "11% of validation images" in s[0].why
    assert suggest(planted(lambda y, p: None), {}, RECIPES) == []  # nothing wrong, nothing to suggest


def test_validation_above_holdout_on_a_random_split_suggests_the_person_split():
    v = planted(lambda y, p: None)
    m = {"macro_f1": 0.9, "holdout_macro_f1": 0.6}
    s = suggest(v, m, RECIPES, split="random")
    assert names(s) == ["person_split"] and "0.300 above" in s[0].why
    assert suggest(v, m, RECIPES, split="person") == []  # already split by person: the gap is something else


def test_the_chart_colours_by_where_the_interval_lies_and_the_figures_are_written(tmp_path):
    from PIL import Image

    from fastmask.report.delta_plots import save_class_deltas, save_flips, side
    from fastmask.report.explain import ClassDelta
    d = lambda lo, hi: ClassDelta(0, CLASS_NAMES[0], 0.5, 0.4, (lo + hi) / 2, lo, hi, 7)  # noqa: E731
    assert [side(d(0.01, 0.2)), side(d(-0.2, -0.01)), side(d(-0.1, 0.1))] == [1, -1, 0]
    pairs = paired_rows(*frames())
    Image.new("RGB", (24, 32), "white").save(tmp_path / "a2", format="PNG")  # the others: "image missing"
    pairs["path"] = [str(tmp_path / p) for p in pairs["path"]]
    assert save_class_deltas(class_deltas(pairs), tmp_path / "deltas.png") == 3
    assert save_flips(*flips(pairs), tmp_path / "flips.png") == 4
    for f in ("deltas.png", "flips.png"):
        with Image.open(tmp_path / f) as im:
            assert im.size[0] > 300
    assert save_class_deltas([], tmp_path / "none.png") == 0 and not (tmp_path / "none.png").exists()

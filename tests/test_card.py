"""card.md: every section for a child/parent pair (fake run folders, no training), the verdict wording,
the comparability flags, graceful gaps; and a reproducibility check with two tiny real trainings."""
import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fastmask.labels import N_CLASSES, describe, label_of
from fastmask.learn.metrics import scores
from fastmask.report.card import headline
from fastmask.runs.outputs import card_and_verdict
from fastmask.store.run_folder import RunFolder

REPO = Path(__file__).resolve().parent.parent
AGES = [20, 29, 30, 45, 58, 59, 60, 25, 31, 57, 40, 60, 22, 35]
MASKS = ["wear"] * 5 + ["incorrect", "not_wear"]
ENV = {"python": "3.11.9", "torch": "2.14.1", "fastai": "2.8.12", "timm": "1.0.31",
       "command": "python -m fastmask.run recipes/person_split.py --set epochs=1 --data /d/twin",
       "commit": "abc1234", "dirty": False}


def fake_preds(root, acc=0.6, seed=0, people=len(AGES), age=True):
    """A valid_preds frame over real (tiny) image files under root/images; wrong rows miss the age group."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(people):
        a, g = AGES[i % len(AGES)], ("male", "female")[i % 2]
        right = rng.random() < acc
        for k, m in enumerate(MASKS):
            path = root / "images" / f"{i:06d}" / f"{m}{k}.png"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (12, 16), (20 * k, 10 * i % 255, 120)).save(path)
            y = label_of(m, g, a)
            p = y if right else y - y % 3 + (y % 3 + 1) % 3
            prob = np.full(N_CLASSES, 0.3 / (N_CLASSES - 1))
            prob[p] = 0.7
            rows.append({"path": str(path), "person": f"{i:06d}", "label": y, "pred": p,
                         **({"age": a} if age else {}), **{f"p{j}": prob[j] for j in range(N_CLASSES)}})
    return pd.DataFrame(rows)


def make_run(runs, stamp, name, parent=None, vp=None, status="finished", fields=None, parent_fields=None,
             fingerprint="fp1", env=None, metrics=None, minutes=3.5, folds=None, started=None, plots=True):
    """A run folder as fastmask.run leaves it (no model): config, status, metrics, valid_preds, plots."""
    d = Path(runs) / f"{stamp}-{name}"
    d.mkdir(parents=True)
    fields = {"arch": "test_resnet", "split": "person", "valid_pct": 0.2, "seed": 0, "epochs": 1, **(fields or {})}
    cfg = {"name": name, "parent": parent, "fields": fields,
           "changed": {"cutmix": [None, "halves"]} if parent else {}, "parent_fields": parent_fields,
           "hypothesis": f"{name} helps.", "overrides": {"epochs": 1}, "data": "/d/twin",
           "data_fingerprint": fingerprint, "n_images": 280, "n_people": 40, "environment": env or ENV}
    (d / "config.json").write_text(json.dumps(cfg))
    st = started or f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}+00:00"
    (d / "status.json").write_text(json.dumps({"status": status, "started": st, "minutes": minutes}))
    m = dict(metrics or {})
    if vp is not None:
        vp.to_csv(d / "valid_preds.csv", index=False)
        m = {**scores(vp["label"], vp["pred"]), "holdout_macro_f1": 0.31, "holdout_accuracy": 0.52,
             "holdout_task_f1": {"mask": 0.9, "gender": 0.8, "age": 0.4}, "epochs_run": 1, **m}
    if folds:
        m["folds"] = folds
    if m:
        (d / "metrics.json").write_text(json.dumps(m))
    if plots:
        for p in ("confusion.png", "curves.png"):
            Image.new("RGB", (8, 8)).save(d / p)
    return d, cfg, m


@pytest.fixture
def pair(tmp_path):
    runs = tmp_path / "runs"
    par, pcfg, _ = make_run(runs, "20260101T000000Z", "oversample", vp=fake_preds(tmp_path, acc=0.2, seed=7),
                            env={**ENV, "torch": "2.13.0", "commit": "0ld0ld0"})
    vp = fake_preds(tmp_path, acc=0.8, seed=7)  # 3 of 14 people wrong, each in the age group
    assert (vp.label != vp.pred).sum() == 21
    child, cfg, m = make_run(runs, "20260102T000000Z", "oversample_cutmix", parent="oversample", vp=vp,
                             parent_fields=pcfg["fields"], env={**ENV, "dirty": True})
    (child / "metrics.json").unlink()  # run.py writes metrics.json after the card
    return runs, par, child, cfg, m


def write_card(d, cfg, m, status, runs):
    """What the session does at the end of a run: the card, and the verdict entry put into its metrics."""
    this = RunFolder(d).but(config=cfg, metrics=m)
    md, entry = card_and_verdict(this, runs, status, [n for n in ("confusion.png", "curves.png") if (d / n).exists()])
    if entry is not None:
        m["verdict"] = entry
    return md


def tables(md):
    """Each Markdown table as its list of rows' cell counts."""
    out, cur = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cur.append(len(re.split(r"(?<!\\)\|", line.strip().strip("|"))))
        elif cur:
            out.append(cur)
            cur = []
    return out


def test_two_paired_seeds_claim_and_the_card_says_so(tmp_path):
    runs = tmp_path / "runs"
    two = lambda acc: pd.concat([fake_preds(tmp_path, acc=acc, seed=7).assign(seed=s) for s in (0, 1)])
    par, pcfg, _ = make_run(runs, "20260101T000000Z", "oversample", vp=two(0.2), fields={"replicates": 2})
    child, cfg, m = make_run(runs, "20260102T000000Z", "oversample_cutmix", parent="oversample", vp=two(0.8),
                             parent_fields=pcfg["fields"], fields={"replicates": 2})
    md = write_card(child, cfg, m, "finished", runs)
    assert "**Verdict: supported**" in md and "above 0" in md and "--decide" not in md.split("## Error")[0]
    assert m["verdict"]["verdict"] == "supported" and m["verdict"]["seeds"] == 2


def test_card_holds_every_section(pair):
    runs, par, child, cfg, m = pair
    md = write_card(child, cfg, m, "finished", runs)
    # hypothesis, change, overrides
    assert "**Hypothesis.** oversample_cutmix helps." in md and "`cutmix`: None → 'halves'" in md
    assert "`epochs=1`" in md
    # result table against the parent: per-task, holdout, epochs, minutes
    for row in ("validation macro F1", "validation mask F1", "validation age F1", "holdout macro F1",
                "holdout age F1", "epochs run", "minutes"):
        assert re.search(rf"^\| {row} \|", md, re.M), row
    assert f"parent ({par.name})" in md and "| minutes | 3.5 | 3.5 | +0.0 |" in md
    # the verdict, with its threshold and evidence; recorded in metrics with the parent run
    # one seed each: the delta, no claim, and the command that decides it
    assert "**Unreplicated**" in md and "one seed cannot claim" in md and "--decide 6` decides it" in md
    assert m["verdict"]["verdict"] == "unreplicated" and m["verdict"]["parent_run"] == par.name
    assert "**What would decide it.**" in md and "**Design.**" in md
    # comparability flags: versions, code and a dirty tree
    assert "package versions differ" in md and "torch 2.13.0 → 2.14.1" in md
    assert "commit `0ld0ld0` → `abc1234`" in md and "uncommitted changes" in md
    # error analysis
    assert "## Error analysis" in md and re.search(r"^\| age \| [0-9.]+ \| 0\.400 \| [0-9.]+ \|$", md, re.M)
    assert "**Weakest classes**" in md
    assert re.search(r"^- (male|female) \S+ \S+ read as (male|female) \S+ \S+: \d+ images of \d+ people", md, re.M)
    assert "age wrong" in md
    assert re.search(r"^\| 57-60 \| \d+ \| \d+ \| \d+% \| \d+% \|$", md, re.M)
    assert re.search(r"^\| 28-31 \| \d+ \|", md, re.M)
    assert "![top losses](top_losses.png)" in md and (child / "top_losses.png").stat().st_size > 1000
    # plots, reproducibility
    assert "![confusion](confusion.png)" in md and "![learning curves](curves.png)" in md
    repro = md.split("## Reproducibility", 1)[1]
    for s in ("`abc1234` (uncommitted changes)", "| seed | 0 |", "person, valid_pct 0.2", "`fp1`",
              "torch 2.14.1", "fastai 2.8.12", "python -m fastmask.run recipes/person_split.py --set epochs=1"):
        assert s in repro, s
    # renders as tables on a git host: every row as wide as its header, a separator under it
    for t in tables(md):
        assert len(set(t)) == 1 and len(t) >= 2, t
    # every image the card shows exists beside it
    for src in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (child / src).is_file(), src


def test_the_card_leads_with_its_answer(pair):
    """Title, hypothesis, the verdict and the command that decides it, then the figures; the design folded."""
    runs, par, child, cfg, m = pair
    md = write_card(child, cfg, m, "finished", runs)
    lines = md.splitlines()
    assert lines[0] == "# oversample_cutmix  (finished)" and lines[2] == "**Hypothesis.** oversample_cutmix helps."
    assert lines[4].startswith("**Unreplicated** — macro F1 ") and lines[4].endswith("--decide 6` decides it.")
    at = {s: md.index(s) for s in ("**Unreplicated**", "**What would decide it.**", "**Parent.**", "## Result",
                                   "<details><summary>Design</summary>", "**Design.**", "</details>", "## Why",
                                   "## Error analysis", "## Plots", "## Reproducibility")}
    assert list(at.values()) == sorted(at.values()), at
    assert md.count("**Design.**") == 1
    # the board folds it too, while any other raw HTML, and a fold left open or closed alone, stays text
    from fastmask.views.html import markdown
    html = markdown(md)
    assert "<details><summary>Design</summary>\n<p><strong>Design.</strong>" in html and "&lt;details" not in html
    assert markdown("</details>\n\n<details><summary>x</summary>\n") == \
        "<p>&lt;/details&gt;</p>\n<p>&lt;details&gt;&lt;summary&gt;x&lt;/summary&gt;</p>\n"


def test_confused_pairs_are_in_words(pair):
    runs, par, child, cfg, m = pair
    vp = pd.read_csv(child / "valid_preds.csv")
    wrong = vp[vp.label != vp.pred]
    t, p = wrong.groupby(["label", "pred"]).size().idxmax()
    assert f"{describe(t)} read as {describe(p)}" in write_card(child, cfg, m, "finished", runs)


def two_seeds(root, **kw):
    """fake_preds twice, as seeds 0 and 1 (no training noise): a verdict may claim from two paired seeds."""
    return pd.concat([fake_preds(root, **kw).assign(seed=s) for s in (0, 1)])


def test_identical_child_is_no_effect_and_drop_is_refuted(tmp_path):
    runs = tmp_path / "runs"
    par, pcfg, _ = make_run(runs, "20260101T000000Z", "a", vp=two_seeds(tmp_path, acc=0.6, seed=1),
                            fields={"replicates": 2})
    same, cfg, m = make_run(runs, "20260102T000000Z", "b", parent="a", vp=two_seeds(tmp_path, acc=0.6, seed=1),
                            fields={"replicates": 2}, parent_fields=pcfg["fields"])
    md = write_card(same, cfg, m, "finished", runs)
    # the same predictions on two seeds: the interval is [0, 0], inside +-min_effect
    assert "**Verdict: no effect as large as 0.02**" in md and m["verdict"]["delta"] == 0
    assert "package versions differ" not in md and "code changed" not in md
    worse, cfg, m = make_run(runs, "20260103T000000Z", "c", parent="a", vp=two_seeds(tmp_path, acc=0.05, seed=2),
                             fields={"replicates": 2}, parent_fields=pcfg["fields"])
    pd.read_csv(par / "valid_preds.csv")  # the parent is the 0.6 run
    md = write_card(worse, cfg, m, "finished", runs)
    assert "**Verdict: refuted**" in md and m["verdict"]["verdict"] == "refuted"


def test_kfold_card_uses_per_fold_deltas(tmp_path):
    runs = tmp_path / "runs"
    base = [0.40, 0.37, 0.44, 0.41, 0.39]
    par, pcfg, _ = make_run(runs, "20260101T000000Z", "a", vp=fake_preds(tmp_path, seed=4), folds=base,
                            fields={"split": "kfold:5"})
    child, cfg, m = make_run(runs, "20260102T000000Z", "b", parent="a", vp=fake_preds(tmp_path, seed=4),
                             folds=[f + 0.05 + 0.004 * i for i, f in enumerate(base)],
                             fields={"split": "kfold:5"}, parent_fields=pcfg["fields"])
    md = write_card(child, cfg, m, "finished", runs)
    assert "**Verdict: supported**" in md and "over 5 folds" in md and "paired t-test" in md and "p < 0.05" in md
    assert "| k-fold mean macro F1 |" in md and "| out-of-fold macro F1 |" in md
    assert re.search(r"^\| 4 \| 0\.456 \| 0\.390 \| \+0\.066 \|$", md, re.M)
    assert "over 5 folds, pooled out-of-fold" in headline(m)


def test_no_parent_run_says_so_and_names_the_command(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "20260101T000000Z", "person_split", vp=fake_preds(tmp_path), fingerprint="other")
    child, cfg, m = make_run(runs, "20260102T000000Z", "oversample", parent="person_split",
                             vp=fake_preds(tmp_path, age=False), parent_fields={"x": 1})
    md = write_card(child, cfg, m, "finished", runs)
    assert "No comparable run of the parent `person_split`" in md and "verdict" not in m
    # the parent's recipe file (none recorded: recipes/ from here), the --set, the data and runs folders, absolute
    want = shlex.join([sys.executable, "-m", "fastmask", "run", str(Path("recipes/person_split.py").resolve()),
                       "--set", "epochs=1", "--data", "/d/twin", "--runs", str(runs.resolve())])
    assert f"Make one with `{want}`, then rerun this recipe." in md
    assert "1 finished run(s) on other data (fingerprint other)" in md
    assert "no `age` column" in md and "57-60" not in md  # the age section is skipped, not broken
    assert "## Reproducibility" in md and "## Error analysis" in md


def test_root_card_and_missing_preds(tmp_path):
    runs = tmp_path / "runs"
    d, cfg, _ = make_run(runs, "20260101T000000Z", "baseline", plots=False)
    m = {"macro_f1": 0.5, "accuracy": 0.6, "mask_f1": 0.7, "gender_f1": 0.8, "age_f1": 0.4, "epochs_run": 2}
    md = write_card(d, cfg, m, "interrupted", runs)
    assert md.startswith("# baseline  (interrupted)") and "this recipe is a root" in md and "Verdict" not in md
    assert "No valid_preds.csv" in md and "## Plots" not in md and "![" not in md
    assert headline(m, "baseline", "interrupted").startswith("baseline [interrupted]: validation macro F1 0.500")


def test_headline_carries_verdict():
    m = {"macro_f1": 0.41, "accuracy": 0.6, "holdout_macro_f1": 0.39, "holdout_accuracy": 0.58,
         "verdict": {"verdict": "supported", "delta": 0.03, "low": 0.01, "high": 0.05}}
    assert headline(m) == ("validation macro F1 0.410, accuracy 0.600; holdout macro F1 0.390, accuracy 0.580; "
                           "vs parent: supported (+0.030 [+0.010, +0.050])")


# --- reproducibility: same recipe + seed on CPU -> same split, same validation metrics ---------------

def test_same_recipe_and_seed_reproduce_split_and_metrics(twin, tmp_path):
    from fastmask.data.dls import build_dls
    from fastmask.data.load import load_data
    from fastmask.learn.build import build_learner, fit, valid_frame
    from fastmask.recipe import load_recipe, parse_sets

    from conftest import TINY
    data = load_data(twin, progress=False)
    recipe = load_recipe(REPO / "recipes" / "person_split.py", parse_sets(TINY[1::2]))

    def once(i):
        dls = build_dls(recipe, data.train)
        learn = build_learner(recipe, dls, notify=lambda m: None)
        learn.path = tmp_path / str(i)
        fit(recipe, learn)
        rows, probs = valid_frame(learn)
        return list(dls.train.items["path"]), list(rows["path"]), probs, scores(rows["label"], probs.argmax(1)), \
            [list(map(float, v)) for v in learn.recorder.values]

    a, b = once(0), once(1)
    assert a[0] == b[0] and a[1] == b[1]  # the same split, in the same order
    np.testing.assert_allclose(a[2], b[2], atol=1e-6)
    assert a[3]["macro_f1"] == pytest.approx(b[3]["macro_f1"], abs=1e-6) and a[3] == b[3]
    np.testing.assert_allclose(a[4], b[4], atol=1e-6)  # train loss, valid loss, metrics per epoch
    def valid_paths(*sets):
        r = load_recipe(REPO / "recipes" / "person_split.py", parse_sets(TINY[1::2] + list(sets)))
        return list(build_dls(r, data.train).valid.items["path"])
    assert valid_paths("split_seed=1") != a[1]  # split_seed moves the split: the check has teeth
    assert valid_paths("seed=1") == a[1]  # seed moves training only, so seeds compare on the same people


def test_a_parent_run_of_another_seed_is_like_for_like_but_other_fields_are_not():
    """--decide trains the parent's seed 1 with `--set seed=1`: the card must not call that run another setup,
    while a parent run with another epochs is one."""
    from fastmask.recipe import Recipe
    from fastmask.report.card import _comparability
    base = {k: (list(v) if isinstance(v, tuple) else v) for k, v in Recipe().fields().items()}
    cfg = {"parent_fields": {**base, "seed": 0, "replicates": 1}, "data_fingerprint": "f"}
    same = {"fields": {**base, "seed": 1, "replicates": 1, "decide": 6}, "data_fingerprint": "f"}
    other = {"fields": {**base, "seed": 1, "epochs": base["epochs"] + 1}, "data_fingerprint": "f"}
    assert not any("other field values" in n for n in _comparability(cfg, same))
    assert any("other field values" in n for n in _comparability(cfg, other))

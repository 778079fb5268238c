"""Which runs are the evidence for a verdict (pooled seed by seed, same data, same setup), when a recorded
verdict goes stale and is re-judged, and the --decide loop's stopping rule: on planted run folders, no
training (the stopping rule's trainer writes planted folders too)."""
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastmask.recipe import Recipe
from fastmask.report.judgement import judge, stale
from fastmask.runs import decide as deciding, hypothesis, parents
from fastmask.runs.outputs import rejudge
from fastmask.store.index import pool, seeds_of
from fastmask.store.run_folder import RunFolder
from fastmask.views.board import collect

PEOPLE = 60
BASE = {k: (list(v) if isinstance(v, tuple) else v) for k, v in Recipe().fields().items()}
_stamp = iter(range(1, 10_000))


def frame(acc, seed, salt=0):
    """valid_preds rows: 7 photos a person; person i (label i % 18) right with probability `acc`, the same
    people on every seed (no training noise: the loop's stopping rule is under test, not the statistics)."""
    rng = np.random.default_rng(salt)
    rows = []
    for i in range(PEOPLE):
        label = i % 18
        right = rng.random() < acc
        rows += [dict(path=f"/d/{i:04d}/{k}.jpg", person=f"{i:06d}", label=label,
                      pred=label if right else (label + 1 + k) % 18, seed=seed) for k in range(7)]
    return pd.DataFrame(rows)


def make_run(runs, name, seeds, acc, parent=None, fp="fp1", fields=None, parent_fields=None, status="finished",
             salt=0):
    """A run folder as a finished `fastmask run` leaves it, as far as the verdict reads it."""
    d = Path(runs) / f"20260101T{next(_stamp):06d}Z-{name}"
    d.mkdir(parents=True)
    f = {**BASE, **(fields or {}), "seed": seeds[0], "replicates": len(seeds)}
    cfg = {"name": name, "parent": parent, "fields": f, "data_fingerprint": fp, "n_people": 300,
           "parent_fields": ({**BASE, **(parent_fields or {})} if parent else None), "overrides": {}}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "status.json").write_text(json.dumps({"status": status}))
    (d / "metrics.json").write_text(json.dumps({"macro_f1": acc}))
    pd.concat([frame(acc, s, salt) for s in seeds]).to_csv(d / "valid_preds.csv", index=False)
    return d


def test_seeds_of_a_run():
    assert seeds_of({"seed": 3, "replicates": 2}) == [3, 4] and seeds_of({"seed": 0}) == [0]


def test_pool_takes_any_seeds_of_one_setup_on_one_data(tmp_path):
    a = make_run(tmp_path, "p", [0], 0.5)
    b = make_run(tmp_path, "p", [1, 2], 0.5, fields={"decide": 6, "judged_on": "gap"})  # judging fields: same setup
    make_run(tmp_path, "p", [3], 0.5, fp="other")                  # other data
    make_run(tmp_path, "p", [4], 0.5, fields={"epochs": 1})        # other setup (--set epochs=1)
    make_run(tmp_path, "p", [5], 0.5, status="interrupted")        # not finished
    got = pool(tmp_path, "p", "fp1", {**BASE, "seed": 9})
    assert [e.dir for e in got] == [b, a]  # newest first


def test_a_parent_on_other_data_or_other_overrides_is_never_the_comparable_parent(tmp_path):
    make_run(tmp_path, "p", [0], 0.9, fp="other")
    make_run(tmp_path, "p", [0], 0.9, fields={"epochs": 3})
    c = make_run(tmp_path, "c", [0], 0.2, parent="p")
    j = judge(RunFolder(c), tmp_path)
    assert j.parent is None and j.verdict is None and j.entry is None and j.other_fingerprints == ["other"]


def test_seeds_pool_across_folders_on_both_sides(tmp_path):
    make_run(tmp_path, "p", [0, 1, 2], 0.3)
    make_run(tmp_path, "c", [1], 0.8, parent="p")
    make_run(tmp_path, "c", [7], 0.8, parent="p")        # no parent seed 7: not paired
    c = make_run(tmp_path, "c", [0, 2], 0.8, parent="p")
    j = judge(RunFolder(c), tmp_path)
    assert j.verdict["seeds"] == 3
    assert j.child_runs[0] == c.name and len(j.child_runs) == 3 and len(j.parent_runs) == 1


def test_one_seed_gives_a_command_that_decides(tmp_path):
    make_run(tmp_path, "p", [0], 0.3)
    c = make_run(tmp_path, "c", [0], 0.9, parent="p")
    j = judge(RunFolder(c), tmp_path)
    assert j.verdict["verdict"] == "unreplicated"
    # this interpreter, the recipe file (none recorded: recipes/c.py from here) and the runs folder, absolute
    assert shlex.split(j.entry["command"]) == [sys.executable, "-m", "fastmask", "run", str(Path("recipes/c.py").resolve()),
                                               "--runs", str(tmp_path.resolve()), "--decide", "6"]


def test_provisional_exactly_when_a_model_was_still_improving(tmp_path):
    make_run(tmp_path, "p", [0, 1], 0.3)
    c = make_run(tmp_path, "c", [0, 1], 0.9, parent="p")
    flat, rising = [0.2, 0.5, 0.5], [0.2, 0.3, 0.5]
    for curve, want in ((flat, False), (rising, True)):
        pd.DataFrame({"epoch": range(3), "macro_f1": curve}).to_csv(c / "history.csv", index=False)
        j = judge(RunFolder(c), tmp_path)
        assert bool(j.entry.get("provisional")) is want and bool(j.rising) is want


def test_a_child_run_before_its_parent_is_rejudged_and_keeps_its_old_verdict(tmp_path):
    c = make_run(tmp_path, "c", [0, 1], 0.9, parent="p")
    (c / "card.md").write_text("# c\n")
    assert not stale(c, tmp_path)  # no parent run yet: nothing newer to judge on
    make_run(tmp_path, "p", [0, 1], 0.2)
    assert stale(c, tmp_path)
    rows = {r["id"]: r for r in collect(tmp_path)}
    assert rows[c.name]["verdict"] == "supported"            # the board shows it now ...
    assert "verdict" not in json.loads((c / "metrics.json").read_text())  # ... without writing it
    rejudge(c, tmp_path)
    m = json.loads((c / "metrics.json").read_text())
    assert m["verdict"]["verdict"] == "supported" and m["verdict_history"] == []
    assert "supported" in (c / "card.md").read_text() and not stale(c, tmp_path)
    make_run(tmp_path, "p", [2], 0.2)   # more parent evidence: stale again; the old verdict is kept
    make_run(tmp_path, "c", [2], 0.9, parent="p")
    assert stale(c, tmp_path)
    rejudge(c, tmp_path)
    m = json.loads((c / "metrics.json").read_text())
    assert m["verdict"]["seeds"] == 3 and m["verdict_history"][0]["seeds"] == 2


def test_the_board_shows_no_delta_without_a_comparable_parent(tmp_path):
    make_run(tmp_path, "p", [0], 0.2, fields={"epochs": 3})  # the parent recipe, other overrides
    c = make_run(tmp_path, "c", [0], 0.9, parent="p")
    from fastmask.views.board import delta, tree, verdict_word
    r = next(r for r in tree(collect(tmp_path)) if r["id"] == c.name)
    assert delta(r) is None and verdict_word(r) == "no parent run"


# --- the --decide loop, with a trainer that writes planted runs -------------------------------------

class Planted:
    """Stands in for session.train_and_record: writes a finished run folder of the recipe's seeds whose
    accuracy is planted per recipe name."""
    def __init__(self, acc):
        self.acc, self.trained, self.splits = acc, [], []

    def __call__(self, recipe, data, runs_dir, overrides=None, info=None, cbs=()):
        seeds = list(range(recipe.seed, recipe.seed + recipe.replicates))
        self.trained.append((recipe.name, tuple(seeds)))
        self.splits.append((recipe.name, str(recipe.split), (overrides or {}).get("split")))
        cfg = recipe.config()
        return make_run(runs_dir, recipe.name, seeds, self.acc[recipe.name],
                        parent=cfg["parent"], fields=cfg["fields"], parent_fields=cfg["parent_fields"],
                        salt=0 if recipe.name == "c" else 1)


def recipes(decide):
    p = Recipe(arch="x", epochs=1)
    p.name = "p"
    c = p.but(epochs=1, lr=0.01, decide=decide)
    c.name = "c"
    return c


def first_pair(t, c, runs):
    """The parent's seed 0 (the parent on demand) and the child's first run, as `fastmask run c.py` leaves them."""
    hypothesis.train_missing(c.parent, None, runs, {}, "fp1", [0], "c")
    return t(c, None, runs)


@pytest.fixture
def planted(monkeypatch):
    def make(acc, design="seeds"):
        t = Planted(acc)
        for m in (hypothesis, parents, deciding):
            monkeypatch.setattr(m, "train_and_record", t)
        if design == "seeds":  # the seed loop itself: the plan is tested below and in test_design
            from fastmask.report.design import Design

            def seeds(recipe, v, *a, **k):
                return Design("seeds", recipe.decide, 0, 0.0, 0.0, False), "planted", []
            monkeypatch.setattr(deciding, "plan_design", seeds)
        return t
    return make


def test_decide_stops_as_soon_as_the_verdict_decides(tmp_path, planted):
    t = planted({"p": 0.2, "c": 0.95})
    c = recipes(decide=6)
    first = first_pair(t, c, tmp_path)
    hypothesis.decide(c, None, tmp_path, {}, "fp1", first, started=0.0)
    assert t.trained[0] == ("p", (0,)) and t.trained[1] == ("c", (0,))
    assert t.trained[2:] == [("p", (1,)), ("c", (1,))]  # one pair more, then supported: no third seed
    assert json.loads((first / "metrics.json").read_text())["verdict"]["verdict"] == "supported"


def test_decide_stops_at_the_seed_budget(tmp_path, planted):
    t = planted({"p": 0.5, "c": 0.5})
    c = recipes(decide=3)
    first = first_pair(t, c, tmp_path)
    hypothesis.decide(c, None, tmp_path, {}, "fp1", first, started=0.0)
    m = json.loads((first / "metrics.json").read_text())
    v = m["verdict"]
    assert v["seeds"] <= 3 and sum(1 for n, _ in t.trained if n == "c") == v["seeds"]
    if v["verdict"] not in ("no effect", "supported", "refuted"):  # the budget, or futile before it: said which
        assert v["seeds"] == 3 or m["decision"]["reason"].startswith("futile: 3 paired seeds cannot decide")
    assert m["decision"]["design"] == "3 paired seeds" and m["decision"]["minutes"] >= 0


def test_decide_builds_on_the_childs_finished_seed_instead_of_training_it_again(tmp_path, planted, monkeypatch, capsys):
    """The card's own command (`fastmask run c.py --decide N`) after a first run: seed 0 of both exists, so
    the first thing trained is the pair for seed 1."""
    from types import SimpleNamespace
    t = planted({"p": 0.5, "c": 0.5})
    c = recipes(decide=3)
    for name, fake in (("load_recipe", lambda *a, **k: c), ("preflight", lambda r: None), ("setup", lambda r: None),
                       ("load_data", lambda *a, **k: SimpleNamespace(train=None, fingerprint="fp1"))):
        monkeypatch.setattr(hypothesis, name, fake)
    t(c.parent, None, tmp_path)
    t(c, None, tmp_path)
    t.trained.clear()
    assert hypothesis.run_file("recipes/c.py", runs_dir=tmp_path) == 0
    assert ("c", (0,)) not in t.trained and t.trained[:2] == [("p", (1,)), ("c", (1,))]
    assert "reusing" in capsys.readouterr().out


def test_a_kfold_design_trains_both_sides_folds_and_reuses_the_parents(tmp_path, planted, monkeypatch, capsys):
    from fastmask.report.design import Design
    t = planted({"p": 0.5, "c": 0.5}, design=None)
    monkeypatch.setattr(deciding, "plan_design",
                        lambda *a, **k: (Design("kfold", 5, 10, 20.0, 0.04, False), "planted", []))
    c = recipes(decide=6)
    first = first_pair(t, c, tmp_path)
    last = hypothesis.decide(c, None, tmp_path, {}, "fp1", first, started=0.0)
    # the parent's folds first (the parent on demand), then the child's: split and the --set that reproduces it
    assert t.splits[2:] == [("p", "kfold:5", "kfold:5"), ("c", "kfold:5", "kfold:5")]
    assert "decide: plan kfold:5: 5 models a side, 10 to train, about 20 min" in capsys.readouterr().out
    m = json.loads((Path(last) / "metrics.json").read_text())
    assert m["decision"]["design"] == "kfold:5" and m["decision"]["reason"] == "kfold:5 trained on both sides"
    card = (first / "card.md").read_text()  # the first run's card points at the run holding the final verdict
    assert "**--decide.** kfold:5: stopped because kfold:5 trained on both sides" in card
    assert f"the verdict of that design is on [{Path(last).name}](../{Path(last).name}/card.md)" in card
    second = t(c.variant(seed=0), None, tmp_path)  # the next hypothesis on the same parent: its folds are reused
    hypothesis.decide(c, None, tmp_path, {}, "fp1", second, started=0.0)
    assert [n for n, split, _ in t.splits if split == "kfold:5"] == ["p", "c"]  # nothing trained again


def test_no_design_within_the_budget_says_what_would_and_trains_nothing_more(tmp_path, planted, capsys):
    t = planted({"p": 0.5, "c": 0.52}, design=None)  # the real plan, from the noise the first pair measured
    c = recipes(decide=3)
    first = first_pair(t, c, tmp_path)
    hypothesis.decide(c, None, tmp_path, {}, "fp1", first, started=0.0, effect=0.001)
    out = capsys.readouterr().out
    assert "decide: none within the budget resolves it" in out and "decide: to resolve 0.001: " in out
    assert "GPU" in out and len(t.trained) == 2  # nothing trained after the first pair
    m = json.loads((first / "metrics.json").read_text())
    assert m["decision"]["reason"].startswith("no design within the budget resolves the effect")
    assert "**--decide.** no design within the budget: stopped because no design" in (first / "card.md").read_text()


@pytest.mark.parametrize("args,says", [
    (["--decide", "--effect", "0"], "--effect 0: a change of macro F1 in (0, 1)"),
    (["--decide", "--effect", "1"], "--effect 1: a change of macro F1 in (0, 1)"),
    (["--decide", "--effect", "nan"], "--effect nan"),
    (["--decide", "--effect", "-0.1"], "--effect -0.1"),
])
def test_bad_effects_are_one_line_exit_2(args, says, tmp_path):
    from conftest import in_process
    p = in_process("run", "recipes/oversample.py", *args, "--runs", tmp_path)
    assert p.returncode == 2 and says in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not any(tmp_path.iterdir())


def test_decide_on_a_root_recipe_is_one_line_exit_2(tmp_path):
    from conftest import in_process
    p = in_process("run", "recipes/baseline.py", "--decide", "--runs", tmp_path)
    assert p.returncode == 2 and "baseline has no parent recipe to decide against" in p.stderr, p.stderr
    assert not any(tmp_path.iterdir())


def test_the_parent_on_demand_trains_only_missing_seeds(tmp_path, planted, capsys):
    t = planted({"p": 0.5, "c": 0.5})
    c = recipes(decide=0)
    hypothesis.train_missing(c.parent, None, tmp_path, {}, "fp1", [0, 1, 2], "c")
    assert t.trained == [("p", (0, 1, 2))]  # all missing: one run with the child's replicates
    hypothesis.train_missing(c.parent, None, tmp_path, {}, "fp1", [0, 1, 2], "c")
    assert len(t.trained) == 1 and "reusing" in capsys.readouterr().out
    hypothesis.train_missing(c.parent, None, tmp_path, {}, "fp1", [2, 3, 5], "c")
    assert t.trained[1:] == [("p", (3,)), ("p", (5,))]


# --- the parent on demand, for real (tiny models) ----------------------------------------------------

def test_run_trains_the_missing_parent_first_then_reuses_it(twin, tmp_path, capsys):
    from fastmask.runs.hypothesis import run_file

    from conftest import TINY
    sets = [s for s in TINY if s != "--set"]
    assert run_file("recipes/oversample.py", sets, data=twin, runs_dir=tmp_path) == 0
    dirs = sorted(d for d in tmp_path.iterdir() if d.is_dir())
    assert [d.name.split("-", 1)[1] for d in dirs] == ["person_split", "oversample"]
    parent, child = dirs
    assert json.loads((parent / "config.json").read_text())["trained_for"] == "oversample"
    v = json.loads((child / "metrics.json").read_text())["verdict"]
    assert v["parent_run"] == parent.name and v["seeds"] == 1
    assert "training it first" in capsys.readouterr().out
    assert run_file("recipes/oversample.py", sets, data=twin, runs_dir=tmp_path, parent=True) == 0
    assert "reusing" in capsys.readouterr().out
    assert len([d for d in tmp_path.iterdir() if d.is_dir()]) == 3  # the parent was not trained again


def test_plan_names_the_paired_seeds_and_the_validation_people(tmp_path):
    from fastmask.report.judgement import plan_for
    make_run(tmp_path, "p", [0, 1], 0.5)
    c = make_run(tmp_path, "c", [0, 1], 0.6, parent="p")
    people = pd.read_csv(c / "valid_preds.csv", dtype={"person": str})["person"].nunique()
    head, *rest = plan_for(c, tmp_path, effect=0.02)
    assert head.startswith("c vs p: ") and head.endswith(f"on 2 paired seed(s) and {people} people")
    assert rest and rest[0].startswith("To resolve 0.020")


def test_the_run_judged_is_not_pooled_twice_when_named_absolutely_and_the_runs_folder_relatively(tmp_path, monkeypatch):
    """`fastmask run` names its run folder absolutely while --runs is "runs": the run must still be
    excluded from its own pool, or the card lists it twice as evidence."""
    runs = tmp_path / "runs"
    make_run(runs, "p", [0], 0.5)
    a = make_run(runs, "c", [0], 0.6, parent="p")
    b = make_run(runs, "c", [1], 0.6, parent="p")
    monkeypatch.chdir(tmp_path)
    assert [e.dir.name for e in pool("runs", "c", "fp1", {**BASE, "seed": 0}, exclude=a.resolve())] == [b.name]
    j = judge(RunFolder(a.resolve()), Path("runs"))
    assert sorted(j.child_runs) == sorted([a.name, b.name])


def test_a_trainer_with_four_slots_adds_two_paired_seeds_a_round(tmp_path, planted):
    t = planted({"p": 0.5, "c": 0.5})

    class Four:  # the queue's engine with 4 slots: each round trains 2 pairs together, then one look
        slots = 4

        def __init__(self):
            self.rounds = []

        def train(self, models):
            self.rounds.append([(m.recipe.name, m.recipe.seed, m.sets["seed"]) for m in models])
            return [t(m.recipe, None, tmp_path, overrides=m.sets) for m in models]
    c = recipes(decide=5)
    first = first_pair(t, c, tmp_path)
    four = Four()
    deciding.decide(c, None, tmp_path, {}, "fp1", first, started=0.0, trainer=four)
    assert four.rounds[0] == [("p", 1, 1), ("c", 1, 1), ("p", 2, 2), ("c", 2, 2)]
    assert all(len(r) <= 4 for r in four.rounds)
    v = json.loads((first / "metrics.json").read_text())["verdict"]
    assert v["seeds"] <= 5  # never past the design's seeds, whatever the round size


def test_queued_models_train_as_parallel_jobs_and_come_back_as_finished_run_folders(twin, tmp_path):
    """--decide --jobs 2: the parent's and the child's seed 1 as two processes at once, each with --no-parent,
    the user's --set values and the seed, recorded as ordinary runs."""
    from fastmask.recipe import parse_sets
    from fastmask.recipe_file import load_recipe
    from fastmask.runs.decide import Model, Queued

    from conftest import TINY
    sets = parse_sets([s for s in TINY if s != "--set"])
    c = load_recipe("recipes/oversample.py", sets)
    q = Queued(twin, tmp_path, jobs=2, out=lambda line: None)
    try:
        runs = q.train([Model(c.parent.variant(seed=1), {**sets, "seed": 1, "replicates": 1}, {}),
                        Model(c.variant(seed=1), {**sets, "seed": 1, "replicates": 1}, {})])
    finally:
        q.close()
    got = {RunFolder(r).recipe: RunFolder(r) for r in runs}
    assert set(got) == {"person_split", "oversample"}
    for r in got.values():
        assert r.status == "finished" and r.config["fields"]["seed"] == 1 and r.config["fields"]["arch"] == "test_resnet"
        assert "--no-parent" in r.config["environment"]["command"]
    assert len([d for d in tmp_path.iterdir() if d.is_dir() and not d.name.startswith(".")]) == 2


def test_decide_with_jobs_as_typed_is_the_decide_loop_not_a_queue(twin, tmp_path):
    from conftest import TINY, in_process
    p = in_process("run", "recipes/oversample.py", "--decide", "3", "--jobs", "2", *TINY, "--data", twin,
                   "--runs", tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "decide: " in p.stdout and "queue:" not in p.stdout, p.stdout[-2000:]
    bad = in_process("run", "recipes/oversample.py", "--decide", "3", "--jobs", "0", "--runs", tmp_path / "x")
    assert bad.returncode == 2 and "--jobs 0: at least 1" in bad.stderr


def test_anyway_trains_the_cheapest_design_that_decides_the_effect_measured_so_far(tmp_path, planted, capsys):
    t = planted({"p": 0.2, "c": 0.95}, design=None)  # a huge effect, and an effect asked that nothing resolves
    c = recipes(decide=6)
    first = first_pair(t, c, tmp_path)
    deciding.decide(c, None, tmp_path, {}, "fp1", first, started=0.0, effect=0.001)
    out = capsys.readouterr().out
    assert "would be decided by 2 paired seeds (2 models" in out and "--anyway trains it" in out
    assert len(t.trained) == 2  # without --anyway: nothing more
    deciding.decide(c, None, tmp_path, {}, "fp1", first, started=0.0, effect=0.001, anyway=True)
    assert t.trained[2:] == [("p", (1,)), ("c", (1,))]  # one pair, not the k-fold the smallest MDE would take
    assert json.loads((first / "metrics.json").read_text())["verdict"]["verdict"] == "supported"

"""fastmask.search: the space in the recipe, recorded and pruned trials, the best recipe, shared studies."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("optuna_integration")

from fastmask.errors import FastmaskError  # noqa: E402
from fastmask.search import parse_space, recipe_text, set_text, write_best  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY_RECIPE = '''"""A tiny searchable root recipe for the tests."""
from fastmask.recipe import Recipe

recipe = Recipe(arch="test_resnet", size=(32, 24), epochs=2, bs=16, pretrained=False)
search = {"lr": ("log", 1e-3, 1e-2), "cutmix": [None, "halves"]}
'''


def env(**extra):
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}
    return e


# --- the space ------------------------------------------------------------------------------------

def test_space_forms():
    from optuna.distributions import FloatDistribution, IntDistribution
    dims = {d.field: d for d in parse_space({
        "lr": ("log", 1e-4, 1e-2), "wd": ("float", 0.0, 0.1, 0.05), "epochs": ("int", 2, 8, 2),
        "bs": ("log", 16, 128), "cutmix": [None, "box", "halves"], "size": ["64,48", (128, 96)],
        "mixup": FloatDistribution(0.1, 0.4), "patience": IntDistribution(1, 3)})}
    assert (dims["lr"].kind, dims["lr"].log) == ("float", True)
    assert (dims["bs"].kind, dims["bs"].log) == ("int", True)
    assert (dims["epochs"].kind, dims["epochs"].step) == ("int", 2)
    assert dims["cutmix"].labels() == [None, "box", "halves"]
    assert dims["size"].choices == [(64, 48), (128, 96)] and dims["size"].labels() == ["64,48", "128,96"]
    assert dims["mixup"].kind == "float" and dims["patience"].kind == "int"


@pytest.mark.parametrize("space, msg", [
    (None, "no search space"),
    ({"lrr": ("log", 1e-4, 1e-2)}, "unknown recipe field 'lrr'; did you mean lr"),
    ({"lr": ("cube", 1, 2)}, "is not a search spec"),
    ({"lr": ("log", 0, 1e-2)}, "0 < low"),
    ({"lr": ("float", 1e-2, 1e-4)}, "low must be below high"),
    ({"epochs": ("float", 0.5, 3.5)}, "recipe field epochs"),
    ({"cutmix": ["box", "boxes"]}, "recipe field cutmix: 'boxes'"),
    ({"cutmix": []}, "empty list"),
    ({"cutmix": ("box", "halves")}, "use [choices]"),
])
def test_bad_space_names_field(space, msg):
    with pytest.raises(FastmaskError) as e:
        parse_space(space, where="recipes/x.py")
    assert str(e.value).startswith("recipes/x.py: ") and msg in str(e.value), str(e.value)


def test_trial_file_names_objects_through_the_parents_space():
    marker = object()
    d = parse_space({"augment": ["light", marker]})[0]
    assert d.source("light") == "'light'" and d.source(marker) == "space['augment'][1]"
    base = type("R", (), {"file": "/x/recipes/searched.py"})()
    text = recipe_text(base, {"augment": d.source(marker)}, "Doc.")
    assert "from recipes.searched import recipe as parent, search as space" in text
    assert "recipe = parent.but(augment=space['augment'][1])" in text
    assert set_text(None) == "none" and set_text((64, 48)) == "64,48" and set_text(marker) is None


def test_best_recipe_falls_back_to_runs_folder(tmp_path, capsys):
    from fastmask.recipe import load_recipe
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny_search.py").write_text(TINY_RECIPE)
    base = load_recipe(tmp_path / "recipes" / "tiny_search.py")
    dims = parse_space(base.search)
    study = optuna.create_study(direction="maximize", study_name="tiny_search")
    for n, (lr, v) in enumerate([(2e-3, 0.3), (4e-3, 0.5)]):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr, "cutmix": "halves"}, distributions={
                "lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True),
                "cutmix": optuna.distributions.CategoricalDistribution([None, "halves"])},
            value=v, user_attrs={"source": {"lr": repr(lr), "cutmix": "'halves'"}}))
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("")  # a file where the folder should be: unwritable even for root
    runs = tmp_path / "runs"
    runs.mkdir()
    p = write_best(study, base, dims, blocked / "tiny_search_best.py", runs, None, None, "python -m ...", [])
    assert p == runs / "tiny_search_best.py" and "not writable" in capsys.readouterr().out
    text = p.read_text()
    assert "recipe = parent.but(lr=0.004, cutmix='halves')" in text and "trial 1 scoring 0.500" in text


# --- bad input on the command line ----------------------------------------------------------------

@pytest.mark.parametrize("body, args, msg", [
    (None, [], "no search space"),
    ('from fastmask.recipe import Recipe\nrecipe = Recipe()\nsearch = {"lrr": ("log", 1e-4, 1e-2)}\n', [],
     "did you mean lr"),
    ('from fastmask.recipe import Recipe\nrecipe = Recipe()\nsearch = {"lr": ("log", 1e-2)}\n', [],
     "is not a search spec"),
    ('from fastmask.recipe import Recipe\nrecipe = Recipe()\nsearch = {"lr": ("log", 1e-4, 1e-2)}\n',
     ["--set", "lr=0.01"], "--set lr: the field is searched"),
])
def test_cli_bad_input_one_line_exit_2(body, args, msg, tmp_path):
    f = REPO / "recipes" / "person_split.py"
    if body is not None:
        f = tmp_path / "bad.py"
        f.write_text('"""Bad."""\n' + body)
    p = subprocess.run([sys.executable, "-m", "fastmask.search", str(f), "--trials", "2", "--runs",
                        str(tmp_path / "runs"), *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env())
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and msg in lines[0], p.stderr[-2000:]
    assert str(f) in lines[0] or "--set" in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing created: no study, no run folder


# --- end to end: 3 recorded trials, one pruned, the best recipe runs ------------------------------

SEARCH = textwrap.dedent('''
    import sys, optuna
    from fastmask.search import search

    class PruneTrialOne(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.number == 1

    res = search(sys.argv[1], 3, data=sys.argv[2], runs_dir=sys.argv[3], pruner=PruneTrialOne(),
                 sampler=optuna.samplers.RandomSampler(seed=0), progress=False)
    print("BEST", res.best)
''')


@pytest.fixture(scope="module")
def searched(twin, tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    (root / "recipes").mkdir()
    (root / "recipes" / "__init__.py").write_text("")
    (root / "recipes" / "tiny_search.py").write_text(TINY_RECIPE)
    runs = root / "runs"
    p = subprocess.run([sys.executable, "-c", SEARCH, str(root / "recipes" / "tiny_search.py"), str(twin), str(runs)],
                       cwd=root, capture_output=True, text=True, timeout=900, env=env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return root, runs, p.stdout


def test_every_trial_is_a_recorded_run(searched):
    root, runs, out = searched
    study = optuna.load_study(study_name="tiny_search", storage=f"sqlite:///{runs / 'search.db'}")
    states = [t.state.name for t in sorted(study.trials, key=lambda t: t.number)]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE"]
    dirs = sorted(d for d in runs.iterdir() if d.is_dir())
    assert [d.name.split("-", 1)[1] for d in dirs] == ["tiny_search", "tiny_search-trial0", "tiny_search-trial1",
                                                       "tiny_search-trial2"]  # the baseline, then the trials
    for t in study.trials:
        d = Path(t.user_attrs["run"])
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["parent"] == "tiny_search" and cfg["search"]["trial"] == t.number
        assert abs(cfg["fields"]["lr"] - t.params["lr"]) < 1e-3 * t.params["lr"]  # 4 significant digits
        assert "fastmask.run" in cfg["environment"]["command"] and "--set lr=" in cfg["environment"]["command"]
        for f in ("recipe.py", "history.csv", "metrics.json", "card.md", "model.pkl"):
            assert (d / f).is_file(), (d, f)
        assert "from recipes.tiny_search import recipe as parent" in (d / "recipe.py").read_text()
        card = (d / "card.md").read_text()
        assert "**Parent.** `tiny_search`" in card and "`lr`: 0.005 →" in card
        if t.state.name == "COMPLETE":
            assert json.loads((d / "metrics.json").read_text())["macro_f1"] == pytest.approx(t.value)


def test_pruned_trial_keeps_a_run_marked_pruned(searched):
    root, runs, out = searched
    d = next(runs.glob("*-tiny_search-trial1"))
    assert json.loads((d / "status.json").read_text())["status"] == "pruned"
    assert (d / "card.md").read_text().startswith("# tiny_search-trial1  (pruned)")
    assert len((d / "history.csv").read_text().strip().splitlines()) == 2  # header + the one epoch before pruning
    assert (d / "model.pkl").is_file()


def test_best_recipe_loads_and_runs(searched, twin):
    root, runs, out = searched
    best = root / "recipes" / "tiny_search_best.py"
    assert f"BEST {best}" in out
    text = best.read_text()
    assert "from recipes.tiny_search import recipe as parent" in text and "search study 'tiny_search'" in text
    study = optuna.load_study(study_name="tiny_search", storage=f"sqlite:///{runs / 'search.db'}")
    assert f"trial {study.best_trial.number} scoring {study.best_value:.3f}" in " ".join(text.split())
    p = subprocess.run([sys.executable, "-m", "fastmask.run", str(best), "--data", str(twin), "--runs", str(runs)],
                       cwd=root, capture_output=True, text=True, timeout=600, env=env())
    assert p.returncode == 0, p.stderr[-3000:]
    d = sorted(runs.glob("*-tiny_search_best"))[-1]
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["parent"] == "tiny_search"
    assert set(cfg["changed"]) <= {"lr", "cutmix"} and cfg["changed"]
    assert abs(cfg["fields"]["lr"] - study.best_params["lr"]) < 1e-3 * study.best_params["lr"]
    assert "parent (" in (d / "card.md").read_text()  # compared against the searched recipe's own run


# --- several workers, one study -------------------------------------------------------------------

WORKER = textwrap.dedent('''
    import sys, time, optuna
    from fastmask.search import drive, open_storage
    store, _ = open_storage(sys.argv[1], ".")
    study = optuna.create_study(storage=store, study_name="shared", direction="maximize", load_if_exists=True)
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        time.sleep(0.3)
        return x
    print("RAN", drive(study, objective, int(sys.argv[2])))
''')


@pytest.mark.parametrize("storage", ["search.db", "search.journal"])
def test_two_workers_share_one_study(storage, tmp_path):
    url = str(tmp_path / storage)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, "7"], cwd=tmp_path, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    ran = [int(o[0].split("RAN")[-1]) for o in outs]
    from fastmask.search import open_storage
    study = optuna.load_study(study_name="shared", storage=open_storage(url, tmp_path)[0])
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    numbers = [t.number for t in study.trials]
    assert len(done) == 7 and len(set(numbers)) == len(numbers)
    assert all(r >= 1 for r in ran) and sum(ran) == 7  # both worked, none ran a trial beyond the 7
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


def test_a_worker_that_loses_the_race_for_the_last_trial_backs_off():
    """Two workers both saw room for one more trial: the one whose trial number lies beyond the first N
    marks it failed (user attr surplus) and stops, so the study still holds N trials."""
    from fastmask.search import drive
    study = optuna.create_study(direction="maximize")
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    study.ask()  # trial 1: running in the other worker
    real, calls = study.get_trials, []

    def stale_first(*a, **k):  # the pre-check read the study before the other worker asked
        calls.append(1)
        return [] if len(calls) == 1 else real(*a, **k)

    study.get_trials = stale_first
    assert drive(study, lambda t: 1.0, 2) == 0
    study.get_trials = real
    t2 = study.trials[2]
    assert t2.state == optuna.trial.TrialState.FAIL and t2.user_attrs["surplus"]
    assert [t.state.name for t in study.trials[:2]] == ["COMPLETE", "RUNNING"]


def test_failed_trials_are_recorded_and_too_many_in_a_row_stop():
    from fastmask.search import drive
    study = optuna.create_study(direction="maximize")
    calls = []

    def flaky(trial):  # the first trial fails (e.g. a NaN loss), then the search goes on
        calls.append(trial.number)
        if len(calls) == 1:
            raise FastmaskError("training loss became nan at epoch 1")
        return trial.suggest_float("x", 0, 1)

    assert drive(study, flaky, 3) == 4
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert "nan" in study.trials[0].user_attrs["error"]

    def broken(trial):
        raise FastmaskError("always")

    with pytest.raises(FastmaskError, match="3 trials in a row failed; the last: always"):
        drive(optuna.create_study(direction="maximize"), broken, 10)


# --- the best recipe is written from checked values, never from stored text ---------------------

EVIL = "__import__('os').system('touch MARKER')"
LR = optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)
CUTMIX = optuna.distributions.CategoricalDistribution([None, "halves"])


def tiny_base(tmp_path):
    from fastmask.recipe import load_recipe
    (tmp_path / "recipes").mkdir(exist_ok=True)
    (tmp_path / "recipes" / "__init__.py").write_text("")
    (tmp_path / "recipes" / "tiny_search.py").write_text(TINY_RECIPE)
    base = load_recipe(tmp_path / "recipes" / "tiny_search.py")
    return base, parse_space(base.search)


def add(study, value, params, distributions, **attrs):
    study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value,
                                              user_attrs=attrs))


def imports_cleanly(path, cwd):
    """Load the recipe in a fresh process; True when it ran no code of its own (no MARKER file)."""
    code = "import sys\nfrom fastmask.recipe import load_recipe\nprint(load_recipe(sys.argv[1]).lr)\n"
    p = subprocess.run([sys.executable, "-c", code, str(path)], cwd=cwd, capture_output=True, text=True,
                       timeout=120, env=env())
    assert p.returncode == 0, p.stderr[-2000:]
    return not (cwd / "MARKER").exists()


def only_literals(text):
    """The file is a docstring, one `from ... import`, and `recipe = parent.but(k=<literal>, ...)`."""
    import ast
    tree = ast.parse(text)
    doc, imp, assign = tree.body
    call = assign.value
    return (isinstance(doc.value, ast.Constant) and isinstance(imp, ast.ImportFrom)
            and isinstance(call, ast.Call) and ast.unparse(call.func) == "parent.but" and not call.args
            and all(isinstance(k.value, (ast.Constant, ast.Tuple)) for k in call.keywords))


def test_best_recipe_ignores_a_stored_source_attr(tmp_path):
    base, dims = tiny_base(tmp_path)
    name = 'tiny"""\n' + EVIL + '\n"""\\'  # a study name that tries to end the docstring
    study = optuna.create_study(direction="maximize", study_name=name)
    add(study, 0.7, {"lr": 4e-3, "cutmix": "halves"}, {"lr": LR, "cutmix": CUTMIX},
        source={"lr": "0.004", "cutmix": f"'halves'); {EVIL}; (0"})
    p = write_best(study, base, dims, tmp_path / "recipes" / "tiny_best.py", tmp_path, None, None, "python -m ...", [])
    text = p.read_text()
    assert "recipe = parent.but(lr=0.004, cutmix='halves')" in text and only_literals(text)
    assert "system" not in text.split('"""')[-1]  # the study name stays inside the docstring
    assert imports_cleanly(p, tmp_path)


def test_best_recipe_passes_over_trials_outside_the_space(tmp_path, capsys):
    base, dims = tiny_base(tmp_path)
    study = optuna.create_study(direction="maximize", study_name="tiny_search")
    evil_choice = optuna.distributions.CategoricalDistribution([None, "halves", EVIL])
    add(study, 0.9, {"lr": 4e-3, "cutmix": EVIL}, {"lr": LR, "cutmix": evil_choice})
    add(study, 0.8, {"lr": 0.5, "cutmix": "halves"},
        {"lr": optuna.distributions.FloatDistribution(1e-3, 1.0), "cutmix": CUTMIX})
    add(study, 0.75, {"lr": EVIL, "cutmix": None},
        {"lr": optuna.distributions.CategoricalDistribution([EVIL]), "cutmix": CUTMIX})
    add(study, 0.6, {"lr": 2e-3, "cutmix": None}, {"lr": LR, "cutmix": CUTMIX})
    p = write_best(study, base, dims, None, tmp_path, None, None, "python -m ...", [])
    out = capsys.readouterr()
    warnings = out.err.strip().splitlines()
    assert len(warnings) == 3 and all("passes it over" in w for w in warnings), out.err
    assert "trial 0" in warnings[0] and "not one of the searched choices" in warnings[0]
    assert "trial 1" in warnings[1] and "outside the searched float range" in warnings[1]
    text = p.read_text()
    assert "recipe = parent.but(lr=0.002)" in text and "trial 3 scoring 0.600" in " ".join(text.split())
    assert "system" not in text and only_literals(text) and imports_cleanly(p, tmp_path)


def test_no_best_recipe_when_no_trial_is_in_the_space(tmp_path, capsys):
    base, dims = tiny_base(tmp_path)
    study = optuna.create_study(direction="maximize", study_name="tiny_search")
    add(study, 0.9, {"lr": 0.5}, {"lr": optuna.distributions.FloatDistribution(1e-3, 1.0)})
    assert write_best(study, base, dims, None, tmp_path, None, None, "python -m ...", []) is None
    assert "no best recipe" in capsys.readouterr().out
    assert not list((tmp_path / "recipes").glob("*_best.py"))


def test_stored_values_map_back_to_recipe_values():
    d = {x.field: x for x in parse_space({"lr": ("log", 1e-4, 1e-2), "epochs": ("int", 2, 8, 2),
                                          "size": ["64,48", (128, 96)], "cutmix": [None, "box"],
                                          "patience": [1, 2]})}
    assert d["lr"].value_of(0.0012345678) == 0.001235  # what the trial trained, 4 significant digits
    assert d["epochs"].value_of(4) == 4 and d["size"].value_of("128,96") == (128, 96)
    assert d["cutmix"].value_of(None) is None
    for field, bad in [("lr", True), ("lr", float("nan")), ("lr", "0.001"), ("epochs", 3), ("epochs", 4.0),
                       ("epochs", 10), ("size", (64, 48)), ("cutmix", "halves"), ("patience", True)]:
        with pytest.raises(FastmaskError):
            d[field].value_of(bad)

"""fastmask.search: the space in the recipe, recorded and pruned trials, the best recipe, shared studies."""
import ast
import json
import logging
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

optuna = pytest.importorskip("optuna")

from fastai.callback.core import CancelFitException  # noqa: E402

from fastmask.data.load import Data  # noqa: E402
from fastmask.errors import FastmaskError  # noqa: E402
from fastmask.learn.progress import Quiet  # noqa: E402
from fastmask.recipe import Recipe, load_recipe  # noqa: E402
from fastmask.store.run_folder import RunFolder  # noqa: E402
from fastmask.tune import search as searching  # noqa: E402
from fastmask.tune.search import PruneOnMacroF1, check_space, drive, open_storage, write_best  # noqa: E402

from conftest import as_new_process, in_process  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY_RECIPE = '''"""A tiny searchable root recipe for the tests."""
from fastmask.recipe import Recipe

recipe = Recipe(arch="test_resnet", size=(32, 24), epochs=2, bs=16, pretrained=False)


def space(trial):
    return dict(lr=trial.suggest_float("lr", 1e-3, 1e-2, log=True),
                cutmix=trial.suggest_categorical("cutmix", [None, "halves"]))
'''
EVIL = "__import__('os').system('touch MARKER')"
LR = optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)
CUTMIX = optuna.distributions.CategoricalDistribution([None, "halves"])


def env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def space_from(body):
    """A `space` function from source text, as a recipe file would define it."""
    scope = {}
    exec(textwrap.dedent(body), scope)
    return scope.get("space")


# --- the space ------------------------------------------------------------------------------------

def test_space_values_are_typed_recipe_values():
    space = space_from('''
        def space(trial):
            return dict(size=trial.suggest_categorical("size", ["64,48", "128,96"]),
                        epochs=trial.suggest_int("epochs", 2, 8, step=2),
                        lr=trial.suggest_float("lr", 1e-3, 1e-2, log=True))''')
    values = check_space(space, Recipe(arch="test_resnet", pretrained=False), "recipes/x.py")
    assert values["size"] in [(64, 48), (128, 96)]  # the --set text became the field's tuple
    assert values["epochs"] in [2, 4, 6, 8] and type(values["epochs"]) is int
    assert 1e-3 <= values["lr"] <= 1e-2


@pytest.mark.parametrize("body, msg", [
    ("space = None", "no search space"),
    ("def space(trial):\n    return 1 / 0", "space(trial) raised ZeroDivisionError"),
    ("def space(trial):\n    return [trial.suggest_float('lr', 1e-3, 1e-2)]", "not a dict"),
    ("def space(trial):\n    return dict(lrr=trial.suggest_float('lrr', 1e-3, 1e-2))",
     "unknown recipe field 'lrr'; did you mean lr"),
    ("def space(trial):\n    return dict(epochs=trial.suggest_float('epochs', 0.5, 3.5))", "recipe field epochs"),
    ("def space(trial):\n    return dict(cutmix=trial.suggest_categorical('cutmix', ['box', 'boxes']))",
     "recipe field cutmix: 'boxes'"),
    # only the low end is bad: a draw almost never lands there, so the ends themselves are checked
    ("def space(trial):\n    return dict(lr=trial.suggest_float('lr', 0.0, 1e-2))", "recipe field lr: 0.0"),
    ("def space(trial):\n    return dict(arch=trial.suggest_categorical('arch', ['test_resnet', 'resnet_nope']))",
     "unknown timm model 'resnet_nope'"),
])
def test_bad_space_names_file_and_field(body, msg):
    with pytest.raises(FastmaskError) as e:
        check_space(space_from(body), Recipe(arch="test_resnet", pretrained=False), "recipes/x.py")
    assert str(e.value).startswith("recipes/x.py: ") and msg in str(e.value), str(e.value)


@pytest.mark.parametrize("body, args, msg", [
    (None, [], "no search space"),
    ("def space(trial):\n    return dict(lr=trial.suggest_float('lr', 1e-3, 1e-2) / 0)\n", [], "ZeroDivisionError"),
    ("def space(trial):\n    return dict(cutmix=trial.suggest_categorical('cutmix', ['boxes']))\n", [],
     "recipe field cutmix: 'boxes'"),
    ("def space(trial):\n    return dict(lr=trial.suggest_float('lr', 1e-3, 1e-2))\n", ["--set", "lr=0.01"],
     "--set lr: the field is searched"),
])
def test_cli_bad_input_one_line_exit_2(body, args, msg, tmp_path):
    f = REPO / "recipes" / "person_split.py"  # a recipe without a space
    if body is not None:
        f = tmp_path / "bad.py"
        f.write_text('"""Bad."""\nfrom fastmask.recipe import Recipe\nrecipe = Recipe()\n\n' + body)
    p = in_process("search", f, "--trials", "2", "--runs", tmp_path / "runs", *args)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and msg in lines[0], p.stderr[-2000:]
    assert str(f) in lines[0] or "--set" in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing created: no study, no run folder


# --- the callbacks --------------------------------------------------------------------------------

class FakeTrial:
    def __init__(self, prune_at):
        self.reports, self.prune_at = [], prune_at

    def report(self, value, step):
        self.reports.append((value, step))

    def should_prune(self):
        return len(self.reports) == self.prune_at


def test_pruning_reports_macro_f1_per_epoch_and_stops_fit_marked_pruned():
    trial = FakeTrial(prune_at=3)
    cb = PruneOnMacroF1(trial)
    names = ["epoch", "train_loss", "valid_loss", "macro_f1", "accuracy", "time"]
    cb.learn = SimpleNamespace(recorder=SimpleNamespace(metric_names=names))

    def epoch(f1):  # fastai's events, as a k-fold run's fits send them
        cb.learn.recorder.log = [0, 1.5, 1.4, f1, 0.9, "00:01"]
        cb("after_epoch")

    cb("before_fit")  # fold 0: two epochs
    epoch(0.2)
    epoch(0.3)
    cb("after_fit")
    assert cb.run_status is None
    cb("before_fit")  # fold 1's first epoch: step 2, not 0 again
    with pytest.raises(CancelFitException):
        epoch(0.1)
    assert trial.reports == [(0.2, 0), (0.3, 1), (0.1, 2)] and cb.run_status == "pruned"


def test_quiet_fit_prints_nothing_keeps_history_and_restores_the_logger(tmp_path, capsys):
    import torch
    from fastai.callback.progress import CSVLogger
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.metrics import accuracy
    x = torch.randn(64, 4)
    ds = list(zip(x, (x[:, 0] > 0).long()))
    learn = Learner(DataLoaders.from_dsets(ds, ds, bs=16, device="cpu"), torch.nn.Linear(4, 2),
                    loss_func=torch.nn.CrossEntropyLoss(), metrics=accuracy, path=tmp_path)
    learn.fit(2, cbs=[CSVLogger(fname="history.csv"), Quiet()])
    out = capsys.readouterr()
    assert out.out == "" and "epoch" not in out.err
    assert len((tmp_path / "history.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    assert learn.logger is print and learn.progress.run  # what an exported learner keeps
    learn.fit(1)
    assert "epoch" in capsys.readouterr().out  # the next fit prints again


# --- the best recipe is written from replayed, checked values, never from stored text -------------

def tiny_base(tmp_path, text=TINY_RECIPE, name="tiny_search"):
    (tmp_path / "recipes").mkdir(exist_ok=True)
    (tmp_path / "recipes" / "__init__.py").write_text("")
    (tmp_path / "recipes" / f"{name}.py").write_text(text)
    base = load_recipe(tmp_path / "recipes" / f"{name}.py")
    return base, base.space


def add(study, value, params, distributions, **attrs):
    study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value,
                                              user_attrs=attrs))


def fresh_load(path, cwd, expr="r.lr"):
    """Load the recipe in a fresh process and print `expr`; also True when it ran no code of its own."""
    code = f"import sys\nfrom fastmask.recipe import load_recipe\nr = load_recipe(sys.argv[1])\nprint({expr})\n"
    p = subprocess.run([sys.executable, "-c", code, str(path)], cwd=cwd, capture_output=True, text=True,
                       timeout=120, env=env())
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout.strip(), not (cwd / "MARKER").exists()


def only_literals(text):
    """The file is a docstring, one `from ... import`, and `recipe = parent.but(k=<literal>, ...)`."""
    doc, imp, assign = ast.parse(text).body
    call = assign.value
    return (isinstance(doc.value, ast.Constant) and isinstance(imp, ast.ImportFrom)
            and isinstance(call, ast.Call) and ast.unparse(call.func) == "parent.but" and not call.args
            and all(isinstance(k.value, (ast.Constant, ast.Tuple)) for k in call.keywords))


def test_best_recipe_holds_the_best_trials_values_as_literals(tmp_path):
    base, space = tiny_base(tmp_path)
    name = 'tiny"""\n' + EVIL + '\n"""\\'  # a study name that tries to end the docstring
    study = optuna.create_study(direction="maximize", study_name=name)
    add(study, 0.3, {"lr": 2e-3, "cutmix": None}, {"lr": LR, "cutmix": CUTMIX})
    add(study, 0.7, {"lr": 4e-3, "cutmix": "halves"}, {"lr": LR, "cutmix": CUTMIX},
        source={"lr": "0.004", "cutmix": f"'halves'); {EVIL}; (0"})  # stored text is never used
    add(study, 0.5, {"lr": 5e-3, "cutmix": "halves"}, {"lr": LR, "cutmix": CUTMIX})
    p = write_best(study, base, space, tmp_path / "recipes" / "tiny_best.py", tmp_path, None, "python -m ...", [])
    text = p.read_text()
    assert "from recipes.tiny_search import recipe as parent" in text
    assert "recipe = parent.but(lr=0.004, cutmix='halves')" in text and only_literals(text)
    assert "trial 1 of search study" in " ".join(text.split()) and "scoring 0.700" in " ".join(text.split())
    assert "system" not in text.split('"""')[-1]  # the study name stays inside the docstring
    assert fresh_load(p, tmp_path) == ("0.004", True)


def test_best_recipe_passes_over_trials_outside_the_space(tmp_path, capsys):
    base, space = tiny_base(tmp_path)
    study = optuna.create_study(direction="maximize", study_name="tiny_search")
    add(study, 0.9, {"lr": 4e-3, "cutmix": EVIL},
        {"lr": LR, "cutmix": optuna.distributions.CategoricalDistribution([None, "halves", EVIL])})
    add(study, 0.8, {"lr": 0.5, "cutmix": "halves"},
        {"lr": optuna.distributions.FloatDistribution(1e-3, 1.0), "cutmix": CUTMIX})
    add(study, 0.75, {"lr": EVIL, "cutmix": None},
        {"lr": optuna.distributions.CategoricalDistribution([EVIL]), "cutmix": CUTMIX})
    add(study, 0.6, {"lr": 2e-3, "cutmix": None}, {"lr": LR, "cutmix": CUTMIX})
    p = write_best(study, base, space, None, tmp_path, None, "python -m ...", [])
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 3 and all("passes it over" in w for w in warnings), warnings
    assert "trial 0" in warnings[0] and "not in (None, 'halves')" in warnings[0]
    assert "trial 1" in warnings[1] and "value 0.5 of parameter 'lr' isn't contained" in warnings[1]
    assert "trial 2" in warnings[2]
    assert p == tmp_path / "recipes" / "tiny_search_best.py"
    text = p.read_text()
    assert "recipe = parent.but(lr=0.002)" in text and "trial 3 of search study" in " ".join(text.split())
    assert "system" not in text and only_literals(text) and fresh_load(p, tmp_path)[1]


def test_no_best_recipe_when_no_trial_is_in_the_space(tmp_path, capsys):
    base, space = tiny_base(tmp_path)
    study = optuna.create_study(direction="maximize", study_name="tiny_search")
    add(study, 0.9, {"lr": 0.5, "cutmix": None},
        {"lr": optuna.distributions.FloatDistribution(1e-3, 1.0), "cutmix": CUTMIX})
    assert write_best(study, base, space, None, tmp_path, None, "python -m ...", []) is None
    assert "no best recipe" in capsys.readouterr().out
    assert not list((tmp_path / "recipes").glob("*_best.py"))


def test_best_recipe_falls_back_to_runs_folder(tmp_path, capsys):
    base, space = tiny_base(tmp_path)
    study = optuna.create_study(direction="maximize", study_name="tiny_search")
    add(study, 0.5, {"lr": 4e-3, "cutmix": "halves"}, {"lr": LR, "cutmix": CUTMIX})
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("")  # a file where the folder should be: unwritable even for root
    (tmp_path / "runs").mkdir()
    p = write_best(study, base, space, blocked / "tiny_search_best.py", tmp_path / "runs", None, "python -m ...", [])
    assert p == tmp_path / "runs" / "tiny_search_best.py" and "not writable" in capsys.readouterr().out
    assert "recipe = parent.but(lr=0.004, cutmix='halves')" in p.read_text()


@pytest.mark.parametrize("best, claim, said", [
    (0.055, "No trial beat tiny_search's own run, so this recipe is no better: lr=0.004, cutmix='halves' do not raise "
            "validation macro F1 over tiny_search: trial 0 of search study 'tiny_search' scoring 0.055 against 0.059",
     "search: no trial beat tiny_search's own run (macro_f1 0.059); the best, trial 0 (0.055: lr=0.004, "
     "cutmix='halves'), is written marked as losing"),
    (0.061, "lr=0.004, cutmix='halves' raise validation macro F1 over tiny_search: trial 0 of search study "
            "'tiny_search' scoring 0.061 against 0.059", "search: best trial 0 (macro_f1 0.061)"),
])
def test_the_best_recipe_says_whether_it_beat_the_reference_run(best, claim, said, tmp_path, capsys):
    """A search whose best trial scored below the unchanged recipe's own run must not claim the change raises F1."""
    base, space = tiny_base(tmp_path)
    ref = tmp_path / "runs" / "20260101T000000Z-tiny_search"
    ref.mkdir(parents=True)
    (ref / "metrics.json").write_text(json.dumps({"macro_f1": 0.059}))
    study = optuna.create_study(direction="maximize", study_name="tiny_search")
    add(study, best, {"lr": 4e-3, "cutmix": "halves"}, {"lr": LR, "cutmix": CUTMIX})
    p = write_best(study, base, space, None, tmp_path / "runs", ref, "python -m ...", [])
    assert " ".join(p.read_text().split()).startswith('"""' + claim)
    assert said in capsys.readouterr().out


def test_a_value_no_literal_says_is_the_space_replayed(tmp_path):
    """A space may map a choice to an object (an A.Compose): the best recipe replays the parent's space
    on the trial's (literal) parameters to get it back."""
    text = TINY_RECIPE.replace("import Recipe", "import Recipe\nimport albumentations as A").replace(
        'cutmix=trial.suggest_categorical("cutmix", [None, "halves"])',
        'augment={"light": "light", "flip": A.Compose([A.HorizontalFlip(p=1.0)])}['
        'trial.suggest_categorical("augment", ["light", "flip"])]')
    base, space = tiny_base(tmp_path, text, name="tiny_objects")
    study = optuna.create_study(direction="maximize", study_name="tiny_objects")
    add(study, 0.5, {"lr": 4e-3, "augment": "flip"},
        {"lr": LR, "augment": optuna.distributions.CategoricalDistribution(["light", "flip"])})
    p = write_best(study, base, space, None, tmp_path, None, "python -m ...", [])
    text = p.read_text()
    assert "from recipes.tiny_objects import recipe as parent, space" in text
    assert "augment=space(FixedTrial({'lr': 0.004, 'augment': 'flip'}))['augment']" in text
    out, clean = fresh_load(p, tmp_path, "type(r.augment).__name__, r.augment.transforms[0].p, r.lr")
    assert out == "Compose 1.0 0.004" and clean
    assert "augment=<Compose>" in " ".join(text.split())  # the docstring names it, without its repr


# --- several workers, one study -------------------------------------------------------------------

WORKER = textwrap.dedent('''
    import sys, time, optuna
    from fastmask.tune.search import drive, open_storage
    store, _ = open_storage(sys.argv[1], ".")
    study = optuna.create_study(storage=store, study_name="shared", direction="maximize", load_if_exists=True)
    # a start line: on a loaded machine one worker's imports can take longer than all 7 trials of the other
    import os, pathlib
    pathlib.Path(f"ready-{os.getpid()}").touch()
    deadline = time.time() + 120
    while len(list(pathlib.Path(".").glob("ready-*"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
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
    study = optuna.load_study(study_name="shared", storage=open_storage(url, tmp_path)[0])
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    numbers = [t.number for t in study.trials]
    assert len(done) == 7 and len(set(numbers)) == len(numbers)
    assert all(r >= 1 for r in ran) and sum(ran) == 7  # both worked, none ran a trial beyond the 7
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


def test_a_worker_that_loses_the_race_for_the_last_trial_backs_off():
    """Two workers both saw room for one more trial: the one whose trial number lies beyond the first N
    marks it failed (user attr surplus) and stops, so the study still holds N trials."""
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


# --- end to end: 3 recorded trials, one pruned, the best recipe runs ------------------------------

class PruneTrialOne(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return trial.number == 1


def search_twice(recipe_file, data, runs):
    """The tiny search, then the same again: the study holds its 3 trials and the baseline run exists, so the
    second trains nothing. Prints what a user would read."""
    def run():
        return searching.search(recipe_file, 3, data=data, runs_dir=runs, pruner=PruneTrialOne(),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    print("BEST", run().best)
    print("AGAIN", run().ran)


def project(root, **recipes):
    """`root` as a project folder: a `recipes` package holding each recipe text under its name."""
    (root / "recipes").mkdir()
    (root / "recipes" / "__init__.py").write_text("")
    for name, text in recipes.items():
        (root / "recipes" / f"{name}.py").write_text(text)
    return root


@pytest.fixture(scope="module")
def searched(twin, tmp_path_factory):
    root = project(tmp_path_factory.mktemp("search"), tiny_search=TINY_RECIPE)
    runs = root / "runs"
    with as_new_process(root) as (out, _):
        search_twice(root / "recipes" / "tiny_search.py", twin, runs)
    return root, runs, out.getvalue()


def test_every_trial_is_a_recorded_run(searched):
    root, runs, out = searched
    study = optuna.load_study(study_name="tiny_search", storage=f"sqlite:///{runs / 'search.db'}")
    states = [t.state.name for t in sorted(study.trials, key=lambda t: t.number)]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE"]
    dirs = sorted(d for d in runs.iterdir() if d.is_dir())
    assert [d.name.split("-", 1)[1] for d in dirs] == ["tiny_search", "tiny_search-trial0", "tiny_search-trial1",
                                                       "tiny_search-trial2"]  # the baseline, then the trials
    assert "AGAIN 0" in out
    for t in study.trials:
        d = Path(t.user_attrs["run"])
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["parent"] == "tiny_search" and cfg["search"]["trial"] == t.number
        assert cfg["fields"]["lr"] == t.params["lr"] and cfg["fields"]["cutmix"] == t.params["cutmix"]
        assert "fastmask.run" in cfg["environment"]["command"]
        assert f"--set lr={t.params['lr']}" in cfg["environment"]["command"]
        for f in ("recipe.py", "history.csv", "metrics.json", "card.md", "model.pkl"):
            assert (d / f).is_file(), (d, f)
        assert "from recipes.tiny_search import recipe as parent" in (d / "recipe.py").read_text()
        card = (d / "card.md").read_text()
        assert "**Parent.** `tiny_search`" in card and "`lr`: 0.005 →" in card
        if t.state.name == "COMPLETE":
            assert json.loads((d / "metrics.json").read_text())["macro_f1"] == pytest.approx(t.value)
            assert f"search: trial {t.number} complete: macro_f1 {t.value:.3f}" in out


def test_pruned_trial_keeps_a_run_marked_pruned(searched):
    root, runs, out = searched
    d = next(runs.glob("*-tiny_search-trial1"))
    assert json.loads((d / "status.json").read_text())["status"] == "pruned"
    assert (d / "card.md").read_text().startswith("# tiny_search-trial1  (pruned)")
    assert len((d / "history.csv").read_text().strip().splitlines()) == 2  # header + the one epoch before pruning
    assert (d / "model.pkl").is_file() and "search: trial 1 pruned" in out


def test_best_recipe_loads_and_runs(searched, twin):
    root, runs, out = searched
    best = root / "recipes" / "tiny_search_best.py"
    assert f"BEST {best}" in out
    text, words = best.read_text(), " ".join(best.read_text().split())
    assert "from recipes.tiny_search import recipe as parent" in text
    study = optuna.load_study(study_name="tiny_search", storage=f"sqlite:///{runs / 'search.db'}")
    assert f"trial {study.best_trial.number} of search study 'tiny_search' scoring {study.best_value:.3f}" in words
    p = in_process("run", best, "--data", twin, "--runs", runs, cwd=root)
    assert p.returncode == 0, p.stderr[-3000:]
    d = sorted(runs.glob("*-tiny_search_best"))[-1]
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["parent"] == "tiny_search"
    assert set(cfg["changed"]) <= {"lr", "cutmix"} and cfg["changed"]
    assert cfg["fields"]["lr"] == study.best_params["lr"]  # the value the best trial trained, exactly
    assert "parent (" in (d / "card.md").read_text()  # compared against the searched recipe's own run


# --- the reference run: an identical finished run is reused, never trained again -----------------

def chained(tmp_path, space_body="return dict(lr=trial.suggest_float('lr', 1e-3, 1e-2, log=True))"):
    """tiny_root and tiny_search = tiny_root.but() (the case of recipes/search_lr_cutmix.py), as load_recipe
    names them, without importing a `recipes` package into the test process."""
    (tmp_path / "recipes").mkdir(exist_ok=True)
    root = Recipe(arch="test_resnet", size=(32, 24), epochs=1, bs=16, pretrained=False)
    root.name, root.file = "tiny_root", str(tmp_path / "recipes" / "tiny_root.py")
    child = root.but()
    child.name, child.file = "tiny_search", str(tmp_path / "recipes" / "tiny_search.py")
    child.space = space_from(f"def space(trial):\n    {space_body}")
    img = tmp_path / "img.jpg"
    img.write_bytes(b"not really a jpeg")
    return root, child, Data(pd.DataFrame({"path": [str(img)]}), None, None, tmp_path)


def fake_run(runs, stamp, name, fields, fp, status="finished", f1=0.42):
    d = runs / f"{stamp}-{name}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"name": name, "fields": fields, "data_fingerprint": fp}))
    (d / "status.json").write_text(json.dumps({"status": status}))
    (d / "metrics.json").write_text(json.dumps({"macro_f1": f1}))
    return d


@pytest.fixture
def no_training(monkeypatch):
    calls = []

    def train_and_record(recipe, *a, **k):
        calls.append(recipe.name)
        raise AssertionError(f"trained {recipe.name}")
    monkeypatch.setattr(searching, "train_and_record", train_and_record)
    return calls


def test_reference_step_reuses_the_unchanged_parents_finished_run(tmp_path, no_training):
    root, child, data = chained(tmp_path)
    fp, fields, runs = data.fingerprint, child.config()["fields"], tmp_path / "runs"
    fake_run(runs, "20240101T000000", "tiny_root", {**fields, "lr": 0.001}, fp)  # other fields
    fake_run(runs, "20240101T000001", "tiny_root", fields, "0" * 16)             # other data
    ref = fake_run(runs, "20240101T000002", "tiny_root", fields, fp)
    fake_run(runs, "20240101T000003", "tiny_root", fields, fp, status="interrupted")
    assert searching.baseline(child, data, runs, {}) == ref and no_training == []
    assert searching.home_of(child, ref) is root  # trials and the best recipe are its children
    own = fake_run(runs, "20240101T000004", "tiny_search", fields, fp)
    assert searching.baseline(child, data, runs, {}) == own and no_training == []  # its own run first


def test_without_a_reference_the_recipe_it_leaves_unchanged_is_trained(tmp_path, monkeypatch):
    root, child, data = chained(tmp_path)
    trained = []
    monkeypatch.setattr(searching, "train_and_record", lambda r, *a, info=None, **k: trained.append((r, info)) or "d")
    assert searching.baseline(child, data, tmp_path / "runs", {}, reproduce=lambda r: f"run {r.name}") == "d"
    (r, info), = trained  # tiny_search would compare with tiny_root: "Change. none", "+0.000"
    assert r is root and info["environment"]["command"] == "run tiny_root"


def test_trials_are_judged_against_the_reference_and_a_trial_that_changes_nothing_reuses_it(tmp_path, monkeypatch):
    root, child, data = chained(tmp_path, "return dict(lr=trial.suggest_categorical('lr', [0.005, 0.002]))")
    runs = tmp_path / "runs"
    ref = fake_run(runs, "20240101T000002", "tiny_root", child.config()["fields"], data.fingerprint)
    trained = []

    def train_and_record(r, *a, **k):
        trained.append((r.config(), Path(r.file).read_text()))
        return RunFolder(fake_run(runs, f"2024010{len(trained)}T000009", r.name, r.config()["fields"], "x", f1=0.5))
    monkeypatch.setattr(searching, "train_and_record", train_and_record)
    objective = searching.make_objective(child, child.space, data, runs, {}, "db", "search", "run",
                                         home=searching.home_of(child, ref))
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"lr": 0.005})  # the searched recipe's own value: nothing to train
    study.enqueue_trial({"lr": 0.002})
    study.optimize(objective, n_trials=2)
    same, changed = study.trials
    assert same.value == 0.42 and same.user_attrs["run"] == str(ref) and changed.value == 0.5
    (cfg, text), = trained
    assert cfg["parent"] == "tiny_root" and cfg["changed"] == {"lr": [0.005, 0.002]}  # its card finds ref
    assert "from recipes.tiny_root import recipe as parent" in text


def test_best_recipe_says_how_to_run_it_on_the_searchs_data(tmp_path, capsys):
    base, space = tiny_base(tmp_path)
    study = optuna.create_study(direction="maximize", study_name="tiny_search")
    add(study, 0.5, {"lr": 4e-3, "cutmix": "halves"}, {"lr": LR, "cutmix": CUTMIX})
    out = tmp_path / "recipes" / "tiny_best.py"
    p = write_best(study, base, space, out, tmp_path / "my runs", None, "python -m ...", ["epochs=1"],
                   data="data/my twin")
    # this interpreter by its full path, and every path absolute: it runs the same from any folder
    want = shlex.join([sys.executable, "-m", "fastmask.run", str(out), "--set", "epochs=1",
                       "--data", str(Path("data/my twin").resolve()), "--runs", str(tmp_path / "my runs")])
    assert f"    {want}\n" in p.read_text()  # one line, unwrapped: copy and paste
    assert f"search: run it with: {want}\n" in capsys.readouterr().out
    write_best(study, base, space, out, "runs", None, "python -m ...", [], data="twin")
    command = [sys.executable, '-m', 'fastmask.run', str(out), '--data', str(Path('twin').resolve()),
               '--runs', str(Path('runs').resolve())]
    assert f"search: run it with: {shlex.join(command)}\n" in capsys.readouterr().out


def test_the_command_shows_optunas_warnings_not_its_info_or_repeats(monkeypatch):
    from fastmask.search import quiet_optuna
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    monkeypatch.setattr(logging.getLogger("optuna.study._optimize"), "filters", [])
    logging.getLogger("optuna").addHandler(handler)
    try:
        quiet_optuna()
        study = optuna.create_study(direction="maximize")  # "A new study created": INFO

        def objective(trial):
            if trial.number == 0:
                raise FastmaskError("loss became nan")  # fastmask prints its own line for it
            return trial.suggest_float("x", 0, 1)  # "Trial 1 finished with value": INFO
        drive(study, objective, 2)
        logging.getLogger("optuna.study._optimize").warning("Trial 9 failed with value nan.")
    finally:
        logging.getLogger("optuna").removeHandler(handler)
        optuna.logging.set_verbosity(optuna.logging.INFO)
    assert [r.getMessage() for r in seen] == ["Trial 9 failed with value nan."]


ROOT_RECIPE = '''"""A tiny root recipe for the tests."""
from fastmask.recipe import Recipe

recipe = Recipe(arch="test_resnet", size=(32, 24), epochs=1, bs=16, pretrained=False)
'''
CHILD_RECIPE = '''"""Searching lr and CutMix around tiny_root, as recipes/search_lr_cutmix.py does around person_split."""
from recipes.tiny_root import recipe as parent

recipe = parent.but()


def space(trial):
    return dict(lr=trial.suggest_float("lr", 1e-3, 1e-2, log=True),
                cutmix=trial.suggest_categorical("cutmix", ["box", "halves"]))
'''


@pytest.fixture(scope="module")
def searched_child(twin, tmp_path_factory):
    """`fastmask.run` trained tiny_root; then the command searches tiny_search = tiny_root.but()."""
    root = project(tmp_path_factory.mktemp("search_child"), tiny_root=ROOT_RECIPE, tiny_search=CHILD_RECIPE)
    outs = []
    for cmd in (["run", "recipes/tiny_root.py"],
                ["search", "recipes/tiny_search.py", "--trials", "2", "--pruner", "none", "--seed", "0"]):
        p = in_process(*cmd, "--data", twin, "--runs", "my_runs", cwd=root)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        outs.append(p)
    ref = min((root / "my_runs").glob("*-tiny_root"))  # the one `fastmask.run` made
    return root, root / "my_runs", ref, outs[1]


def test_the_search_reuses_the_identical_run_and_judges_trials_against_it(searched_child):
    root, runs, ref, p = searched_child
    dirs = sorted(d.name.split("-", 1)[1] for d in runs.iterdir() if d.is_dir())
    assert dirs == ["tiny_root", "tiny_search-trial0", "tiny_search-trial1"], dirs  # nothing trained twice
    assert f"reference run my_runs/{ref.name}" in p.stdout
    for d in runs.glob("*-tiny_search-trial*"):
        assert json.loads((d / "metrics.json").read_text())["verdict"]["parent_run"] == ref.name
        assert "**Parent.** `tiny_root`" in (d / "card.md").read_text()
    for card in runs.glob("*/card.md"):
        assert "**Change.** none" not in card.read_text(), card


def test_the_command_prints_its_own_lines_and_names_the_metric(searched_child):
    root, runs, ref, p = searched_child
    assert "search: trial 0 complete: macro_f1" in p.stdout and "search: trial 1 complete" in p.stdout
    assert "A new study created" not in p.stderr + p.stdout and "finished with value" not in p.stderr + p.stdout
    study = optuna.load_study(study_name="tiny_search", storage=f"sqlite:///{runs / 'search.db'}")
    assert study.metric_names == ["valid macro_f1"]


def test_the_printed_run_line_reproduces_the_best_on_the_same_data(searched_child, twin):
    root, runs, ref, p = searched_child
    line = next(x for x in p.stdout.splitlines() if x.startswith("search: run it with: "))
    cmd = shlex.split(line.removeprefix("search: run it with: "))
    assert cmd[:4] == [sys.executable, "-m", "fastmask.run", str((root / "recipes" / "tiny_search_best.py").resolve())], cmd
    assert line.split(": ", 2)[2] in (root / "recipes" / "tiny_search_best.py").read_text()
    elsewhere = root / "elsewhere"  # no recipes/ here: the command names its recipe file by its full path
    elsewhere.mkdir()
    q = in_process(cmd[2].removeprefix("fastmask."), *cmd[3:], cwd=elsewhere)  # pasted in another folder
    assert q.returncode == 0, q.stderr[-3000:]
    d, = runs.glob("*-tiny_search_best")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["data_fingerprint"] == json.loads((ref / "config.json").read_text())["data_fingerprint"]
    assert json.loads((d / "metrics.json").read_text())["verdict"]["parent_run"] == ref.name

from pathlib import Path

import pytest

from fastmask.errors import FastmaskError
from fastmask.recipe import Recipe, load_recipe, parse_sets

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def write(folder, name, text):
    (folder / "recipes").mkdir(exist_ok=True)
    p = folder / "recipes" / f"{name}.py"
    p.write_text(text)
    return p


def test_child_names_parent_and_diff():
    r = load_recipe(REPO / "recipes" / "person_split.py")
    assert r.name == "person_split" and r.parent.name == "baseline"
    assert r.hypothesis.startswith("Splitting by person")
    assert r.diff() == {"split": ["random", "person"], "patience": [None, 3]}
    assert r.config()["changed"] == r.diff()


def test_set_overrides_are_typed():
    got = parse_sets(["epochs=2", "size=64,48", "arch=test_resnet", "lr=1e-3", "lr=find", "patience=none"])
    assert got == {"epochs": 2, "size": (64, 48), "arch": "test_resnet", "lr": "find", "patience": None}
    r = load_recipe(REPO / "recipes" / "person_split.py", parse_sets(["epochs=1"]))
    assert r.epochs == 1 and r.name == "person_split" and r.parent.name == "baseline"


@pytest.mark.parametrize("item, msg", [
    ("epoch=3", r"unknown recipe field 'epoch'; did you mean epochs"),
    ("epochs=ten", r"epochs: 'ten' is not a valid int"),
    ("size=64", r"size: '64' is not a valid height,width"),
    ("lr=fast", r"lr: 'fast'"),
    ("epochs", r"expected key=value"),
])
def test_bad_sets(item, msg):
    with pytest.raises(FastmaskError, match=msg):
        parse_sets([item])


def test_but_rejects_unknown_and_wrong_types():
    with pytest.raises(FastmaskError, match="did you mean arch"):
        Recipe().but(arc="resnet34")
    with pytest.raises(FastmaskError, match="epochs"):
        Recipe().but(epochs="ten")


def test_broken_recipe_files(tmp_path):
    p = write(tmp_path, "typo", '"""h"""\nfrom fastmask.recipe import Recipe\nrecipe = Recipe(\n')
    with pytest.raises(FastmaskError, match=r"typo.py:\d+: syntax error"):
        load_recipe(p)
    p = write(tmp_path, "orphan", '"""h"""\nfrom recipes.no_such_parent import recipe as parent\nrecipe = parent.but()\n')
    with pytest.raises(FastmaskError, match=r"parent recipe 'recipes.no_such_parent' not found"):
        load_recipe(p)
    p = write(tmp_path, "boom", '"""h"""\nfrom fastmask.recipe import Recipe\n\nx = 1 / 0\n')
    with pytest.raises(FastmaskError, match=r"boom.py:4: ZeroDivisionError"):
        load_recipe(p)
    p = write(tmp_path, "empty", '"""h"""\n')
    with pytest.raises(FastmaskError, match="defines no `recipe"):
        load_recipe(p)
    with pytest.raises(FastmaskError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.py")


# --- who a recipe is: the module that assigns it to `recipe`, never whoever called .but() ---------------

@pytest.fixture
def tmp_recipes(tmp_path, monkeypatch):
    """A second recipes folder, importable as `recipes.<name>` beside the repository's."""
    import sys
    load_recipe(REPO / "recipes" / "person_split.py")  # `recipes` is the repository's package
    folder = tmp_path / "recipes"
    folder.mkdir()
    monkeypatch.setattr(sys.modules["recipes"], "__path__", [*sys.modules["recipes"].__path__, str(folder)])
    before = set(sys.modules)
    yield folder
    for k in set(sys.modules) - before:
        if k.startswith("recipes."):
            del sys.modules[k]


def test_a_helper_calling_but_is_no_parent_and_lends_no_docstring(tmp_recipes):
    (tmp_recipes / "_helper.py").write_text(
        '"""Helper: not a hypothesis."""\n\ndef tuned(r):\n    return r.but(lr=1e-3).but(wd=0.1)\n')
    (tmp_recipes / "mid.py").write_text(
        '"""Mid: a lower lr with weight decay helps."""\nfrom recipes.person_split import recipe as parent\n'
        'from recipes._helper import tuned\n\nrecipe = tuned(parent)\n')
    (tmp_recipes / "top.py").write_text(
        '"""Top: two epochs."""\nfrom recipes.mid import recipe as parent\n\nrecipe = parent.but(epochs=2)\n')
    r = load_recipe(tmp_recipes / "top.py")
    chain = []
    x = r
    while x is not None:
        chain.append((x.name, x.hypothesis[:9], Path(x.file).name))
        x = x.parent
    assert chain == [("top", "Top: two ", "top.py"), ("mid", "Mid: a lo", "mid.py"),
                     ("person_split", "Splitting", "person_split.py"), ("baseline", "A small C", "baseline.py")]
    assert r.parent.diff() == {"lr": [5e-3, 1e-3], "wd": [None, 0.1]}  # against the recipe file it imports
    assert r.diff() == {"epochs": [15, 2]}


def test_a_recipe_made_outside_a_recipe_module_is_nameless():
    base = load_recipe(REPO / "recipes" / "person_split.py")
    child = base.but(lr=1e-3)
    assert (child.name, child.file, child.hypothesis, child.parent) == ("recipe", None, "", base)
    same = child.variant(seed=3)  # a fold or seed of the same recipe keeps who it is
    assert (same.name, same.parent, same.seed) == ("recipe", base, 3)
    assert base.name == "person_split" and base.hypothesis.startswith("Splitting by person")


def test_loading_again_keeps_every_ancestor_named_and_linked():
    first = load_recipe(REPO / "recipes" / "oversample_cutmix.py")
    load_recipe(REPO / "recipes" / "person_split.py")  # a fresh recipes.person_split; recipes.oversample stays cached
    again = load_recipe(REPO / "recipes" / "oversample_cutmix.py")
    for r in (first, again):
        assert [r.name, r.parent.name, r.parent.parent.name, r.parent.parent.parent.name] == \
            ["oversample_cutmix", "oversample", "person_split", "baseline"]
        assert r.parent.diff() == {"sampler": ["weighted", "oversample"]}


def test_recipe_equal_to_its_parent_names_itself_not_the_parent(tmp_recipes):
    (tmp_recipes / "same.py").write_text('"""Same: nothing changes."""\nfrom recipes.person_split import recipe\n')
    r = load_recipe(tmp_recipes / "same.py")
    assert r.name == "same" and r.parent.name == "person_split" and r.diff() == {}
    assert load_recipe(REPO / "recipes" / "kfold.py").parent.name == "person_split"


# --- choices come from the registries beside their code; `split` is parsed in one place -----------------

@pytest.mark.parametrize("field, value, names", [
    ("split", "kfold", "person, random, kfold:K[/F]"), ("sampler", "uniform", "none, weighted[:power], oversample[:share]"),
    ("heads", "double", "single, multi, separate"), ("precision", "half", "auto, fp32, bf16, fp16")])
def test_preflight_checks_every_choice_field(field, value, names):
    from fastmask.learn.build import preflight
    with pytest.raises(FastmaskError) as e:
        preflight(Recipe(**{field: value}))
    assert str(e.value) == f"recipe field {field}: {value!r} is not a valid choice ({names})"


def test_a_bad_choice_fails_at_preflight_listing_the_registry_names(monkeypatch):
    from fastmask.learn.build import preflight
    from fastmask.learn.mixing import CUTMIX
    r = Recipe(cutmix="circle")  # recipe.py checks the shape only: it imports no library
    with pytest.raises(FastmaskError) as e:
        preflight(r)
    assert str(e.value) == f"recipe field cutmix: 'circle' is not a valid choice ({CUTMIX.describe()})"
    assert CUTMIX.describe() == ", ".join(["none", *CUTMIX.names()[1:]]) == "none, box, halves, rare, rare-box"
    monkeypatch.setitem(CUTMIX._entries, "circle", CUTMIX._entries["halves"])  # registered: now valid and listed
    preflight(r)
    with pytest.raises(FastmaskError, match=r"\(none, box, halves, rare, rare-box, circle\)"):
        preflight(Recipe(cutmix="square"))


@pytest.mark.parametrize("field, value", [("split", "nope"), ("split", "kfold"), ("split", "person:3"),
                                          ("sampler", "weighted2"), ("sampler", "oversample:0.1"), ("cutmix", "halves:2"),
                                          ("heads", "two"), ("precision", "fp8")])
def test_every_choice_field_is_checked_by_its_registry(field, value):
    import fastmask.learn.build  # noqa: F401  (imports every module that implements a choice)
    from fastmask.choices import _REGISTRIES, CHOICE_FIELDS, check_choices
    assert set(_REGISTRIES) == set(CHOICE_FIELDS)
    check_choices(Recipe())
    r = Recipe(**{field: value})
    if value == "oversample:0.1":  # a value the sampler takes
        return check_choices(r)
    with pytest.raises(FastmaskError, match=rf"^recipe field {field}: '{value}' is not a valid choice \(.*\)$"):
        check_choices(r)


def test_set_of_an_unknown_choice_exits_2_in_one_line_before_data(tmp_path):
    from conftest import in_process
    p = in_process("run", "recipes/person_split.py", "--set", "cutmix=foo", "--data", tmp_path / "no_data_needed",
                   "--runs", tmp_path / "runs")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr[-2000:]
    assert p.stderr == ("fastmask: error: recipe field cutmix: 'foo' is not a valid choice "
                        "(none, box, halves, rare, rare-box)\n")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, want", [
    ("person", ("person", None, None, None, [None])), ("random", ("random", None, None, None, [None])),
    ("kfold:5", ("kfold", 5, None, 5, [0, 1, 2, 3, 4])), ("kfold:5/2", ("kfold", 5, 2, None, [None])),
    ("kfold:2/1", ("kfold", 2, 1, None, [None]))])
def test_split_is_parsed_in_one_place(text, want):
    from fastmask.choices import parse_split
    s = parse_split(text)
    assert (s.kind, s.k, s.fold, s.n_folds, s.folds()) == want and str(s) == text
    if s.n_folds:
        assert s.one(3) == "kfold:5/3"


def test_a_recipe_holds_its_split_parsed_once(monkeypatch):
    """`recipe.split` is a Split: the text as typed (config.json, cards, --set, ==, hash unchanged) with its parts;
    a child, a variant, a fold's recipe and the --set path hand the value on, never parsing the text again."""
    import json
    import pickle

    import fastmask.choices as choices
    from fastmask.report.folds import fold_recipe, folds, n_folds
    parsed = []
    real = choices._parse
    monkeypatch.setattr(choices, "_parse", lambda text: parsed.append(str(text)) or real(text))
    r = Recipe(split="kfold:3")
    assert isinstance(r.split, choices.Split) and r.split == "kfold:3" and hash(r.split) == hash("kfold:3")
    assert (r.split.kind, r.split.k, r.split.fold) == ("kfold", 3, None) and parsed == ["kfold:3"]
    child = r.but(epochs=2).variant(seed=4)
    per_fold = [fold_recipe(child, f) for f in folds(child)]
    assert n_folds(child) == 3 and [f.split for f in per_fold] == ["kfold:3/0", "kfold:3/1", "kfold:3/2"]
    assert [f.split.fold for f in per_fold] == [0, 1, 2] and n_folds(per_fold[1]) is None
    assert parsed == ["kfold:3"]  # the child, the variant and the three folds parsed nothing
    cfg = json.loads(json.dumps(r.config()))
    assert cfg["fields"]["split"] == "kfold:3" and type(r.config()["fields"]["split"]) is str
    assert repr(r).count("split='kfold:3'") == 1
    back = pickle.loads(pickle.dumps(per_fold[2]))
    assert back.split == "kfold:3/2" and back.split.fold == 2 and isinstance(back.split, choices.Split)
    got = parse_sets(["split=kfold:5/2"])["split"]
    assert (got.k, got.fold, got.n_folds) == (5, 2, None) and Recipe(split=got).split is got


def test_a_recipe_knows_its_seeds():
    from fastmask.store.index import seeds_of
    for seed, n in ((0, 1), (3, 2), (7, 4)):
        r = Recipe(seed=seed, replicates=n)
        assert r.seeds == list(range(seed, seed + n)) == seeds_of(r.config()["fields"])
    assert Recipe(split="kfold:5", seed=2).seeds == [2]  # k-fold trains one seed (preflight refuses replicates)


def test_one_face_margin_parser_serves_the_recipe_and_the_crop():
    from fastmask.choices import face_margin
    from fastmask.data import faces
    assert faces.margin_of is face_margin
    assert (face_margin("face"), face_margin("face:0.3"), face_margin(0.8), face_margin(None)) == (0.2, 0.3, None, None)
    for bad in ("face:3", "face:-0.1", "face:nan", "face:x", "face:"):
        with pytest.raises(ValueError):
            face_margin(bad)
        with pytest.raises(FastmaskError, match=r"recipe field crop: .* not a valid fraction in \(0, 1\], or face"):
            Recipe(crop=bad)
    assert Recipe(crop="face:2").crop == "face:2" and parse_sets(["crop=face"])["crop"] == "face"


def test_check_choices_fills_the_registries_itself():
    """A fresh process importing only the recipe: check_choices imports the modules that register the names
    (choices.load_all), so it does not depend on preflight's module having imported them first."""
    import subprocess
    import sys
    code = ("import sys\nfrom fastmask.recipe import Recipe\nfrom fastmask.choices import check_choices\n"
            "from fastmask.errors import FastmaskError\n"
            "print(sorted(m for m in ('fastmask.data.sampling', 'fastmask.learn.build') if m in sys.modules))\n"
            "check_choices(Recipe(sampler='oversample:0.1', split='kfold:3'))\nprint('known: ok')\n"
            "try:\n    check_choices(Recipe(sampler='nope'))\nexcept FastmaskError as e:\n    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.splitlines() == ["[]", "known: ok", "recipe field sampler: 'nope' is not a valid choice "
                                     "(none, weighted[:power], oversample[:share])"], p.stdout


@pytest.mark.parametrize("text", ["kfold:1", "kfold:5/5", "kfold:5/-1", "kfold:x", "kfold:5/", ":3"])
def test_bad_split_text_fails_at_set(text):
    with pytest.raises(FastmaskError, match=rf"recipe field split: '{text}' is not a valid split"):
        parse_sets([f"split={text}"])


def test_recipes_and_import_stay_free_of_libraries():
    import subprocess
    import sys
    code = ("import sys, fastmask\nr = fastmask.load_recipe('recipes/oversample_cutmix.py')\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'pandas', 'fastai', 'timm') if m in sys.modules)\n"
            "print(r.name, r.parent.name, heavy)")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "oversample_cutmix oversample []", p.stderr[-2000:]


def test_the_repl_methods_are_attached_by_fastmask_repl_from_the_layers_that_own_them():
    """A recipe is plain data: r.dls(), r.learner() and r.export() come from data.dls, learn.build and
    models.export (@patch) once fastmask.repl is imported; before that, asking for one says which import attaches it."""
    import subprocess
    import sys
    code = ("import fastmask\nr = fastmask.load_recipe('recipes/oversample_cutmix.py')\n"
            "try:\n    r.learner\nexcept AttributeError as e:\n    print('before:', e)\n"
            "import fastmask.repl\nfrom fastmask.recipe import Recipe\n"
            "print('after:', Recipe.dls.__module__, Recipe.learner.__module__, Recipe.export.__module__)")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    before, after = p.stdout.strip().splitlines()
    assert "fastmask.repl" in before and before.startswith("before: Recipe.learner")
    assert after.split()[1:] == ["fastmask.data.dls", "fastmask.learn.build", "fastmask.models.export"]




BAD_VALUES = [  # (field, --set text, what the message says the field takes): one rule per field
    ("size", "4,4", "height,width"),
    ("split", "kfold:1", "split (a name, or kfold:K / kfold:K/F with K >= 2 and 0 <= F < K)"),
    ("valid_pct", "0.3", "1/K (0.5, 0.33, 0.25, 0.2, 0.1, ...)"),
    ("split_seed", "-1", "int >= 0"),
    ("seed", "-1", "int >= 0"),
    ("replicates", "0", "int >= 1"),
    ("epochs", "0", "int >= 1"),
    ("lr", "0", "positive number or 'find'"),
    ("bs", "0", "int >= 1"),
    ("wd", "-1", "non-negative number"),
    ("patience", "0", "int >= 1 or none"),
    ("num_workers", "-1", "int >= 0"),
    ("cache", "maybe", "bool"),
    ("sampler", "oversample:x", "choice (a name, or name:number)"),
    ("augment", "medium", "preset (none, light, strong)"),
    ("crop", "1.5", "fraction in (0, 1], or face / face:MARGIN (margin in [0, 2])"),
    ("crop", "face:5", "fraction in (0, 1], or face / face:MARGIN (margin in [0, 2])"),
    ("mixup", "0", "alpha in (0, 100]"),
    ("mix_prob", "0", "probability in (0, 1]"),
    ("loss", "ce:-1,f1:2", "loss (a name, name:value, or weights >= 0 with a positive sum as ce:0.6,f1:0.4)"),
    ("task_weights", "1,1", "mask,gender,age weights (>= 0, positive sum)"),
    ("age_threshold", "old", "int"),
    ("judged_on", "accuracy", "quantity (macro_f1, gap, mask_f1, gender_f1, age_f1)"),
    ("min_effect", "1", "effect in (0, 1)"),
    ("decide", "1", "seed budget: 0 (off) or an int >= 2"),
]


@pytest.mark.parametrize("key,text,want", BAD_VALUES, ids=[f"{c[0]}={c[1]}" for c in BAD_VALUES])
def test_each_field_names_what_it_takes(key, text, want):
    with pytest.raises(FastmaskError) as e:
        parse_sets([f"{key}={text}"])
    assert str(e.value) == f"recipe field {key}: {text!r} is not a valid {want}"


GOOD_VALUES = [  # (field, --set text, the value the recipe holds)
    ("size", "96x72", (96, 72)), ("split", "kfold:5/4", "kfold:5/4"), ("valid_pct", "0.25", 0.25),
    ("lr", "find", "find"), ("wd", "none", None), ("patience", "3", 3), ("cache", "False", False),
    ("sampler", "none", None), ("crop", "1", 1.0), ("crop", "face", "face"), ("crop", "face:0.3", "face:0.3"),
    ("mixup", "null", None), ("mix_prob", "1", 1.0),
    ("loss", "ce:0,f1:1", {"ce": 0.0, "f1": 1.0}), ("loss", "focal:3", "focal:3"),
    ("task_weights", "1,0,2", (1.0, 0.0, 2.0)),
    ("judged_on", "gap", "gap"), ("decide", "0", 0), ("decide", "2", 2), ("arch", "resnet18", "resnet18"),
]


@pytest.mark.parametrize("key,text,value", GOOD_VALUES, ids=[f"{c[0]}={c[1]}" for c in GOOD_VALUES])
def test_each_field_reads_its_text(key, text, value):
    assert parse_sets([f"{key}={text}"]) == {key: value}

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

"""The package's shape: imports point down the floors (vocabulary < twin < data < learn < store < models <
report < runs < views, tune < commands)
and form no circle, so each layer can be read, tested and replaced without the ones above it."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "fastmask"
COMMANDS = {"run", "predict", "search", "board", "synth", "suspects", "compare", "mlflow_sync", "init", "plan", "__main__",
            "split", "repl", "note", "tag", "archive", "study"}
# split: a contract re-export; repl: the REPL's front door, importing what attaches r.learner()
LAYERS = {"vocabulary": 0, "twin": 1, "data": 2, "learn": 3, "store": 4, "models": 5, "report": 6, "runs": 7,
          "views": 8, "tune": 8, "commands": 9}


class UnknownFolder(AssertionError):
    """A package folder with no floor in LAYERS: give it one rather than let it sit on the ground floor."""


def module_name(path, root=PKG):
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(mod):
    parts = mod.split(".")
    if parts[-1] == "__main__":  # a package's `python -m` entry point is a command, whatever folder holds it
        return LAYERS["commands"]
    if len(parts) > 2 or parts[-1] in LAYERS and len(parts) == 2:
        if parts[1] not in LAYERS:
            raise UnknownFolder(f"fastmask/{parts[1]}/ (from {mod}) has no floor in test_layers.LAYERS")
        return LAYERS[parts[1]]
    return LAYERS["commands"] if parts[-1] in COMMANDS else LAYERS["vocabulary"]


def unknown_folders(root=PKG):
    """The package folders under root (any folder holding a .py file) that LAYERS gives no floor."""
    return sorted({p.relative_to(root).parts[0] for p in root.rglob("*.py") if len(p.relative_to(root).parts) > 1}
                  - set(LAYERS))


def imports(path, root=PKG):
    """(imported fastmask module, at module level?) for every import in the file, lazy ones included."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}:{node.lineno}: relative import (the package imports absolutely)"
            if node.module and node.module.split(".")[0] == "fastmask":
                for a in node.names:  # `from fastmask.report import card` imports the module fastmask.report.card
                    sub = root.parent / f"{node.module}.{a.name}".replace(".", "/")
                    out.append((f"{node.module}.{a.name}" if sub.with_suffix(".py").exists() or sub.is_dir()
                                else node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names if a.name.split(".")[0] == "fastmask"]
    return out


def graph(root=PKG):
    return {module_name(p, root): imports(p, root) for p in sorted(root.rglob("*.py"))}


def upward(root=PKG):
    """Every import pointing up the floors, as "module (floor) -> imported (floor)"."""
    return [f"{m} ({layer(m)}) -> {t} ({layer(t)})" for m, deps in graph(root).items() for t, _ in deps
            if t != "fastmask" and layer(t) > layer(m)]


def circles(root=PKG):
    """Every import circle found by a depth-first walk, as a list of modules ending where it began."""
    edges = {m: {t for t, _ in deps if t != m} for m, deps in graph(root).items()}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for t in edges.get(m, ()):
            visit(t)
        stack.pop()
    for m in edges:
        visit(m)
    return cycles


def test_every_folder_has_a_floor():
    assert not unknown_folders(), f"package folders with no floor in LAYERS: {unknown_folders()}"


def test_imports_point_down_the_layers():
    bad = upward()
    assert not bad, "imports pointing up:\n" + "\n".join(bad)


def test_no_import_circles():
    cycles = circles()
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checks_fail_on_a_planted_tree(tmp_path):
    """The checkers run on a planted package: a circle (data.a <-> data.b), an upward arrow (data.c ->
    report.card) and a folder with no floor (extras/) are each reported, by name."""
    pkg = tmp_path / "fastmask"
    for f, text in {"__init__.py": "", "data/__init__.py": "", "report/__init__.py": "", "report/card.py": "",
                    "data/a.py": "from fastmask.data import b\n",
                    "data/b.py": "def f():\n    from fastmask.data.a import g  # lazy: still an edge\n",
                    "data/c.py": "from fastmask.report.card import render\n",
                    "extras/x.py": "import fastmask.data.a\n"}.items():
        (pkg / f).parent.mkdir(parents=True, exist_ok=True)
        (pkg / f).write_text(text)
    assert [c for c in circles(pkg) if set(c) == {"fastmask.data.a", "fastmask.data.b"}]
    assert unknown_folders(pkg) == ["extras"]
    with pytest.raises(UnknownFolder, match="fastmask/extras/"):
        upward(pkg)
    (pkg / "extras" / "x.py").unlink()
    assert upward(pkg) == ["fastmask.data.c (2) -> fastmask.report.card (6)"]
    # and the real package is clean, so the tests above pass for the right reason
    assert not circles() and not upward() and not unknown_folders()


def shares(pkg):
    lines = {}
    for p in pkg.rglob("*.py"):
        top = p.relative_to(pkg).parts
        key = top[0] if len(top) > 1 else "(top level)"
        lines[key] = lines.get(key, 0) + len(p.read_text().splitlines())
    total = sum(lines.values())
    return {k: v / total for k, v in lines.items()}


def test_no_folder_holds_more_than_a_fifth_of_the_package():
    big = {k: round(s, 3) for k, s in shares(PKG).items() if k != "(top level)" and s > 0.2}
    assert not big, f"folders above 20 % of the package's lines: {big}"


MAX_MODULE_LINES = 400  # a module past this holds more than one concept: split it along them


def long_modules(pkg):
    return {str(p.relative_to(pkg)): n for p in sorted(pkg.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}


def test_no_module_is_over_400_lines():
    assert not long_modules(PKG), f"modules over {MAX_MODULE_LINES} lines: {long_modules(PKG)}"


def test_the_length_check_sees_a_long_module(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "long.py").write_text("x = 1\n" * 401)
    (tmp_path / "short.py").write_text("x = 1\n" * 400)
    assert long_modules(tmp_path) == {"a/long.py": 401}


def test_the_share_check_counts_lines_per_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.py").write_text("1\n" * 30)
    (tmp_path / "a" / "y.py").write_text("1\n" * 10)
    (tmp_path / "b" / "z.py").write_text("1\n" * 40)
    (tmp_path / "top.py").write_text("1\n" * 20)
    assert shares(tmp_path) == {"a": 0.4, "b": 0.4, "(top level)": 0.2}


def test_the_layer_check_sees_a_planted_upward_import(tmp_path):
    """The checks above read real files: an upward import planted in a copy of one module is caught."""
    import shutil
    copy = tmp_path / "fastmask"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "data" / "split.py").open("a") as f:
        f.write("\n\ndef _planted():\n    from fastmask.report.card import render  # noqa\n")
    assert "fastmask.data.split (2) -> fastmask.report.card (6)" in upward(copy)


def test_a_learner_pickled_before_the_layout_still_loads():
    """A model.pkl exported before the move names its classes by the old flat paths (fastmask.cache, ...)."""
    import pickle
    import subprocess
    import sys

    from fastmask.data.cache import Prepare
    # protocol 0 writes module paths as plain lines, so the old path can be planted in place
    old = pickle.dumps(Prepare((12, 8), crop=0.9), protocol=0).replace(b"fastmask.data.cache\n", b"fastmask.cache\n")
    assert b"fastmask.cache\n" in old and b"fastmask.data" not in old
    # a fresh process: nothing of the new layout imported before the pickle asks for the old module
    code = ("import pickle, sys; p = pickle.loads(sys.stdin.buffer.read()); "
            "print(type(p).__module__, p.size, p.crop)")
    out = subprocess.run([sys.executable, "-c", code], input=old, capture_output=True, cwd=PKG.parent, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-1000:]
    assert out.stdout.decode().split() == ["fastmask.data.cache", "(12,", "8)", "0.9"]


def test_every_compatibility_alias_imports_what_it_stands_for():
    """Each old module path (fastmask.MOVED) is its new module, and the contract paths (DESIGN.md) are the
    functions they name."""
    import importlib

    import fastmask
    from fastmask.data import layout, split
    from fastmask.recipe import load_recipe

    for old, new in fastmask.MOVED.items():
        assert importlib.import_module(f"fastmask.{old}") is importlib.import_module(f"fastmask.{new}"), old
    assert fastmask.data.read_train is layout.read_train and fastmask.data.read_eval is layout.read_eval
    contract = importlib.import_module("fastmask.split")
    assert contract.person_split is split.person_split and contract.person_kfold is split.person_kfold
    assert fastmask.load_recipe is load_recipe
    from fastmask.cache import Prepare  # an old path's names, as a pickle asks for them
    from fastmask.data.cache import Prepare as new
    assert Prepare is new

"""The package's shape: imports point down the floors (vocabulary < twin < data < learn < store < models <
report < runs < views, tune < commands)
and form no circle, so each layer can be read, tested and replaced without the ones above it."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "fastmask"
COMMANDS = {"run", "predict", "search", "board", "synth", "suspects", "compare", "mlflow_sync", "init", "plan", "__main__",
            "split", "repl"}  # split: a contract re-export; repl: the REPL's front door, importing what attaches r.learner()
LAYERS = {"vocabulary": 0, "twin": 1, "data": 2, "learn": 3, "store": 4, "models": 5, "report": 6, "runs": 7,
          "views": 8, "tune": 8, "commands": 9}


def module_name(path):
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(mod):
    parts = mod.split(".")
    if len(parts) > 2 or parts[-1] in LAYERS and len(parts) == 2:
        return LAYERS.get(parts[1], 0)
    return LAYERS["commands"] if parts[-1] in COMMANDS else LAYERS["vocabulary"]


def imports(path):
    """(imported fastmask module, at module level?) for every import in the file, lazy ones included."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}:{node.lineno}: relative import (the package imports absolutely)"
            if node.module and node.module.split(".")[0] == "fastmask":
                for a in node.names:  # `from fastmask.report import card` imports the module fastmask.report.card
                    sub = f"{node.module}.{a.name}"
                    out.append((sub if (PKG.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                                or (PKG.parent / sub.replace(".", "/")).is_dir() else node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names if a.name.split(".")[0] == "fastmask"]
    return out


def graph():
    return {module_name(p): imports(p) for p in sorted(PKG.rglob("*.py"))}


def test_imports_point_down_the_layers():
    bad = [f"{m} ({layer(m)}) -> {t} ({layer(t)})" for m, deps in graph().items() for t, _ in deps
           if layer(t) > layer(m) and t != "fastmask"]
    assert not bad, "imports pointing up:\n" + "\n".join(bad)


def test_no_import_circles():
    edges = {m: {t for t, _ in deps if t != m} for m, deps in graph().items()}
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
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


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


def test_the_share_check_counts_lines_per_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.py").write_text("1\n" * 30)
    (tmp_path / "a" / "y.py").write_text("1\n" * 10)
    (tmp_path / "b" / "z.py").write_text("1\n" * 40)
    (tmp_path / "top.py").write_text("1\n" * 20)
    assert shares(tmp_path) == {"a": 0.4, "b": 0.4, "(top level)": 0.2}


def test_the_layer_check_sees_a_planted_upward_import(tmp_path, monkeypatch):
    """The checks above read real files: an upward import planted in a copy of one module is caught."""
    import shutil
    copy = tmp_path / "fastmask"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "data" / "split.py").open("a") as f:
        f.write("\n\ndef _planted():\n    from fastmask.report.card import render  # noqa\n")
    monkeypatch.setattr(__import__(__name__), "PKG", copy)
    bad = [(m, t) for m, deps in graph().items() for t, _ in deps if layer(t) > layer(m)]
    assert ("fastmask.data.split", "fastmask.report.card") in bad


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

"""Loading a recipe file: a module with a docstring (the hypothesis) and a `recipe` object,

    \"\"\"Person-grouped splits give validation scores that hold on the holdout.\"\"\"
    from recipes.baseline import recipe as parent
    recipe = parent.but(split="person", patience=3)

imported as `recipes.<name>`, so that a child names its parent by importing it. Its import errors become one
line naming the file and line; the recipe and its ancestors are named after the modules that assign them."""
import dataclasses
import importlib.util
import sys
import traceback
from pathlib import Path

from fastmask.errors import FastmaskError, one_line
from fastmask.recipe import Recipe, coerce_all


def load_recipe(path, overrides=None):
    """Import a recipe file; `overrides` ({field: value}) make a child of it (named as the file)."""
    path = Path(path)
    if not path.is_file():
        raise FastmaskError(f"{path}: no such recipe file")
    path = path.resolve()
    # Parents are imported as `recipes.<name>`, so the folder above `recipes/` goes on sys.path.
    root = path.parent.parent if path.parent.name == "recipes" else path.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    modname = f"recipes.{path.stem}" if path.parent.name == "recipes" else path.stem
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    try:
        spec.loader.exec_module(mod)
    except FastmaskError as e:
        raise FastmaskError(f"{path}: {e}") from None
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("recipes"):
            raise FastmaskError(f"{path}: parent recipe {e.name!r} not found ({e.name.replace('.', '/')}.py)") from None
        raise FastmaskError(f"{path}: {_where(e, path)}") from None
    except SyntaxError as e:
        raise FastmaskError(f"{e.filename}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:
        raise FastmaskError(_where(e, path)) from None
    r = getattr(mod, "recipe", None)
    if not isinstance(r, Recipe):
        raise FastmaskError(f"{path}: defines no `recipe = Recipe(...)` or `parent.but(...)`")
    if any(m is not mod for m in _recipe_modules().get(id(r), ())):  # `recipe = parent`: a child that changes nothing
        r = mod.recipe = r.but()
    name_recipes(r, mod)
    if getattr(mod, "space", None) is not None:
        r.space = mod.space
    return with_overrides(r, coerce_all(overrides)) if overrides else r


def _recipe_modules():
    """{id(recipe object): [modules assigning it to `recipe`]} over the imported recipe modules."""
    out = {}
    for key, m in list(sys.modules.items()):
        if (key == "recipes" or key.startswith("recipes.")) and isinstance(getattr(m, "recipe", None), Recipe):
            out.setdefault(id(m.recipe), []).append(m)
    return out


def name_recipes(r, top):
    """Name `r` and its ancestors after the recipe modules that assign them to `recipe` (`top` for `r`):
    the module's stem, file and docstring. Each named recipe's parent becomes its nearest named ancestor,
    so a helper that calls `.but()` on the way names nothing and is nobody's parent."""
    homes = {k: ms[0] for k, ms in _recipe_modules().items()}
    homes[id(r)] = top
    named, x = [], r
    while x is not None:
        m = homes.get(id(x))
        if m is not None:
            x.name, x.file, x.hypothesis = Path(m.__file__).stem, str(Path(m.__file__).resolve()), (m.__doc__ or "").strip()
        if x.file is not None:  # named now, or by an earlier load
            named.append(x)
        x = x.parent
    for child, parent in zip(named, named[1:] + [None]):
        child.parent = parent


def with_overrides(r, overrides):
    """`r` and its whole parent chain with the same `--set` fields, so the change under test stays the
    recipe's own (`--set epochs=1` on a child compares against the parent at one epoch too)."""
    if r is None:
        return None
    return dataclasses.replace(r, **overrides, parent=with_overrides(r.parent, overrides))


def _where(e, path):
    """'file:line: Error: message' at the deepest frame inside a recipe file."""
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if "recipes" in Path(f.filename).parts or f.filename == str(path)]
    f = frames[-1] if frames else None
    loc = f"{f.filename}:{f.lineno}" if f else str(path)
    return f"{loc}: {one_line(e)}"

"""A recipe is one hypothesis: a `Recipe` whose fields differ from its parent's by the change under test.

A recipe file is a module with a docstring (the hypothesis) and a `recipe` object:

    \"\"\"Person-grouped splits give validation scores that hold on the holdout.\"\"\"
    from recipes.baseline import recipe as parent
    recipe = parent.but(split="person", patience=3)
"""
import dataclasses
import difflib
import math
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from .errors import FastmaskError


@dataclass(eq=False)
class Recipe:
    arch: str = "resnet10t"         # any timm model name (resnet10t: ~0.6x resnet18's CPU time per epoch)
    pretrained: Any = "auto"        # "auto", True, False, or a path to a local weights file
    size: tuple = (64, 48)          # height, width fed to the model (128,96 is the official baseline's; 4x slower on CPU)
    split: str = "person"           # "person", "random" (reproduces the leak), "kfold:K"
    valid_pct: float = 0.2
    split_seed: int = 0             # which people validate; apart from `seed`, so seeds compare on one split
    seed: int = 0                   # initialisation, sampling, augmentation and batch order
    replicates: int = 1             # seeds seed, seed+1, ... trained on the same split in one run folder
    epochs: int = 15                # from scratch on the twin, validation macro F1 levels off by ~12
    lr: Any = 5e-3                  # a float, or "find" for lr_find's valley suggestion
    bs: int = 32
    wd: Optional[float] = None
    patience: Optional[int] = None  # early stopping on validation macro F1 after the lr peak; None: every epoch
    num_workers: int = 0            # on 2 cores, workers were slower than none for small images
    cache: bool = True              # decode and resize each image once into a shared cache (cache.py)
    # Imbalance: None, "weighted" (fastai weighted_dataloaders; "weighted:0.5" sets the power) or
    # "oversample" (copies of rare training rows; "oversample:0.04" sets the target share per class)
    sampler: Optional[str] = None
    augment: Any = "none"           # "none", "light", "strong", or any albumentations A.Compose
    crop: Optional[float] = None    # centre crop keeping this fraction of height and width, every split
    cutmix: Optional[str] = None    # None, "box" (fastai's), "halves" (left/right face half), "rare", "rare-box"
    mixup: Optional[float] = None   # MixUp alpha
    heads: str = "single"           # "single" 18-way; "multi": mask/gender/age heads factorised into 18;
                                    # "separate": three whole models, one per task, trained side by side
    loss: Any = "ce"                # "ce", "smooth", "focal", "f1", "focal:3", or weights {"ce": .6, "f1": .4}
    task_weights: Optional[tuple] = None  # per-head CE weights (mask, gender, age) with heads="multi"
    age_threshold: int = 60         # training labels only: people >= this are "old"; metrics use true labels
    precision: str = "auto"         # "auto" (CUDA autocast when a GPU is present, else fp32), "fp32", "bf16", "fp16"
    # Who this recipe is; set from the module that made it, never compared or overridden.
    name: str = field(default="recipe", compare=False, repr=False)
    hypothesis: str = field(default="", compare=False, repr=False)
    file: Optional[str] = field(default=None, compare=False, repr=False)
    parent: Optional["Recipe"] = field(default=None, compare=False, repr=False)
    # What `python -m fastmask.search` explores: {field: spec}, from the file's module-level `search`.
    search: Optional[dict] = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        for f in fields(self):  # Recipe(...) in a file is checked like --set and .but()
            if f.compare:
                setattr(self, f.name, coerce(f.name, getattr(self, f.name)))
        self._place(2)

    def _place(self, depth):
        # The module that built this recipe names it and states its hypothesis.
        g = sys._getframe(depth + 1).f_globals
        f = g.get("__file__")
        if f and Path(f).resolve().parent.name == "recipes" or (f and g.get("__name__", "").startswith("recipes")):
            self.file, self.name = str(Path(f).resolve()), Path(f).stem
            self.hypothesis = (g.get("__doc__") or "").strip()

    def but(self, **changes):
        """A child recipe: this one with `changes`, remembering this one as its parent."""
        child = dataclasses.replace(self, **coerce_all(changes))
        child.parent, child.search = self, None  # a child is one hypothesis, not its parent's search
        child._place(1)
        return child

    def variant(self, **changes):
        """This same recipe (name, file, hypothesis, parent) with `changes`: one fold or seed of a run,
        not a new hypothesis."""
        out = dataclasses.replace(self, **coerce_all(changes))
        out.name, out.file, out.hypothesis, out.parent, out.search = (
            self.name, self.file, self.hypothesis, self.parent, self.search)
        return out

    def fields(self):
        """The fields a recipe file or `--set` may change, with their values."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.compare}

    def diff(self, other=None):
        """Fields that differ from `other` (default: the parent), as {field: [other's, this]}."""
        other = self.parent if other is None else other
        if other is None:
            return {}
        mine, theirs = self.fields(), other.fields()
        return {k: [_plain(theirs[k]), _plain(v)] for k, v in mine.items() if _plain(theirs[k]) != _plain(v)}

    def config(self):
        return {"name": self.name, "parent": self.parent.name if self.parent else None,
                "fields": {k: _plain(v) for k, v in self.fields().items()}, "changed": self.diff(),
                "parent_fields": {k: _plain(v) for k, v in self.parent.fields().items()} if self.parent else None}

    # REPL entry points: the same objects `python -m fastmask.run` trains.
    def dls(self, data=None):
        from .train import build_dls, load_data
        return build_dls(self, load_data(data).train)

    def learner(self, data=None, dls=None):
        """The Learner `python -m fastmask.run` trains: the recipe's callbacks (CutMix, precision,
        keep-best, early stopping, ...) are on `learn.cbs` and its lr is `learn.lr`."""
        from .train import build_learner
        return build_learner(self, dls if dls is not None else self.dls(data))

    def export(self, learn, path):
        """`learn` as a run exports it: PATH.pkl (fastai's load_learner) beside PATH.safetensors and
        PATH.json (what `fastmask.predict` opens without unpickling), without training callbacks."""
        from .run import export
        export(learn, Path(path).with_suffix(".pkl"), self)


def _plain(v):
    """A JSON-able form of a field value."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return repr(v)


_FIELD_NAMES = [f.name for f in fields(Recipe) if f.compare]
_DEFAULTS = Recipe.__new__(Recipe)
for _f in fields(Recipe):
    setattr(_DEFAULTS, _f.name, _f.default)


def check_name(key):
    if key not in _FIELD_NAMES:
        close = difflib.get_close_matches(key, _FIELD_NAMES, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; fields are {', '.join(_FIELD_NAMES)}"
        raise FastmaskError(f"unknown recipe field {key!r}{hint}")


def coerce(key, value):
    """`value` for field `key`, parsed from text when it comes from `--set`; wrong types raise."""
    check_name(key)
    default = getattr(_DEFAULTS, key)
    text = isinstance(value, str)
    try:
        if key == "size":
            v = tuple(int(x) for x in value.replace("x", ",").split(",")) if text else tuple(int(x) for x in value)
            if len(v) != 2 or min(v) < 8:
                raise ValueError
            return v
        if key in ("lr", "pretrained", "wd", "patience"):
            return _loose(key, value)
        if key in CHOICES:
            v = None if text and value.lower() in ("none", "null") else value
            base = v.split(":")[0] if isinstance(v, str) else v
            if base not in CHOICES[key]:
                raise ValueError
            if isinstance(v, str) and ":" in v:
                arg = v.split(":", 1)[1]
                if base == "kfold":
                    k, _, f = arg.partition("/")
                    if int(k) < 2 or (f and not 0 <= int(f) < int(k)):
                        raise ValueError
                else:
                    float(arg)
            return v
        if key in ("crop", "mixup"):
            v = None if value is None or (text and value.lower() in ("none", "null")) else _finite(float(value))
            if v is not None and not (0 < v <= (1 if key == "crop" else 100)):
                raise ValueError
            return v
        if key == "task_weights":
            if value is None or (text and value.lower() in ("none", "null")):
                return None
            v = tuple(_finite(float(x)) for x in (value.split(",") if text else value))
            if len(v) != 3:
                raise ValueError
            return v
        if key == "loss" and text and ("," in value or ":" in value and not value.split(":")[0] in ("focal", "smooth")):
            return {k.strip(): _finite(float(w)) for k, w in (part.split(":") for part in value.split(","))}
        if key == "augment" and text and value not in ("none", "light", "strong"):
            raise ValueError
        if isinstance(default, bool):
            return value if isinstance(value, bool) else {"true": True, "false": False}[value.lower()]
        if isinstance(default, int):
            if isinstance(value, bool) or (not text and not isinstance(value, int)):
                raise ValueError
            return _at_least(int(value), 1 if key in ("epochs", "bs", "replicates") else 0)
        if isinstance(default, float):
            v = _finite(float(value))
            if key == "valid_pct" and not (0 < v < 1 and abs(1 / v - round(1 / v)) < 0.02):
                raise ValueError  # person_split holds out 1/K of the people
            return v
        return value
    except (ValueError, KeyError, TypeError, AttributeError):
        want = {"size": "height,width", "task_weights": "mask,gender,age weights", "crop": "fraction in (0, 1]",
                "valid_pct": "1/K (0.5, 0.33, 0.25, 0.2, 0.1, ...)", "mixup": "alpha in (0, 100]", "epochs": "int >= 1", "bs": "int >= 1",
                "seed": "int >= 0", "split_seed": "int >= 0", "replicates": "int >= 1", "num_workers": "int >= 0", "lr": "positive number or 'find'",
                "wd": "non-negative number", "patience": "int >= 1 or none",
                "loss": "loss (ce, smooth, focal, f1, or ce:0.6,f1:0.4)", "augment": "preset (none, light, strong)",
                **{k: f"choice ({', '.join(str(c) for c in v)})" for k, v in CHOICES.items()}}.get(key, type(default).__name__)
        raise FastmaskError(f"recipe field {key}: {value!r} is not a valid {want}") from None


CHOICES = {"split": ("person", "random", "kfold"), "sampler": (None, "weighted", "oversample"),
           "cutmix": (None, "box", "halves", "rare", "rare-box"), "heads": ("single", "multi", "separate"),
           "precision": ("auto", "fp32", "bf16", "fp16")}


def _finite(v):
    # nan and inf parse as floats but only ever make a run fail later, or silently train on nothing
    if not math.isfinite(v):
        raise ValueError
    return v


def _at_least(v, low):
    if v < low:
        raise ValueError
    return v


def _loose(key, value):
    # Fields that take a number or a word; text from --set becomes the number when it is one.
    if key == "pretrained":  # "auto", True, False, or a weights file
        low = str(value).lower()
        return low == "true" if low in ("true", "false") else False if low in ("none", "null") else value
    if isinstance(value, str):
        low = value.lower()
        if key == "lr" and low == "find":
            return value
        if key != "lr" and low in ("none", "null"):
            return None
        value = int(value) if key == "patience" else float(value)
    if isinstance(value, float):
        _finite(value)
    if value is None and key != "lr":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (key == "patience" and not isinstance(value, int)):
        raise ValueError
    if key == "lr" and value <= 0:
        raise ValueError
    return _at_least(value, 1 if key == "patience" else 0)


def coerce_all(changes):
    return {k: coerce(k, v) for k, v in changes.items()}


def parse_sets(pairs):
    """`--set key=value` items into a dict of coerced fields."""
    out = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        if not eq:
            raise FastmaskError(f"--set {p!r}: expected key=value")
        out[key.strip()] = coerce(key.strip(), value.strip())
    return out


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
    r.file, r.name = str(path), path.stem
    r.hypothesis = (mod.__doc__ or "").strip()
    if getattr(mod, "search", None) is not None:
        r.search = mod.search
    return with_overrides(r, coerce_all(overrides)) if overrides else r


def with_overrides(r, overrides):
    """`r` and its whole parent chain with the same `--set` fields, so the change under test stays the
    recipe's own (`--set epochs=1` on a child compares against the parent at one epoch too)."""
    if r is None:
        return None
    out = dataclasses.replace(r, **overrides)
    out.file, out.name, out.hypothesis = r.file, r.name, r.hypothesis
    out.parent = with_overrides(r.parent, overrides)
    return out


def _where(e, path):
    """'file:line: Error: message' at the deepest frame inside a recipe file."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "recipes" in Path(f.filename).parts or f.filename == str(path)]
    f = frames[-1] if frames else None
    loc = f"{f.filename}:{f.lineno}" if f else str(path)
    return f"{loc}: {type(e).__name__}: {e}"

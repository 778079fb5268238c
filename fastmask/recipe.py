"""A recipe is one hypothesis: a `Recipe` whose fields differ from its parent's by the change under test.

A recipe file is a module with a docstring (the hypothesis) and a `recipe` object:

    \"\"\"Person-grouped splits give validation scores that hold on the holdout.\"\"\"
    from recipes.baseline import recipe as parent
    recipe = parent.but(split="person", patience=3)
"""
import dataclasses
import difflib
import importlib.util
import math
import sys
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

from fastmask.choices import CHOICE_FIELDS, parse_split
from fastmask.errors import FastmaskError, one_line


@dataclass(eq=False)
class Recipe:
    arch: str = "regnetx_002"       # any timm model name (regnetx_002: ~0.5x resnet10t's CPU time per epoch here)
    pretrained: Any = "auto"        # "auto", True, False, or a path to a local weights file
    size: tuple = (64, 48)          # height, width fed to the model (128,96 is the official baseline's; 4x slower on CPU)
    # Choice fields (CHOICE_FIELDS: split, sampler, cutmix, heads, precision) take names registered beside
    # their code, the one list of them; the comments give examples.
    split: str = "person"           # "person", "random" (reproduces the leak), "kfold:K" (K models; "kfold:K/F": fold F's)
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
    # Imbalance: "weighted" (fastai weighted_dataloaders, every class drawn equally often; "weighted:0.5" sets
    # the power), None (rows drawn uniformly) or "oversample" (copies of rare training rows; "oversample:0.04"
    # sets the target share per class). Weighted by default: on real faces (bench/realphotos.py, 75 people) it
    # alone raised unmasked recall 0.34 -> 0.66, and with the light augmentation below balanced accuracy reached 0.89.
    sampler: Optional[str] = "weighted"
    augment: Any = "light"          # "light", "strong", "none", or any albumentations A.Compose
    crop: Any = None                # centre crop keeping this fraction of height and width, every split; or
                                    # "face" / "face:0.3": the detected face with that margin ([face] extra)
    cutmix: Optional[str] = None    # None, "box" (fastai's), "halves" (left/right face half), "rare", "rare-box"
    mixup: Optional[float] = None   # MixUp alpha
    mix_prob: float = 1.0           # the share of batches CutMix or MixUp mixes (timm's Mixup `prob`)
    heads: str = "single"           # "single" 18-way; "multi": mask/gender/age heads factorised into 18;
                                    # "separate": three whole models, one per task, trained side by side
    loss: Any = "ce"                # "ce", "smooth", "focal", "f1", "focal:3", or weights {"ce": .6, "f1": .4}
    task_weights: Optional[tuple] = None  # per-head CE weights (mask, gender, age) with heads="multi" or "separate"
    age_threshold: int = 60         # training labels only: people >= this are "old"; metrics use true labels
    relabel: bool = False           # train on the data folder's relabel.csv corrections (scores always use them)
    precision: str = "auto"         # "auto" (CUDA autocast when a GPU is present, else fp32), "fp32", "bf16", "fp16"
    # How the hypothesis is judged (JUDGING: they never make a run incomparable with its parent's runs):
    judged_on: str = "macro_f1"     # "macro_f1" (validation), "gap" (|validation - holdout| macro F1, the leak),
                                    # or one task's validation F1: "mask_f1", "gender_f1", "age_f1"
    min_effect: float = 0.02        # the smallest change worth knowing: within +-this is "no effect"
    decide: int = 0                 # >= 2: add paired seeds (child and parent) up to this many until the verdict decides
    # Who this recipe is: `load_recipe` sets these from the recipe module that assigns it to `recipe`
    # (its name, file and docstring); never compared or overridden.
    name: str = field(default="recipe", compare=False, repr=False)
    hypothesis: str = field(default="", compare=False, repr=False)
    file: Optional[str] = field(default=None, compare=False, repr=False)
    parent: Optional["Recipe"] = field(default=None, compare=False, repr=False)
    # What `python -m fastmask.search` explores: the recipe file's `space(trial)` (optuna's own calls).
    space: Optional[Callable] = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        for f in fields(self):  # Recipe(...) in a file is checked like --set and .but()
            if f.compare:
                setattr(self, f.name, coerce(f.name, getattr(self, f.name)))

    def but(self, **changes):
        """A child recipe: this one with `changes`, remembering this one as its parent. It is nameless
        until `load_recipe` names it after the recipe module that assigns it to `recipe`. How a hypothesis
        is judged (JUDGING) is its own: a child starts from the defaults there, not from its parent's."""
        judging = {k: getattr(_DEFAULTS, k) for k in JUDGING}
        return dataclasses.replace(self, **{**judging, **coerce_all(changes)}, parent=self, name="recipe", file=None,
                                   hypothesis="", space=None)

    def variant(self, **changes):
        """This same recipe (name, file, hypothesis, parent) with `changes`: one fold or seed of a run,
        not a new hypothesis."""
        return dataclasses.replace(self, **coerce_all(changes))

    def fields(self):
        """The fields a recipe file or `--set` may change, with their values."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.compare}

    def diff(self, other=None):
        """Fields that differ from `other` (default: the parent), as {field: [other's, this]}: the change
        under test, so the fields that say how it is judged (JUDGING) are not part of it."""
        other = self.parent if other is None else other
        if other is None:
            return {}
        mine, theirs = self.fields(), other.fields()
        return {k: [_plain(theirs[k]), _plain(v)] for k, v in mine.items()
                if k not in JUDGING and _plain(theirs[k]) != _plain(v)}

    def config(self):
        return {"name": self.name, "parent": self.parent.name if self.parent else None,
                "fields": {k: _plain(v) for k, v in self.fields().items()}, "changed": self.diff(),
                "parent_fields": {k: _plain(v) for k, v in self.parent.fields().items()} if self.parent else None}

    # r.dls(), r.learner() and r.export() are attached by the layers that build and export them
    # (data.dls, learn.build, models.export: fastcore's @patch, as fastai attaches fit_one_cycle from callback/schedule),
    # so the recipe imports nothing above it; `fastmask.repl` imports them all.
    def __getattr__(self, name):  # only reached for a name the instance and class lack
        if name in REPL_METHODS:
            raise AttributeError(f"Recipe.{name} is attached by fastmask.repl: `from fastmask.repl import "
                                 f"load_recipe` (or `import fastmask.repl`) first")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


REPL_METHODS = ("dls", "learner", "export")


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
# Fields that say how a run is judged, not what it trains: runs differing only in these compare as one setup.
JUDGING = ("judged_on", "min_effect", "decide")
JUDGED_ON = ("macro_f1", "gap", "mask_f1", "gender_f1", "age_f1")
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
    rule = RULES.get(key) or _by_type(key)
    try:
        return rule.parse(value, isinstance(value, str))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise FastmaskError(f"recipe field {key}: {value!r} is not a valid {rule.want}") from None


@dataclass(frozen=True)
class Rule:
    """How one field's value is read (from a recipe file, `--set` text or `.but()`), and what the
    message says it must be. `parse(value, text)` returns the value or raises ValueError."""
    parse: Callable
    want: str


def _none(value, text):
    return value is None or (text and value.lower() in ("none", "null"))


def _size(value, text):
    v = tuple(int(x) for x in value.replace("x", ",").split(",")) if text else tuple(int(x) for x in value)
    if len(v) != 2 or min(v) < 8:
        raise ValueError
    return v


NULLABLE = ("sampler",)  # choice fields whose default is a name but which also take None ("none" in --set)


def _choice(key):
    """A name from the field's registry (checked later by check_choices), or name:number; "kfold:K/F" for split."""
    def parse(value, text):
        v = None if (getattr(_DEFAULTS, key) is None or key in NULLABLE) and _none(value, text) else value
        if v is None:
            return v
        if not isinstance(v, str) or not v.partition(":")[0]:
            raise ValueError
        if key == "split":
            parse_split(v)
        elif ":" in v:
            _finite(float(v.partition(":")[2]))
        return v
    return parse


def _fraction(high):
    def parse(value, text):
        v = None if _none(value, text) else _finite(float(value))
        if v is not None and not 0 < v <= high:
            raise ValueError
        return v
    return parse


def _crop(value, text):
    """A centre-crop fraction in (0, 1], or "face[:margin]" with a margin in [0, 2]."""
    if isinstance(value, str) and value.partition(":")[0] == "face":
        _, colon, m = value.partition(":")
        if colon and not 0 <= _finite(float(m)) <= 2:
            raise ValueError
        return value
    return _fraction(1)(value, text)


def _task_weights(value, text):
    if _none(value, text):
        return None
    v = tuple(_finite(float(x)) for x in (value.split(",") if text else value))
    # all-zero or negative weights train on nothing (loss 0) or away from the labels, yet finish
    if len(v) != 3 or min(v) < 0 or sum(v) <= 0:
        raise ValueError
    return v


def _loss(value, text):
    if text and "," in value:  # weights; one "name:value" is for the loss to read
        w = {k.strip(): _finite(float(x)) for k, x in (part.split(":") for part in value.split(","))}
    elif isinstance(value, dict):  # a recipe file's {"ce": .6, "f1": .4}: checked as --set's
        if any(isinstance(x, bool) for x in value.values()):
            raise ValueError
        w = {str(k): _finite(float(x)) for k, x in value.items()}
    else:
        return value
    if not w or min(w.values()) < 0 or sum(w.values()) <= 0:
        raise ValueError
    return w


def _one_of(names):
    def parse(value, text):
        if value not in names:
            raise ValueError
        return value
    return parse


def _augment(value, text):
    if text and value not in ("none", "light", "strong"):
        raise ValueError
    return value  # or an albumentations Compose


def _number_in(low, high, low_open=True, high_open=False):
    def parse(value, text):
        v = _finite(float(value))
        above = (low < v) if low_open else (low <= v)
        below = (v < high) if high_open else (v <= high)
        if isinstance(value, bool) or not above or not below:
            raise ValueError
        return v
    return parse


def _valid_pct(value, text):
    v = _finite(float(value))
    if not (0 < v < 1 and abs(1 / v - round(1 / v)) < 0.02):
        raise ValueError  # person_split holds out 1/K of the people
    return v


def _int(low):
    def parse(value, text):
        if isinstance(value, bool) or (not text and not isinstance(value, int)):
            raise ValueError
        return _at_least(int(value), low)
    return parse


def _decide(value, text):
    if not isinstance(value, bool) and int(value) == 1:
        raise ValueError  # one seed decides nothing
    return _int(0)(value, text)


def _bool(value, text):
    return value if isinstance(value, bool) else {"true": True, "false": False}[value.lower()]


def _loose_rule(key):
    return lambda value, text: _loose(key, value)


def _by_type(key):
    """The rule of a field without its own: by its default's type (a str field takes any value)."""
    default = getattr(_DEFAULTS, key)
    if isinstance(default, bool):
        return Rule(_bool, "bool")
    if isinstance(default, int):
        return Rule(_int(0), "int")
    if isinstance(default, float):
        return Rule(lambda value, text: _finite(float(value)), "float")
    return Rule(lambda value, text: value, type(default).__name__)


_CHOICE_WANT = "choice (a name, or name:number)"
# Each field's rule and message, in the order of Recipe's fields; a field not here goes by its type.
RULES = {
    "pretrained": Rule(_loose_rule("pretrained"), "str"),
    "size": Rule(_size, "height,width"),
    "split": Rule(_choice("split"), "split (a name, or kfold:K / kfold:K/F with K >= 2 and 0 <= F < K)"),
    "valid_pct": Rule(_valid_pct, "1/K (0.5, 0.33, 0.25, 0.2, 0.1, ...)"),
    "split_seed": Rule(_int(0), "int >= 0"),
    "seed": Rule(_int(0), "int >= 0"),
    "replicates": Rule(_int(1), "int >= 1"),
    "epochs": Rule(_int(1), "int >= 1"),
    "lr": Rule(_loose_rule("lr"), "positive number or 'find'"),
    "bs": Rule(_int(1), "int >= 1"),
    "wd": Rule(_loose_rule("wd"), "non-negative number"),
    "patience": Rule(_loose_rule("patience"), "int >= 1 or none"),
    "num_workers": Rule(_int(0), "int >= 0"),
    "sampler": Rule(_choice("sampler"), _CHOICE_WANT),
    "augment": Rule(_augment, "preset (none, light, strong)"),
    "crop": Rule(_crop, "fraction in (0, 1], or face / face:MARGIN (margin in [0, 2])"),
    "cutmix": Rule(_choice("cutmix"), _CHOICE_WANT),
    "mixup": Rule(_fraction(100), "alpha in (0, 100]"),
    "mix_prob": Rule(_number_in(0, 1), "probability in (0, 1]"),
    "heads": Rule(_choice("heads"), _CHOICE_WANT),
    "loss": Rule(_loss, "loss (a name, name:value, or weights >= 0 with a positive sum as ce:0.6,f1:0.4)"),
    "task_weights": Rule(_task_weights, "mask,gender,age weights (>= 0, positive sum)"),
    "precision": Rule(_choice("precision"), _CHOICE_WANT),
    "judged_on": Rule(_one_of(JUDGED_ON), f"quantity ({', '.join(JUDGED_ON)})"),
    "min_effect": Rule(_number_in(0, 1, high_open=True), "effect in (0, 1)"),
    "decide": Rule(_decide, "seed budget: 0 (off) or an int >= 2"),
}
# a choice field added to CHOICE_FIELDS is read as one before it has a line above
RULES.update({k: Rule(_choice(k), _CHOICE_WANT) for k in CHOICE_FIELDS if k not in RULES})


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

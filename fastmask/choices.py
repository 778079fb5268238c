"""The names a recipe's choice fields take (split, sampler, cutmix, heads, precision), each registry filled
by the module that implements the names; and the grammars of field values read downstream, each with its one
parser: `split` (a `Split`) and the face crop's margin. A leaf: the recipe checks a
value's shape here, and every layer registers its names here, without any of them importing the recipe
(as timm's models register into `_registry.py`)."""
import importlib
from typing import Optional

from fastmask.errors import FastmaskError

# Fields whose value is a name from a registry (`Choices`) kept beside the code that implements the
# name: that registry is the one list of the names. Only the shape is checked here, so a recipe file
# and `import fastmask` import no library; `check_choices` (run by preflight, before any data work)
# imports the module holding each registry (`load_all`), then checks the names.
# The modules are named as text: this leaf is imported by the layers that fill it, never imports them.
HOMES = {"split": "fastmask.data.split", "sampler": "fastmask.data.sampling", "cutmix": "fastmask.learn.mixing",
         "heads": "fastmask.learn.heads", "precision": "fastmask.learn.precision"}
CHOICE_FIELDS = tuple(HOMES)
_REGISTRIES = {}


class Choices:
    """The names a recipe field takes, each registered on the code that does it (as timm registers
    its models), so the registry is the one list of them:

        CUTMIX = Choices("cutmix")

        @CUTMIX.register("halves")
        def halves(...): ...

    `CUTMIX["halves"]` is that code; a name the registry lacks is a FastmaskError naming the field and
    every registered name. `register(name, value="power")` lets the name take "name:value" (the code
    reads the text after the colon); `needs_value=True` makes the value required."""

    def __init__(self, field):
        if field not in CHOICE_FIELDS:
            raise ValueError(f"{field!r} is not a choice field of Recipe")
        self.field, self._entries = field, {}
        _REGISTRIES[field] = self

    def register(self, name, value=None, needs_value=False, **attrs):
        def add(fn):
            for k, v in attrs.items():
                setattr(fn, k, v)
            self._entries[name] = (fn, value, needs_value)
            return fn
        return add

    def names(self):
        return list(self._entries)

    def describe(self):
        """The names as the error lists them: none, weighted[:power], kfold:K[/F], ..."""
        def one(name, value, needs):
            text = "none" if name is None else name
            return text if value is None else f"{text}:{value}" if needs else f"{text}[:{value}]"
        return ", ".join(one(n, v, needs) for n, (_, v, needs) in self._entries.items())

    def lookup(self, choice):
        """(code, text after the colon or None) for a field value; FastmaskError when the registry lacks it."""
        name, colon, value = (None, "", "") if choice is None else str(choice).partition(":")
        fn, takes, needs = self._entries.get(name, (None, None, False))
        if fn is None or (colon and takes is None) or (needs and not colon):
            raise FastmaskError(f"recipe field {self.field}: {choice!r} is not a valid choice ({self.describe()})")
        return fn, value if colon else None

    def __getitem__(self, choice):
        return self.lookup(choice)[0]


def load_all():
    """Every choice field's registry, filled: the modules registering the names are imported (once), so a
    check does not depend on which modules happened to be imported before it."""
    for key, module in HOMES.items():
        if key not in _REGISTRIES:
            importlib.import_module(module)
        if key not in _REGISTRIES:
            raise RuntimeError(f"{module} makes no Choices({key!r}): HOMES names the wrong module")
    return _REGISTRIES


def check_choices(recipe):
    """Every choice field's value against its registry; FastmaskError naming the first bad field and its
    valid choices."""
    registries = load_all()
    for key in CHOICE_FIELDS:
        registries[key].lookup(getattr(recipe, key))


class Split(str):
    """A recipe's `split`, parsed once when the recipe takes it (`Split(text)`). It is the text as typed, so
    config.json, cards, `--set`, equality and hashing see the string they always did, and it carries the parts
    downstream code reads instead of the text: "person" -> kind "person"; "kfold:5" -> kind "kfold", k 5, a run
    of five models; "kfold:5/2" -> k 5, fold 2, the model validating on fold 2 of 5."""
    kind: str
    k: Optional[int]
    fold: Optional[int]

    def __new__(cls, text):
        if isinstance(text, Split):  # parsed already: handed on, never parsed again
            return text
        s = str.__new__(cls, text)
        s.kind, s.k, s.fold = _parse(s)
        return s

    @property
    def n_folds(self):
        """K when a run trains one model per fold, else None (one split, or one fold's model)."""
        return self.k if self.fold is None else None

    def folds(self):
        """The fold numbers a run trains: 0..K-1, or [None] for a single split."""
        return list(range(self.k)) if self.n_folds else [None]

    def one(self, fold):
        """The split of fold `fold`'s model: "kfold:5" -> "kfold:5/2"."""
        s = str.__new__(Split, f"{self.kind}:{self.k}/{fold}")
        s.kind, s.k, s.fold = self.kind, self.k, fold
        return s


def _parse(text):
    """The one parser of the `split` field's grammar: "NAME", "NAME:K" or "NAME:K/F" -> (kind, K, F). ValueError
    when K < 2 or F is outside 0..K-1 (which names take folds is the split registry's to say)."""
    kind, colon, arg = str(text).partition(":")
    if not colon:
        return kind, None, None
    k, slash, f = arg.partition("/")
    k, fold = int(k), int(f) if slash else None
    if k < 2 or (fold is not None and not 0 <= fold < k):
        raise ValueError(f"split {text!r}: needs K >= 2 folds and 0 <= F < K")
    return kind, k, fold


def parse_split(text):
    """`text` as a Split: for a config.json of a run already made (a recipe holds its Split parsed)."""
    return Split(text)


DEFAULT_FACE_MARGIN = 0.2  # of the face box's width and height, added on each side


def face_margin(crop):
    """The one reader of the face-crop grammar ("face" -> 0.2, "face:0.3" -> 0.3), None for any other crop
    value; ValueError for a margin outside [0, 2]. The recipe checks its crop with it; data.faces crops by it."""
    if not (isinstance(crop, str) and crop.partition(":")[0] == "face"):
        return None
    _, colon, m = crop.partition(":")
    margin = float(m) if colon else DEFAULT_FACE_MARGIN
    if not 0 <= margin <= 2:  # nan fails this too
        raise ValueError(f"crop {crop!r}: the face margin must be in [0, 2]")
    return margin

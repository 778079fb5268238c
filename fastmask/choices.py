"""The names a recipe's choice fields take (split, sampler, cutmix, heads, precision), each registry filled
by the module that implements the names, and the `split` value parsed. A leaf: the recipe checks a
value's shape here, and every layer registers its names here, without any of them importing the recipe
(as timm's models register into `_registry.py`)."""
import functools
from typing import NamedTuple, Optional

from fastmask.errors import FastmaskError

# Fields whose value is a name from a registry (`Choices`) kept beside the code that implements the
# name: that registry is the one list of the names. Only the shape is checked here, so a recipe file
# and `import fastmask` import no library; `check_choices` (run by preflight, before any data work)
# checks the names once the implementing modules are imported.
CHOICE_FIELDS = ("split", "sampler", "cutmix", "heads", "precision")
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


def check_choices(recipe):
    """Every choice field's value against its registry (the modules implementing them imported first,
    as preflight does); FastmaskError naming the first bad field and its valid choices."""
    for key in CHOICE_FIELDS:
        if key not in _REGISTRIES:
            raise RuntimeError(f"no registry for recipe field {key}: import the module that implements it")
        _REGISTRIES[key].lookup(getattr(recipe, key))


class Split(NamedTuple):
    """A recipe's `split` parsed: "person" -> Split("person"); "kfold:5" -> Split("kfold", 5), a run of five
    models; "kfold:5/2" -> Split("kfold", 5, 2), the model validating on fold 2 of 5."""
    kind: str
    k: Optional[int] = None
    fold: Optional[int] = None

    @property
    def n_folds(self):
        """K when a run trains one model per fold, else None (one split, or one fold's model)."""
        return self.k if self.fold is None else None

    def folds(self):
        """The fold numbers a run trains: 0..K-1, or [None] for a single split."""
        return list(range(self.k)) if self.n_folds else [None]

    def one(self, fold):
        """The split text of fold `fold`'s model ("kfold:5/2")."""
        return str(self._replace(fold=fold))

    def __str__(self):
        return self.kind + ("" if self.k is None else f":{self.k}") + ("" if self.fold is None else f"/{self.fold}")


@functools.lru_cache(maxsize=256)  # a run asks for its split per fold, seed and check: each text is parsed once
def parse_split(text):
    """The one parser of the `split` field: "NAME", "NAME:K" or "NAME:K/F" -> Split. ValueError when K < 2 or
    F is outside 0..K-1 (which names take folds is the split registry's to say)."""
    kind, colon, arg = str(text).partition(":")
    if not colon:
        return Split(kind)
    k, slash, f = arg.partition("/")
    k, fold = int(k), int(f) if slash else None
    if k < 2 or (fold is not None and not 0 <= fold < k):
        raise ValueError(f"split {text!r}: needs K >= 2 folds and 0 <= F < K")
    return Split(kind, k, fold)

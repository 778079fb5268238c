"""fastai's pickled learner (STEM.pkl): written with a check that fastmask is importable, opened only when
trusted, and refused otherwise in one line that says what to use instead.

Opening a pickle runs the code it names, so `fastmask.models.load.load` opens one only when told to trust it
(`--trust-pickle`); the STEM.safetensors + STEM.json beside it (`fastmask.models.model_files`) hold no code."""
import importlib.util
import operator
import pickle
import warnings
from pathlib import Path

from fastai.learner import defaults, load_learner

from fastmask.data import augment  # noqa: F401  (the classes a pickled learner names)
from fastmask.errors import FastmaskError, one_line
from fastmask.io import replacing
from fastmask.learn import heads, losses, metrics  # noqa: F401  (likewise)
from fastmask.models.model_files import files


# ---------------------------------------------------------------------------------------------
# Opening a pickle (trusted) or refusing it
# ---------------------------------------------------------------------------------------------
def refusal(path):
    """Why a pickle is not opened, and what to do instead, in one line."""
    safe = files(path.with_suffix(""))[1]
    instead = (f"or use {safe} beside it, which holds no code" if safe.is_file()
               else "or point at the run folder to use its model.safetensors")
    return (f"{path}: is a pickle, and opening a pickle runs the code it names: pass --trust-pickle for files "
            f"you trust, {instead}")


def load_pickle(path):
    """fastai's load_learner on a file the caller trusts, with one line naming what went wrong."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fastai's pickle warning: the caller chose to trust this file
            return load_learner(path, cpu=True, pickle_module=_NamedImports)
    except MissingModule as e:
        raise FastmaskError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, RuntimeError, AttributeError, ImportError, UnboundLocalError,
            ValueError, TypeError, KeyError, OSError) as e:
        reason = one_line(e, named=False, limit=160)
        raise FastmaskError(f"{path}: not a fastai learner export ({type(e).__name__}: {reason})") from None


class MissingModule(FastmaskError):
    """A pickle names a module that is not importable here."""


class _NamedUnpickler(pickle.Unpickler):
    """An Unpickler whose missing modules fail by name. fastai 2.8.12's load_learner swallows any
    ImportError it does not recognise and then fails on its own unset variable (UnboundLocalError),
    which names nothing; an error that is not an ImportError passes through it."""
    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except ImportError as e:
            raise MissingModule(f"needs the Python module {e.name or module!r}, which is not importable here "
                                "(install it, or the fastmask version that exported this file)") from None


class _NamedImports:
    """The pickle module as torch.load takes it (`pickle_module=`), with `_NamedUnpickler` (torch's
    older file format also reads with `load`)."""
    __name__ = "pickle"
    Unpickler = _NamedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file, **kw):
        return _NamedUnpickler(file, **kw).load()


# ---------------------------------------------------------------------------------------------
# Exporting the pickle (trusted use: fastai's load_learner)
# ---------------------------------------------------------------------------------------------
NEEDS_FASTMASK = ("fastmask is not installed: this learner was exported by fastmask and holds its classes, so "
                  "fastai's load_learner needs fastmask importable (pip install -e PATH/TO/fastmask). Once it is, "
                  "python -m fastmask.predict RUN_FOLDER reads the model.safetensors beside it without unpickling.")


class _Call:
    """Pickles as the call `fn(*args)`, made while the file is unpickled."""
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def needs_fastmask():
    """What an export carries first: it unpickles to "fastmask" where fastmask is importable and
    otherwise raises KeyError(NEEDS_FASTMASK) before anything asks for a fastmask class. Without it,
    fastai's load_learner reports the missing package as an unrelated UnboundLocalError (see
    `_NamedUnpickler`). Only stdlib functions are called: no code of ours needs to exist there."""
    present = _Call(operator.is_not, _Call(importlib.util.find_spec, "fastmask"), None)
    key = _Call(operator.getitem, {True: "fastmask", False: NEEDS_FASTMASK}, present)
    return _Call(operator.getitem, {"fastmask": "fastmask"}, key)


def export_pickle(learn, path):
    """`learn.export` to `path` through a temp name (removed on any failure, e.g. a full disk), without
    training callbacks, with the fastmask check first in the pickled state. The learner gets its callbacks
    back (as fastai's own export puts back what it takes off): a REPL user fits on after exporting, and a
    learner stripped of CutMix or keep-best would quietly train another hypothesis."""
    path = Path(path)
    training = [cb for cb in learn.cbs if type(cb) not in defaults.callbacks]
    tmp = path.with_name(f".{path.name}.tmp")
    _put_first(learn.__dict__, "exported_by", needs_fastmask())  # a pickle's state loads in dict order
    try:
        with replacing(path, tmp), learn.removed_cbs(training):
            learn.export(tmp)
    finally:
        learn.__dict__.pop("exported_by", None)


def _put_first(d, key, value):
    rest = {k: v for k, v in d.items() if k != key}
    d.clear()
    d.update({key: value, **rest})

"""Exported learners -> class probabilities -> ensembles -> submission.csv.

Every model outputs one tensor of 18 class scores, so fastai's `get_preds` and `Learner.tta` work on
every learner this package exports. What `learn.tta(dl=..., n=N)` does with our pipelines:

- it runs N passes with the *training* transforms switched on (split_idx 0), averages them, and
  returns `0.75 * mean(augmented) + 0.25 * plain` (fastai's `beta=0.25`);
- our only training-only transform is the recipe's albumentations pipeline (`augment="light"` or
  `"strong"`); `Resize` and `Normalize` run on both sides. With `augment="none"` every augmented pass
  would equal the plain one, so such models get a horizontal flip as their one TTA pass instead
  (`HFlip`), and N does not matter for them;
- the albumentations generator is reseeded before each TTA call, so the same call gives the same
  numbers twice; `tta=0` is exactly `get_preds` (fastai's tta cannot take n=0).

Model files. A run folder holds each model twice: STEM.safetensors + STEM.json (`fastmask.models.model_files`:
tensors and plain values, rebuilt by this package's code) and STEM.pkl (fastai's `learn.export`, for
`load_learner`). Opening a pickle runs the code it names, so `load` opens one only when told to trust
it (`--trust-pickle`); a .safetensors/.json path, or a run folder holding them, unpickles nothing."""
import importlib.util
import operator
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from fastai.data.transforms import Transform
from fastai.learner import Learner, defaults, load_learner
from fastai.torch_core import TensorImage
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fastmask.data import augment  # noqa: F401  (the classes a pickled learner names)
from fastmask.data.augment import Albumentations, reseed
from fastmask.errors import FastmaskError
from fastmask.io import atomic_write, replacing
from fastmask.labels import CLASS_NAMES, N_CLASSES
from fastmask.learn import heads, losses, metrics  # noqa: F401  (likewise)
from fastmask.models import model_files as safe_model
from fastmask.models.model_files import SUFFIXES, files
from fastmask.store.folder import CONFIG, MODEL_PKL, MODEL_SAFETENSORS, RECIPE_FILE, STATUS

PICKLE_GLOB, SAFE_GLOB = "fold*.pkl", "fold*.safetensors"


# ---------------------------------------------------------------------------------------------
# Finding and loading exported learners
# ---------------------------------------------------------------------------------------------
def expand(source, trust_pickle=False):
    """The model files a command-line source names: a file itself, or a run folder's fold models
    (fold0, fold1, ...) or else its model, as .safetensors; as .pkl only when the folder holds no
    safetensors and `trust_pickle` is set."""
    p = Path(source)
    if not p.is_dir():
        if not p.exists():
            raise FastmaskError(f"{p}: no such model file or run folder")
        return [p]
    safe = _run_models(p, SAFE_GLOB, MODEL_SAFETENSORS)
    if safe:
        return safe
    pickles = _run_models(p, PICKLE_GLOB, MODEL_PKL)
    if pickles and trust_pickle:
        return pickles
    if pickles:
        raise FastmaskError(f"{p}: holds only pickled models ({pickles[0].name}), and a pickle runs code when "
                            "opened: pass --trust-pickle if you trust this folder")
    raise FastmaskError(f"{p}: no model.safetensors, fold*.safetensors, model.pkl or fold*.pkl in this folder")


def _run_models(folder, fold_glob, single):
    folds = sorted(folder.glob(fold_glob), key=lambda f: (len(f.name), f.name))
    if folds:
        return folds
    return [folder / single] if (folder / single).is_file() else []


def is_safe(path):
    return Path(path).suffix in SUFFIXES


def load(path, device=None, trust_pickle=False):
    """The fastai learner in `path`: a .safetensors/.json pair rebuilt without unpickling, or, only with
    `trust_pickle`, an exported learner (any other file is a pickle). FastmaskError naming the file when
    it is not one, or when it is a pickle not trusted."""
    path = Path(path)
    if not path.is_file():
        raise FastmaskError(f"{path}: no such model file")
    if is_safe(path):
        learn = safe_model.load(path)
    elif trust_pickle:
        learn = load_pickle(path)
    else:
        raise FastmaskError(refusal(path))
    if not isinstance(learn, Learner):
        raise FastmaskError(f"{path}: not a fastai learner export (holds a {type(learn).__name__})")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device) != "cpu":
        learn.dls.to(torch.device(device))
        learn.model.to(torch.device(device))
    return learn


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
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FastmaskError(f"{path}: not a fastai learner export ({type(e).__name__}: {reason[:160]})") from None


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


def class_codes(learn, path="model"):
    """The learner's vocabulary as class ids: class names (learners since the names) or the ids themselves
    (older ones); FastmaskError unless it is the 18 classes, each once."""
    try:
        vocab = list(learn.dls.vocab)
    except Exception:
        raise FastmaskError(f"{path}: the learner has no class vocabulary (dls.vocab)") from None
    ids = {name: i for i, name in enumerate(CLASS_NAMES)}
    codes = [ids.get(v, v) if isinstance(v, str) else v for v in vocab]
    if (any(isinstance(c, (str, bool)) or not isinstance(c, (int, np.integer)) for c in codes)
            or len(codes) != N_CLASSES or sorted(codes) != list(range(N_CLASSES))):
        raise FastmaskError(f"{path}: class vocabulary {vocab[:4]}... is not the 18 classes (their names, or ids 0..17)")
    return [int(c) for c in codes]


@dataclass
class Model:
    path: Path
    learn: object
    codes: list
    weight: float = 1.0


def load_models(sources, weights=None, device=None, trust_pickle=False):
    """Load every model the sources name and check they share one class code (a run folder's folds
    share their source's weight equally). Fails on the first bad file, before any prediction; a
    pickle fails unless `trust_pickle`."""
    sources = list(sources)
    if not sources:
        raise FastmaskError("no models given")
    if weights is not None:
        if len(weights) != len(sources):
            raise FastmaskError(f"--weights: {len(weights)} weight(s) for {len(sources)} model source(s)")
        if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise FastmaskError(f"--weights: {','.join(map(str, weights))} must be >= 0 with a positive sum")
    models = []
    for i, src in enumerate(sources):
        files = expand(src, trust_pickle)
        w = 1.0 if weights is None else float(weights[i])
        for f in files:
            learn = load(f, device, trust_pickle)
            codes = class_codes(learn, f)
            if models and codes != models[0].codes:
                i = next(j for j, (a, b) in enumerate(zip(codes, models[0].codes)) if a != b)
                raise FastmaskError(f"{f}: class vocabulary differs from {models[0].path}'s (position {i}: "
                                    f"{codes[i]} vs {models[0].codes[i]}); models with different class codes "
                                    "cannot be ensembled")
            models.append(Model(Path(f), learn, codes, w / len(files)))
    return models


# ---------------------------------------------------------------------------------------------
# Predicting
# ---------------------------------------------------------------------------------------------
def _hflip_transform():

    class HFlip(Transform):
        """Mirror images left-right; training split only, so it runs in TTA's augmented passes."""
        split_idx, order = 0, 99

        def encodes(self, x: TensorImage):
            return x.flip(-1)
    return HFlip()


def train_only_tfms(dl):
    """Transforms of `dl` that run on the training side only (what TTA switches on)."""
    return [t for t in (*dl.after_item.fs, *dl.after_batch.fs) if getattr(t, "split_idx", None) == 0]


def tta_dl(dl):
    """`dl` ready for TTA: albumentations reseeded (the same call gives the same numbers), and a
    horizontal flip added when the pipeline has no training-only transform (else TTA is a no-op).
    Returns (dl, augmented passes that differ from each other)."""
    extra = train_only_tfms(dl)
    for t in extra:
        if isinstance(t, Albumentations):
            reseed(t.tfm, t.seed)
    if extra:
        return dl, None
    return dl.new(after_batch=[*dl.after_batch.fs, _hflip_transform()]), 1


def predict_probs(learn, paths, tta=0, bs=None):
    """(n, classes) probabilities for image paths, in order. tta=0: one plain pass (exactly
    `get_preds` on `test_dl`); tta=N: fastai's `learn.tta(dl, n=N)` (see the module docstring)."""
    if tta < 0:
        raise FastmaskError(f"--tta: {tta} is negative")
    kw = {"num_workers": 0, **({"bs": bs} if bs else {})}
    dl = learn.dls.test_dl(list(map(str, paths)), **kw)
    with learn.no_bar(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if tta == 0:
            probs, _ = learn.get_preds(dl=dl)
        else:
            dl, passes = tta_dl(dl)
            probs, _ = learn.tta(dl=dl, n=passes or tta)
    return probs.float().cpu().numpy()


def soft_vote(tables, weights=None):
    """Weighted mean of probability tables (n, classes)."""
    tables = np.stack([np.asarray(t, dtype=np.float64) for t in tables])
    w = np.ones(len(tables)) if weights is None else np.asarray(weights, dtype=np.float64)
    return np.tensordot(w / w.sum(), tables, axes=1)


def hard_vote(tables, weights=None):
    """Class positions by (weighted) majority of each table's argmax; ties go to the class with the
    higher soft vote."""
    tables = np.stack([np.asarray(t, dtype=np.float64) for t in tables])
    w = np.ones(len(tables)) if weights is None else np.asarray(weights, dtype=np.float64)
    votes = np.zeros(tables.shape[1:])
    rows = np.arange(tables.shape[1])
    for t, wi in zip(tables, w):
        np.add.at(votes, (rows, t.argmax(1)), wi)
    soft = soft_vote(tables, w)
    top = votes == votes.max(1, keepdims=True)
    return np.where(top, soft, -np.inf).argmax(1)


def vote(tables, weights=None, how="soft"):
    """Class positions from several probability tables: "soft" (mean probabilities) or "hard"."""
    if how == "soft":
        return soft_vote(tables, weights).argmax(1)
    if how == "hard":
        return hard_vote(tables, weights)
    raise FastmaskError(f"--vote: {how!r} is not soft or hard")


@dataclass
class Prediction:
    models: list
    tables: list = field(default_factory=list)  # one (n, 18) probability table per model
    ans: Optional[np.ndarray] = None             # class ids, one per image


def predict(models, paths, tta=0, how="soft", bs=None, progress=True):
    """Every model's probabilities for `paths` and the ensemble's class ids, with a progress bar over models."""
    out = Prediction(models)
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=Console(stderr=True), disable=not progress, transient=False) as bar:
        task = bar.add_task(f"predicting {len(paths)} images" + (f", TTA {tta}" if tta else ""), total=len(models))
        for m in models:
            out.tables.append(predict_probs(m.learn, paths, tta=tta, bs=bs))
            bar.advance(task)
    pos = vote(out.tables, [m.weight for m in models], how)
    out.ans = np.asarray(models[0].codes)[pos]
    return out


# ---------------------------------------------------------------------------------------------
# The evaluation folder and the submission file
# ---------------------------------------------------------------------------------------------
def eval_root(path):
    """The folder holding info.csv: `path` itself or its eval/ (a download or twin root)."""
    p = Path(path)
    if not p.exists():
        raise FastmaskError(f"--eval {p}: no such folder")
    if (p / "info.csv").is_file():
        return p
    if (p / "eval" / "info.csv").is_file():
        return p / "eval"
    raise FastmaskError(f"--eval {p}: holds neither info.csv nor eval/info.csv")


def submission_text(ids, ans):
    ans = np.asarray(ans)
    if len(ids) != len(ans) or not np.issubdtype(ans.dtype, np.integer) or ans.min() < 0 or ans.max() >= N_CLASSES:
        raise ValueError("a submission needs one class id 0..17 per ImageID")
    return pd.DataFrame({"ImageID": list(ids), "ans": ans.astype(int)}).to_csv(index=False)


def check_out(path):
    """FastmaskError naming `path` as given unless a submission can be written there: not a folder, and
    its folder (or, when that is still to be made, the nearest one above it) a writable folder."""
    p = Path(path)
    if p.is_dir():
        raise FastmaskError(f"--out {path}: is a folder; name the file to write, e.g. {p / 'submission.csv'}")
    above = p.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise FastmaskError(f"--out {path}: {above} is a file, not a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise FastmaskError(f"--out {path}: cannot write in {above} (permission denied or read-only)")


def check_out_reads(out, sources, eval_dir, trust_pickle=False):
    """FastmaskError naming both paths when the submission would land on something predict reads or a run
    keeps: a model file named (or its .json/.safetensors/.pkl companions), any file of a run folder, or any
    file of the eval folder. Symlinks are followed, so another name for the same file is caught too."""
    target = Path(out).resolve()

    def clash(path, what):
        raise FastmaskError(f"--out {out}: would overwrite {what} {path}; write the submission elsewhere")

    root = Path(eval_dir).resolve()
    if root == target or root in target.parents:
        clash(eval_dir, "a file of the eval folder")
    for src in sources:
        for f in expand(src, trust_pickle=True):  # every file a source could mean, trusted or not
            for mate in (*files(f.with_suffix("")), f.with_suffix(".pkl"), f):
                if mate.resolve() == target:
                    clash(mate, "the model file")
    for above in target.parents:
        if (above / STATUS).is_file() or ((above / CONFIG).is_file() and (above / RECIPE_FILE).is_file()):
            clash(above, "a file of the run folder")


def write_submission(ids, ans, path):
    """`ImageID,ans` (info.csv order) written atomically: an interrupted write leaves no half file.
    Its folder is made when missing. A failed write names `path`, not the temp file."""
    path = Path(path)
    text = submission_text(ids, ans)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
    except OSError as e:
        raise FastmaskError(f"--out {path}: {e.strerror}") from None
    return path

"""Model files -> fastai learners: the files a command-line source names (a file, or a run folder's models),
each opened without unpickling unless trusted, checked to share one class code for an ensemble.

A run folder holds each model twice: STEM.safetensors + STEM.json (`fastmask.models.model_files`: tensors and
plain values, rebuilt by this package's code) and STEM.pkl (fastai's `learn.export`, for `load_learner`). A
.safetensors/.json path, or a run folder holding them, unpickles nothing; a pickle is opened only with
`trust_pickle` (`fastmask.models.pickles`)."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastai.learner import Learner

from fastmask.errors import FastmaskError
from fastmask.labels import CLASS_NAMES, N_CLASSES
from fastmask.models import model_files as safe_model
from fastmask.models.model_files import SUFFIXES
from fastmask.models.pickles import load_pickle, refusal
from fastmask.store.folder import MODEL_PKL, MODEL_SAFETENSORS

PICKLE_GLOB, SAFE_GLOB = "fold*.pkl", "fold*.safetensors"


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

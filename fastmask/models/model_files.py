"""A model file that is not code: STEM.safetensors (the weights) and STEM.json (what rebuilds the learner).

`model.pkl` is a pickle, and opening a pickle runs whatever code it names. These two files hold only
tensors and plain values: the recipe's fields, the class vocabulary, the image size and crop, the
normalisation stats the learner used, and its training-side albumentations pipeline (as
albumentations' own dict, for TTA). `load` rebuilds the learner with this package's code
(`fastmask.learn.build.build_learner`, untrained, no pretrained weights) and loads the weights into it, so
it predicts what the pickled learner predicts, through the same `fastmask.models.predict` functions.

The JSON names no weights file: STEM.json always pairs with STEM.safetensors beside it, so a run
folder can link fold0.* as model.* and a copied pair keeps working. The JSON does carry the weights'
sha256, so a pair mixed up from two runs fails by name instead of predicting nonsense."""
import hashlib
import importlib.metadata as md
import json
from pathlib import Path

import albumentations as A
import numpy as np
from fastai.data.transforms import IntToFloatTensor, Normalize, ToTensor
from fastai.learner import defaults
from safetensors import SafetensorError
from safetensors.torch import load as from_bytes, save as to_bytes

from fastmask.data.augment import Albumentations
from fastmask.data.cache import Prepare
from fastmask.data.dls import predictor_dls
from fastmask.errors import FastmaskError, one_line
from fastmask.io import atomic_write
from fastmask.learn.build import build_learner
from fastmask.recipe import _FIELD_NAMES, Recipe, _plain, coerce
from fastmask.store.folder import write_json

FORMAT = "fastmask-safe-model"
VERSION = 1
SUFFIXES = (".safetensors", ".json")


def files(path):
    """(STEM.json, STEM.safetensors) for either of the two paths."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in SUFFIXES else path
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------
def save(learn, recipe, stem):
    """Write STEM.safetensors and STEM.json for `learn`, trained from `recipe`. Each file is written
    through a temp name (see fastmask.io.atomic_write); the weights go first, as the JSON carries their hash."""

    spec = describe(learn, recipe)  # fails on a pipeline it cannot describe, before writing anything
    spec_path, weights_path = files(stem)
    weights = {k: v.detach().cpu().contiguous() for k, v in learn.model.state_dict().items()}
    blob = to_bytes(weights, metadata={"format": FORMAT})
    atomic_write(weights_path, blob, mode="wb")
    try:
        write_json(spec_path, {**spec, "weights_sha256": hashlib.sha256(blob).hexdigest()})
    except BaseException:  # weights without their description would only be found and then refused
        weights_path.unlink(missing_ok=True)
        raise
    return spec_path, weights_path


def describe(learn, recipe):
    """The JSON-able description of `learn` that `load` rebuilds it from."""
    prep = _prepare_of(learn.dls)
    _check_pipeline(learn.dls)
    return {"format": FORMAT, "version": VERSION, "recipe_name": recipe.name,
            "recipe": {k: _plain(v) for k, v in recipe.fields().items()},
            "vocab": [v.item() if hasattr(v, "item") else v for v in learn.dls.vocab],
            "size": list(prep.size), "crop": prep.crop,
            # a face crop's box for photos with no face found (the training photos' typical box)
            **({"face_fallback": list(prep.fallback)} if getattr(prep, "fallback", None) else {}),
            "normalize": _normalize_stats(learn.dls), "augment": _augment_spec(learn.dls),
            "versions": _versions()}


def _prepare_of(dls):
    tfms = dls.valid_ds.tls[0].tfms.fs
    prep = next((t for t in tfms if isinstance(t, Prepare)), None)
    if prep is None:
        raise FastmaskError("the learner's images are not read by fastmask.data.cache.Prepare: "
                            "only learners built by fastmask can be saved without a pickle")
    return prep


def _check_pipeline(dls):
    """Refuse transforms `load` would not rebuild: a rebuilt learner that silently skipped one would
    predict something else."""

    known = (ToTensor, Albumentations, IntToFloatTensor, Normalize)
    odd = [type(t).__name__ for t in (*dls.after_item.fs, *dls.after_batch.fs) if not isinstance(t, known)]
    if odd:
        raise FastmaskError(f"cannot describe the transform(s) {', '.join(odd)} without a pickle")


def _normalize_stats(dls):
    norms = [t for t in dls.after_batch.fs if isinstance(t, Normalize)]
    if len(norms) != 1:
        raise FastmaskError(f"the learner has {len(norms)} Normalize transforms; a fastmask learner has one")
    return {"mean": norms[0].mean.flatten().tolist(), "std": norms[0].std.flatten().tolist()}


def _augment_spec(dls):
    """The training-side albumentations pipeline and its seed (what TTA runs), or None."""

    albus = [t for t in dls.after_item.fs if isinstance(t, Albumentations)]
    if not albus:
        return None
    if len(albus) > 1:
        raise FastmaskError("the learner has several albumentations pipelines; a fastmask learner has one")
    try:
        pipeline = A.to_dict(albus[0].tfm)
    except (NotImplementedError, ValueError) as e:
        raise FastmaskError(f"the albumentations pipeline cannot be serialised ({e})") from None
    return {"seed": albus[0].seed, "albumentations": pipeline}


def _versions():
    out = {}
    for pkg in ("fastmask", "fastai", "timm", "torch", "albumentations"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def load(path):
    """The fastai Learner STEM.json + STEM.safetensors describe (either path), on the CPU, with only
    fastai's default callbacks; FastmaskError naming the file when the pair is not one."""
    spec_path, weights_path = files(path)
    spec = read_spec(spec_path)
    state = _read_weights(weights_path, spec, spec_path)
    learn = _learner(spec, _recipe(spec, spec_path), spec_path)
    _load_weights(learn.model, state, weights_path, spec_path)
    return learn


def read_spec(spec_path):
    """The JSON's content, checked to be a fastmask model description this version reads."""
    if not spec_path.is_file():
        raise FastmaskError(f"{spec_path}: no such model description (STEM.json beside STEM.safetensors)")
    try:
        spec = json.loads(spec_path.read_text())
    except (ValueError, OSError) as e:
        raise FastmaskError(f"{spec_path}: not a fastmask model file ({one_line(e)})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise FastmaskError(f"{spec_path}: not a fastmask model file (no \"format\": \"{FORMAT}\")")
    if spec.get("version") != VERSION:
        raise FastmaskError(f"{spec_path}: model file version {spec.get('version')!r}; this fastmask reads "
                            f"version {VERSION}")
    missing = [k for k in ("recipe", "vocab", "size", "crop", "normalize", "augment") if k not in spec]
    if missing:
        raise FastmaskError(f"{spec_path}: model file lacks {', '.join(missing)}")
    return spec


def _read_weights(weights_path, spec, spec_path):
    """The state dict in STEM.safetensors, checked against the hash STEM.json recorded."""
    if not weights_path.is_file():
        raise FastmaskError(f"{spec_path}: its weights {weights_path.name} are not beside it")
    blob = weights_path.read_bytes()
    want = spec.get("weights_sha256")
    if want and hashlib.sha256(blob).hexdigest() != want:
        raise FastmaskError(f"{weights_path}: not the weights {spec_path.name} was saved with (sha256 differs); "
                            "were the two files copied from different runs?")
    try:
        return from_bytes(blob)
    except (SafetensorError, ValueError) as e:
        raise FastmaskError(f"{weights_path}: not a safetensors file ({e})") from None


def _recipe(spec, spec_path):
    """The recipe the JSON records, as a predictor needs it: no pretrained weights to fetch, no cache
    to build, and no augmentation field (the pipeline itself is rebuilt from the JSON's dict)."""
    fields = spec["recipe"] if isinstance(spec["recipe"], dict) else {}
    # Fields this version does not know are left out: loading the weights strictly is what tells
    # whether the model they describe is the one rebuilt here.
    known = {k: v for k, v in fields.items() if k in _FIELD_NAMES}
    known.update(pretrained=False, cache=False, augment="none")
    try:
        return Recipe(**known)
    except FastmaskError as e:
        raise FastmaskError(f"{spec_path}: {e}") from None


def _learner(spec, recipe, spec_path):
    dls = _dls(spec, recipe, spec_path)
    # the body is built for the size its images are fed at, as it was trained (a ViT's position embeddings,
    # a Swin's windows): the saved size, whatever the recipe fields say
    recipe = recipe.variant(size=coerce("size", spec["size"]))
    return drop_training_cbs(build_learner(recipe, dls, notify=lambda *a: None, train=False))


def drop_training_cbs(learn):
    """`learn` with only fastai's default callbacks. Prediction needs no other: what else a recipe
    puts on a learner (CutMix, precision, early stopping, keep-best, loggers) is for training, and a
    predictor that ran it could write files or change its outputs."""
    learn.remove_cbs([cb for cb in learn.cbs if type(cb) not in defaults.callbacks])
    return learn


def _dls(spec, recipe, spec_path):
    """DataLoaders with the exported learner's pipeline (data.dls.predictor_dls): the saved size, crop,
    vocabulary order, Normalize and training-side albumentations, each checked first."""
    try:
        # size and crop are recipe fields: checked as a recipe file's are (a negative crop flips the image)
        size, crop, vocab = coerce("size", spec["size"]), coerce("crop", spec["crop"]), list(spec["vocab"])
        mean, std = ([float(x) for x in spec["normalize"][k]] for k in ("mean", "std"))
        if not all(np.isfinite(mean)) or not all(np.isfinite(std)) or min(std) <= 0:
            # a zero std divides every pixel into inf: one class predicted for everything
            raise FastmaskError(f"{spec_path}: normalize std {std} and mean {mean} must be finite with std > 0")
        norm = Normalize.from_stats(mean, std, cuda=False)
        augment = _augment_tfms(spec["augment"])
        fallback = spec.get("face_fallback")
        if fallback is not None:
            fallback = [float(x) for x in fallback]
            if len(fallback) != 4 or not all(0 <= x <= 1 for x in fallback) or not (
                    fallback[0] < fallback[2] and fallback[1] < fallback[3]):
                raise FastmaskError(f"{spec_path}: face_fallback {fallback} is not a box inside the photo")
    except FastmaskError as e:
        raise FastmaskError(str(e) if str(e).startswith(str(spec_path)) else f"{spec_path}: {e}") from None
    except (TypeError, KeyError, ValueError, IndexError) as e:
        raise FastmaskError(f"{spec_path}: malformed model file ({one_line(e)})") from None
    return predictor_dls(size, crop, vocab, norm, augment, recipe.bs, fallback)


def _augment_tfms(aug):
    if aug is None:
        return []

    # from_dict instantiates only albumentations' registered transform classes with plain values
    return [Albumentations(A.from_dict(aug["albumentations"]), seed=int(aug["seed"]))]


def _load_weights(model, state, weights_path, spec_path):
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise FastmaskError(f"{weights_path}: the weights do not fit the model {spec_path.name} describes "
                            f"({' '.join(first[1:2] or first[:1]).strip()[:200]})") from None
    model.eval()

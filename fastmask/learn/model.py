"""timm bodies through fastai: arch checks and where pretrained weights come from."""
import difflib
import os
import socket
import threading
from pathlib import Path
from typing import NamedTuple

import timm

from fastmask.errors import FastmaskError


def check_arch(arch):
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise FastmaskError(f"recipe field arch: unknown timm model {arch!r}{hint}")


def _online(host="huggingface.co", timeout=2.0):
    # DNS can hang past socket timeouts in a sandbox, so the probe runs in a thread we stop waiting for.
    ok = []
    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def _cached_file(arch, offline):
    """The local path of `arch`'s default pretrained weights, downloading only when not `offline`."""
    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        import huggingface_hub
        from huggingface_hub import constants
        old = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = offline or old
        try:
            for fname in ("model.safetensors", "pytorch_model.bin"):
                try:
                    return Path(huggingface_hub.hf_hub_download(cfg.hf_hub_id.split("@")[0], fname,
                                                                revision=cfg.hf_hub_id.partition("@")[2] or None))
                except Exception:
                    continue
        finally:
            constants.HF_HUB_OFFLINE = old
    if cfg.url:
        import torch.hub
        f = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if f.is_file():
            return f
        if not offline:
            torch.hub.download_url_to_file(cfg.url, str(f), progress=True)
            return f
    return None


# (arch, "auto" or True, HF_HUB_OFFLINE) -> (file, notice): a run builds a learner per fold, seed and trial, and
# each would otherwise probe the network (2.5 s offline) and search the caches again
_RESOLVED = {}


def resolve_weights(arch, pretrained):
    """(weights file or None, notice or None) for a recipe's `pretrained` field, found once per process.

    "auto": a cached or downloadable ImageNet file, else from scratch with a notice; True: the same but
    failing when none is found; a path: that file; False: from scratch."""
    if pretrained is False or pretrained is None:
        return None, None
    if isinstance(pretrained, (str, Path)) and str(pretrained) != "auto":
        return _resolve(arch, pretrained)  # a file: nothing to probe
    key = (arch, str(pretrained), os.environ.get("HF_HUB_OFFLINE", ""))
    if key not in _RESOLVED:
        _RESOLVED[key] = _resolve(arch, pretrained)
    return _RESOLVED[key]


def _resolve(arch, pretrained):
    if isinstance(pretrained, (str, Path)) and str(pretrained) != "auto":
        p = Path(pretrained).expanduser()
        if not p.is_file():
            raise FastmaskError(f"recipe field pretrained: weights file {p} not found")
        return p, None
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or not _online()
    f = _cached_file(arch, offline=True) or (None if offline else _cached_file(arch, offline=False))
    if f is not None:
        return f, None
    if pretrained is True:
        raise FastmaskError(f"recipe field pretrained: no ImageNet weights for {arch} in the local cache and no "
                            f"network; pass a file with --set pretrained=/path/to/{arch}.safetensors")
    return None, f"no pretrained weights for {arch} found offline: training from scratch (pretrained=False)"


# ---------------------------------------------------------------------------------------------
# The input size: what timm needs to build `arch` for the recipe's (height, width)
# ---------------------------------------------------------------------------------------------
def skeleton(arch, **kw):
    """`arch` built on the meta device: shapes and attributes without memory or weight init (a ViT-B in
    0.3 s instead of 2 s); the real build is the fallback for models whose constructor reads a tensor."""
    import torch
    try:
        with torch.device("meta"):
            return timm.create_model(arch, pretrained=False, num_classes=0, **kw)
    except Exception:  # noqa: BLE001  (.item() on a meta tensor and the like: the constructor's, not a size's)
        return timm.create_model(arch, pretrained=False, num_classes=0, **kw)


def _accepts_img_size(cls):
    """Whether the constructor takes `img_size`, following `**kwargs` up the classes it is passed on to
    (LeViT's distilled variant takes *args, **kwargs for its parent's img_size)."""
    import inspect
    for c in cls.__mro__:
        init = vars(c).get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        if "img_size" in params:
            return True
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return False
    return False


class Traits(NamedTuple):
    takes_size: bool      # the constructor takes img_size
    channels_last: bool   # forward_features gives (batch, height, width, channels)
    default: tuple        # the (height, width) its pretrained config names: a size it always takes
    steps: tuple          # side lengths to search in multiples of: 8, and its patch size if it has one


_TRAITS = {}  # arch -> Traits, read from one meta-device build per process


def _traits(arch):
    if arch not in _TRAITS:
        m = skeleton(arch)
        patch = getattr(getattr(m, "patch_embed", None), "patch_size", None)
        patch = [int(p) for p in patch] if isinstance(patch, (tuple, list)) else [int(patch)] if patch else []
        _TRAITS[arch] = Traits(_accepts_img_size(type(m)), getattr(m, "output_fmt", "NCHW") == "NHWC",
                               tuple((m.pretrained_cfg.get("input_size") or (3, 224, 224))[-2:]),
                               tuple(sorted({8, *patch})))
    return _TRAITS[arch]


def timm_kwargs(arch, size, weights=None):
    """What `timm.create_model` needs beyond the name to build `arch` for the recipe: every place that builds
    the body (each head, the model rebuilt for prediction) passes these, so all are built alike.

    - `img_size`: transformers (ViT, DeiT, Swin, EVA, MaxViT, CoAtNet, ...) are built for one input size
      (position embeddings, attention windows); CNNs take any size and have no such argument.
    - `pool_size=None`: a body whose features are channels-last (Swin, MambaOut) is run whole, pooled by timm,
      because fastai's head pools a channels-first map and would pool the wrong axes.
    - `file`: local weights, loaded by timm's own filter, which resamples position embeddings to `img_size`."""
    traits = _traits(arch)
    kw = {"img_size": tuple(size)} if traits.takes_size else {}
    overlay = {**({"file": str(weights)} if weights else {}), **({"pool_size": None} if traits.channels_last else {})}
    if overlay:
        kw["pretrained_cfg_overlay"] = overlay
    return kw


def _runs_at(arch, size):
    """Whether `arch`, built for `size`, gets a batch of one through: on the meta device (shapes only, no
    weights: 0.1-0.5 s), on the CPU only when the meta device itself is what failed."""
    import torch
    for device in ("meta", "cpu"):
        try:
            with torch.device(device), torch.no_grad():
                m = timm.create_model(arch, pretrained=False, num_classes=0, **timm_kwargs(arch, size)).eval()
                m(torch.zeros(1, 3, *size))
            return True
        except Exception as e:  # noqa: BLE001  (a size it cannot take raises anything: assert, shape, view errors)
            if not _meta_only(e):
                return False
    return False


def _meta_only(e):
    """An error of meta tensors (.item(), an op without a meta kernel), not of the size."""
    return isinstance(e, NotImplementedError) or "meta" in str(e).lower()


def _side_candidates(side, steps):
    """Side lengths to try instead of `side`, nearest first (a tie: the larger, which loses no pixels):
    multiples of each step within 64 pixels, at most 12 (each try is a model build)."""
    near = {s for step in steps for s in range(step, side + 65, step) if abs(s - side) <= 64}
    return sorted(near - {side}, key=lambda s: (abs(s - side), -s))[:12]


def _nearest_side(arch, size, i):
    """The length nearest size[i] that side i of `arch` takes, the other side at the model's default."""
    traits = _traits(arch)
    for s in (size[i], *_side_candidates(size[i], traits.steps)):
        trial = list(traits.default)
        trial[i] = s
        if _runs_at(arch, tuple(trial)):
            return s
    return None


def _nearest_size(arch, size):
    """The (height, width) nearest `size` that `arch` runs at, each side searched on its own; else the nearest
    square (a model that takes only squares); else the model's default size."""
    found = (_nearest_side(arch, size, 0), _nearest_side(arch, size, 1))
    if None not in found and _runs_at(arch, found):
        return found
    side = max(size)
    squares = ((s, s) for s in (side, *_side_candidates(side, _traits(arch).steps)))
    return next((sq for sq in squares if _runs_at(arch, sq)), _traits(arch).default)


_SIZE_OK = {}  # (arch, size) -> None, or the line saying which size to use: checked once per process


def check_size(arch, size):
    """FastmaskError, before any data is read, when `arch` cannot run at the recipe's `size` (height, width),
    naming the nearest size it can. Cheap when it fits (a meta-device build and forward, no weights), and
    asked once per (arch, size) however many folds, seeds or trials build it."""
    size = tuple(int(s) for s in size)
    key = (arch, size)
    if key not in _SIZE_OK:
        _SIZE_OK[key] = None if _runs_at(arch, size) else _size_line(arch, size, _nearest_size(arch, size))
    if _SIZE_OK[key]:
        raise FastmaskError(_SIZE_OK[key])


def _size_line(arch, size, nearest):
    hw = ",".join(map(str, nearest))
    return (f"recipe field size: {arch} cannot run at {size[0]},{size[1]} (height,width); "
            f"nearest size it takes: {hw} (--set size={hw})")

"""timm bodies through fastai: arch checks and where pretrained weights come from."""
import difflib
import os
import socket
import threading
from pathlib import Path

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

"""Decode and resize each image once: a uint8 memory-mapped array per (roster, size, crop), reused by
every later run and recipe, and the fastai type transform that reads it.

`Prepare` is the image block's type transform: path -> PILImage already cropped and resized. Training
and validation items come from the cache; anything else (an eval image through `test_dl`, a learner
reloaded elsewhere) is prepared from disk by the same function, so cached and uncached pixels agree.
Augmentation still runs per epoch on the cached pixels."""
import hashlib
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from fastai.vision.core import PILImage
from fasttransform import Transform
from PIL import Image

from .data import load_image

VERSION = 1  # bump when `prepare` changes what it produces


def cache_dir():
    return Path(os.environ.get("FASTMASK_CACHE", Path.home() / ".cache" / "fastmask"))


def prepare(path, size, crop=None):
    """(height, width, 3) uint8: the centre `crop` fraction (if any), squished to `size` (height, width)."""
    im = load_image(path)
    if crop:
        w, h = im.size
        ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
        top, left = (h - ch) // 2, (w - cw) // 2
        im = im.crop((left, top, left + cw, top + ch))
    return np.asarray(im.resize((size[1], size[0]), Image.BILINEAR))


def _key(paths, size, crop):
    h = hashlib.sha1(f"{VERSION}|{tuple(size)}|{crop}".encode())
    for p in paths:  # the content fingerprint: a changed or replaced file changes the key
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _prepare_many(args):
    paths, size, crop = args
    return np.stack([prepare(p, size, crop) for p in paths])


def build(paths, size, crop=None, progress=True, workers=None):
    """The cached array for `paths` (memory-mapped, read-only), building it on first use."""
    paths = [str(p) for p in paths]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / f"{_key(paths, size, crop)}-{size[0]}x{size[1]}.npy"
    if f.exists():
        return np.load(f, mmap_mode="r")
    # Built under a private name and renamed: two runs building at once each finish a whole file.
    tmp = folder / f".{f.name}.{uuid.uuid4().hex}.tmp"
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), *size, 3))
    chunks = [paths[i:i + 64] for i in range(0, len(paths), 64)]
    workers = workers or min(4, os.cpu_count() or 1)
    try:
        with _bar(progress, len(paths), f"caching {len(paths)} images at {size[0]}x{size[1]}") as advance:
            with ProcessPoolExecutor(workers) if workers > 1 else _Serial() as pool:
                i = 0
                for block in pool.map(_prepare_many, [(c, tuple(size), crop) for c in chunks]):
                    arr[i:i + len(block)] = block
                    i += len(block)
                    advance(len(block))
        arr.flush()
        del arr
        os.replace(tmp, f)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return np.load(f, mmap_mode="r")


class _Serial:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    map = staticmethod(map)


class _bar:
    """A rich progress bar, or nothing."""
    def __init__(self, show, total, text):
        self.show, self.total, self.text = show, total, text

    def __enter__(self):
        if not self.show:
            return lambda n: None
        from rich.progress import Progress
        self.p = Progress(transient=True)
        self.p.start()
        t = self.p.add_task(self.text, total=self.total)
        return lambda n: self.p.advance(t, n)

    def __exit__(self, *a):
        if self.show:
            self.p.stop()
        return False


class Prepare(Transform):
    """Type transform: a path -> PILImage at `size` (height, width), from the cache when it holds it."""
    def __init__(self, size, crop=None, paths=None, array=None):
        super().__init__()
        self.size, self.crop = tuple(size), crop
        self.index = {str(p): i for i, p in enumerate(paths)} if array is not None else {}
        self.array = array

    def encodes(self, path: (str, Path)):
        i = self.index.get(str(path))
        return PILImage.create(np.array(self.array[i]) if i is not None else prepare(path, self.size, self.crop))

    def __getstate__(self):
        # An exported learner must not carry (or point at) the training cache: it prepares from disk.
        state = dict(self.__dict__)
        state.update(index={}, array=None)
        return state

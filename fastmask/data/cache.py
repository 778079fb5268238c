"""Decode and resize each image once: a uint8 memory-mapped array per (roster, size, crop), reused by
every later run and recipe, and the fastai type transform that reads it.

`Prepare` is the image block's type transform: path -> PILImage already cropped and resized. Training
and validation items come from the cache; anything else (an eval image through `test_dl`, a learner
reloaded elsewhere) is prepared from disk by the same function, so cached and uncached pixels agree.
Augmentation still runs per epoch on the cached pixels.

Each cache file `K-HxW.npy` has a manifest `K-HxW.npy.json` (shape, dtype, byte length, a checksum
of a sample of rows). A file that disagrees with its manifest, or has none, is rebuilt with a notice:
a killed build, a full disk or a stray `truncate` must cost one rebuild, not every later run."""
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
from fastai.data.transforms import Transform  # fasttransform's, as fastai exports it
from fastai.vision.core import PILImage
from PIL import Image, ImageOps
from rich.progress import Progress

from fastmask.data import faces
from fastmask.data.layout import load_image, to_rgb
from fastmask.errors import FastmaskError, one_line
from fastmask.io import cache_dir, pid_alive, replacing

VERSION = 2  # bump when `prepare` changes what it produces (2: EXIF orientation applied)
CHUNK = 64  # images per worker task
SAMPLE_ROWS = 16  # rows hashed into the manifest: enough to catch a zeroed or swapped file, cheap to read
STALE_AFTER = 6 * 3600  # seconds: a temp this old is a dead builder's even when its pid can't be checked
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def prepare(path, size, crop=None, box=None, fallback=None):
    """(height, width, 3) uint8: the centre `crop` fraction (if any), or for a face crop ("face[:margin]") the
    face `box` with its margin (found now when not given; `fallback` when none is found), squished to `size`
    (height, width)."""
    return fit_image(load_image(path), size, crop, box, fallback)


def fit_image(im, size, crop=None, box=None, fallback=None):
    """`prepare` for an image already in memory (RGB PIL)."""
    margin = faces.margin_of(crop)
    if margin is not None:
        box = box if box is not None else faces.detect_image(im) or fallback or faces.CENTRE
        im = im.crop(faces.crop_region(box, margin, *im.size))
    elif crop:
        w, h = im.size
        ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
        top, left = (h - ch) // 2, (w - cw) // 2
        im = im.crop((left, top, left + cw, top + ch))
    return np.asarray(im.resize((size[1], size[0]), Image.BILINEAR))


def _key(paths, size, crop, boxes=None):
    h = hashlib.sha1(f"{VERSION}|{tuple(size)}|{crop}".encode())
    for p in paths if boxes else ():  # a face crop: the boxes are part of what the pixels are
        h.update(repr(boxes.get(p)).encode())
    for p in paths:  # the content fingerprint: a changed or replaced file changes the key
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _prepare_many(args):
    paths, size, crop, boxes = args
    # a face crop's boxes are found before the build (boxes_for): a forked builder must never run the
    # detector (torch after fork can hang), so a photo without a box takes the centre box
    fallback = faces.CENTRE if faces.margin_of(crop) is not None else None
    return np.stack([prepare(p, size, crop, (boxes or {}).get(p, fallback)) for p in paths])


def build(paths, size, crop=None, progress=True, workers=None, boxes=None):
    """The cached array for `paths` (memory-mapped, read-only), building it on first use. `boxes`: a face
    crop's box per path."""
    paths = [str(p) for p in paths]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(folder)
    f = folder / f"{_key(paths, size, crop, boxes)}-{size[0]}x{size[1]}.npy"
    shape = (len(paths), *size, 3)
    if f.exists():
        problem = _damage(f, shape)
        if problem is None:
            return np.load(f, mmap_mode="r")
        print(f"fastmask: notice: cache file {f} was damaged ({problem}); rebuilding", file=sys.stderr)
        f.unlink(missing_ok=True)
    _check_room(f, len(paths), size)
    _write(f, paths, shape, crop, progress, workers, boxes)
    return np.load(f, mmap_mode="r")


def check_room(paths, size, crop=None):
    """FastmaskError naming the size and the cache folder unless the cache for `paths` at `size` is there or
    fits in the free space: a build that fills the disk half-way costs minutes and leaves nothing."""
    paths = [str(p) for p in paths]
    f = cache_dir() / f"{_key(paths, size, crop)}-{size[0]}x{size[1]}.npy"
    if not f.exists():
        _check_room(f, len(paths), size)


def _check_room(f, n, size):
    folder = f.parent
    need = n * size[0] * size[1] * 3 + 4096  # rows + the .npy header and manifest
    above = folder
    while not above.exists() and above != above.parent:
        above = above.parent
    free = shutil.disk_usage(above).free
    if need > free:
        raise FastmaskError(f"recipe field size: {size[0]},{size[1]} needs a {need / 1e9:.1f} GB image cache for "
                            f"{n} images, and {folder} has {free / 1e9:.1f} GB free; use a smaller size, "
                            "--set cache=false, or FASTMASK_CACHE=DIR on a larger disk")


def _write(f, paths, shape, crop, progress, workers, boxes=None):
    """Fill a private temp file and rename it to `f`: two runs building at once each finish a whole file.

    Rows go to the file by plain writes, a few chunks in flight at a time: the set is never held in memory
    (at 384x288 the real training set is 6.3 GB), and a memory map's dirty pages would count as ours."""
    size = shape[1:3]
    with replacing(f, _temp_name(f)) as tmp:
        header = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)  # sized, no rows yet
        offset = header.offset
        del header
        chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
        workers = workers or min(4, os.cpu_count() or 1)
        with _bar(progress, len(paths), f"caching {len(paths)} images at {size[0]}x{size[1]}") as advance, \
                _pool(workers) as pool, open(tmp, "r+b") as out:
            out.seek(offset)
            jobs = [(c, tuple(size), crop, {p: boxes[p] for p in c} if boxes else None) for c in chunks]
            for block in _bounded_map(pool, _prepare_many, jobs, 2 * workers):
                out.write(np.ascontiguousarray(block, dtype=np.uint8).tobytes())
                advance(len(block))
        arr = np.load(tmp, mmap_mode="r")
        digest = _sample_digest(arr)
        del arr
        # The manifest lands first, so a reader never meets a finished data file without one: a
        # manifest-less file can then only be damage (or an older fastmask), never a build in flight.
        _write_manifest(f, shape, tmp.stat().st_size, digest)


def _bounded_map(pool, fn, items, window):
    """`pool.map(fn, items)` in order with at most `window` results pending: Executor.map submits every item
    at once, and finished chunks would pile up in memory behind a slow one."""
    pending = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# ---------------------------------------------------------------- manifest: is this file whole?

def _manifest_path(f):
    return f.with_name(f.name + ".json")


def _sample_rows(n, middle=True):
    """First, last, evenly between, and (`middle`) the middle row itself, which the even spacing can step
    over. Manifests written before `middle` say so (no "sample_middle"), and keep their old sample: a changed
    rule must not cost every existing cache a rebuild."""
    rows = {int(round(x)) for x in np.linspace(0, n - 1, min(n, SAMPLE_ROWS))} if n else set()
    return sorted(rows | ({n // 2} if n and middle else set()))


def _sample_digest(arr, middle=True):
    h = hashlib.sha256()
    for i in _sample_rows(len(arr), middle):
        h.update(np.ascontiguousarray(arr[i]).tobytes())
    return h.hexdigest()


def _write_manifest(f, shape, nbytes, digest):
    m = _manifest_path(f)
    record = dict(version=VERSION, shape=list(shape), dtype="uint8", bytes=nbytes,
                  sample_rows=SAMPLE_ROWS, sample_middle=True, sample_sha256=digest)
    with replacing(m, _temp_name(m)) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def _read_manifest(f):
    """The manifest as a dict, or a short reason it can't be used."""
    try:
        m = json.loads(_manifest_path(f).read_text())
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError) as e:
        return f"unreadable manifest: {one_line(e, named=False)}"
    fields = ("version", "shape", "dtype", "bytes", "sample_rows", "sample_sha256")
    if not isinstance(m, dict) or any(k not in m for k in fields):
        return "manifest lacks fields"
    return m


def _damage(f, shape):
    """None when `f` agrees with its manifest and the expected shape, else the reason in a few words.

    Only a sample of rows is hashed: reading a multi-GB cache on every run would cost more than it saves."""
    m = _read_manifest(f)
    if isinstance(m, str):
        return m
    if m["version"] != VERSION or m["dtype"] != "uint8" or tuple(m["shape"]) != tuple(shape):
        return f"manifest is for version {m['version']}, {m['dtype']} {tuple(m['shape'])}"
    try:
        actual = f.stat().st_size
    except FileNotFoundError:  # a concurrent build found it damaged and removed it
        return "removed while being checked"
    if actual != m["bytes"]:
        return f"{actual} bytes, expected {m['bytes']}"
    try:
        arr = np.load(f, mmap_mode="r")
    except Exception as e:  # numpy raises ValueError, OSError... on a mangled header
        return f"not a readable array: {one_line(e, named=False)}"
    if arr.dtype != np.uint8 or arr.shape != tuple(shape):
        return f"holds {arr.dtype} {arr.shape}, expected uint8 {tuple(shape)}"
    if m["sample_rows"] != SAMPLE_ROWS or _sample_digest(arr, bool(m.get("sample_middle"))) != m["sample_sha256"]:
        return "sampled rows differ from the manifest checksum"
    return None


# ---------------------------------------------------------------- temps left by killed builders

_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{32}\.tmp$")


def _host():
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def _temp_name(target):
    # Host and pid in the name let a later build tell a dead builder's leftovers from a live one's.
    return target.with_name(f".{target.name}.{_host()}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def _stale(name, mtime, now):
    """A temp whose builder is gone: its pid is dead on this host, or it has not been touched for hours
    (another host's, or an older fastmask's without a pid)."""
    if now - mtime > STALE_AFTER:
        return True
    m = _TEMP.match(name)
    return bool(m) and m["host"] == _host() and pid_alive(int(m["pid"])) is False


def _clean_stale_temps(folder):
    now = time.time()
    with os.scandir(folder) as entries:
        for e in entries:
            if not (e.name.startswith(".") and e.name.endswith(".tmp")):
                continue
            try:
                if _stale(e.name, e.stat().st_mtime, now):
                    os.unlink(e.path)
            except FileNotFoundError:  # another build cleaned it first
                pass


# ---------------------------------------------------------------- workers that die with their builder

def _pool(workers):
    if workers <= 1:
        return _Serial()
    return ProcessPoolExecutor(workers, initializer=_die_with_parent, initargs=(os.getpid(),))


def _die_with_parent(parent):
    """Pool initializer. A killed builder (SIGKILL, OOM) never closes the queue its workers wait on,
    so without this they hang on forever holding memory."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if pid_alive(parent) is False:  # it died before the death signal was armed
        os._exit(1)
    # Elsewhere (and as a second line): poll. A daemon thread costs nothing while the parent lives.
    ppid = os.getppid()
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()


def _watch_parent(ppid):
    while os.getppid() == ppid:
        time.sleep(1)
    os._exit(1)


class _Serial:
    """One worker: each task runs where it is submitted."""
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    @staticmethod
    def submit(fn, *args):
        done = Future()
        done.set_result(fn(*args))
        return done


class _bar:
    """A rich progress bar, or nothing."""
    def __init__(self, show, total, text):
        self.show, self.total, self.text = show, total, text

    def __enter__(self):
        if not self.show:
            return lambda n: None
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
    def __init__(self, size, crop=None, paths=None, array=None, boxes=None, fallback=None):
        super().__init__()
        # fastai's test_dl skips type transforms whose input type the item does not match (infer_idx):
        # saying a PIL image is an input too keeps learn.predict(PILImage) from skipping the resize
        self.input_types = (str, Path, Image.Image)
        self.size, self.crop = tuple(size), crop
        self.index = {str(p): i for i, p in enumerate(paths)} if array is not None else {}
        self.array = array
        self.boxes = boxes or {}  # a face crop's boxes; a photo not here has its face found when prepared,
        self.fallback = tuple(fallback) if fallback else None  # or, when none is, the training photos' typical box

    def encodes(self, path: str | Path):
        i = self.index.get(str(path))
        if i is not None:
            return PILImage.create(np.array(self.array[i]))
        return PILImage.create(prepare(path, self.size, self.crop, self.boxes.get(str(path)), self.fallback))

    def encodes(self, im: Image.Image):  # noqa: F811  (fastcore dispatches on the type: a second method)
        # learn.predict(PILImage) must see what the same file's path gives: cropped and resized alike
        return PILImage.create(fit_image(to_rgb(ImageOps.exif_transpose(im)), self.size, self.crop,
                                         fallback=self.fallback))

    def __getstate__(self):
        # An exported learner must not carry (or point at) the training cache or boxes: it prepares from disk.
        state = dict(self.__dict__)
        state.update(index={}, array=None, boxes={})
        return state

    def __setstate__(self, state):
        self.__dict__.update({"boxes": {}, "fallback": None, **state})  # learners exported before face crops

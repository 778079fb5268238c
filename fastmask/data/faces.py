"""Face boxes for `crop="face"`: MTCNN (facenet-pytorch, the optional extra `[face]`; its wheel carries the
weights, so it works offline) finds each photo's face once; the boxes are kept beside the input cache,
keyed by the files like it. Masks hide faces from detectors, so a photo with no detection takes the box
found on the same person's other photos (seven photos taken in one sitting), and only then the typical box:
the median of every photo's detected box, which a model keeps for the photos it predicts (an eval photo has no
person to borrow from).

A box is (x0, y0, x1, y1) as fractions of the photo's width and height."""
import hashlib
import io
import os

import numpy as np

from fastmask.choices import face_margin as margin_of  # noqa: F401  (the one reader of "face[:margin]")
from fastmask.data.layout import load_image
from fastmask.errors import FastmaskError
from fastmask.io import atomic_write, cache_dir

CENTRE = (0.15, 0.1, 0.85, 0.8)           # when no photo at all had a face found: a head-and-shoulders framing
SOURCES = ("detected", "person", "typical")
VERSION = 1
_detector = None


def detector():
    """The MTCNN face detector on the CPU, made once per process."""
    global _detector
    if _detector is None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError:
            raise FastmaskError("recipe field crop: 'face' needs the face detector: pip install -c constraints.txt "
                                "-e '.[face]' (facenet-pytorch)") from None
        _detector = MTCNN(keep_all=False, select_largest=True, device="cpu", post_process=False)
    return _detector


def detect_image(im):
    """The largest face's box in the RGB PIL image `im` (fractions), or None."""
    boxes, _ = detector().detect(im)
    if boxes is None or not len(boxes):
        return None
    w, h = im.size
    x0, y0, x1, y1 = (float(v) for v in boxes[0])
    box = (max(0.0, x0 / w), max(0.0, y0 / h), min(1.0, x1 / w), min(1.0, y1 / h))
    return box if box[2] > box[0] and box[3] > box[1] else None


def detect(paths, progress=True):
    """(n, 4) boxes for the image files `paths`, NaN rows where no face was found; read from the cache
    folder when these files (same paths, sizes and times) were detected before."""
    paths = [str(p) for p in paths]
    h = hashlib.sha1(f"faces|{VERSION}".encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    f = cache_dir() / f"faces-{h.hexdigest()[:20]}.npy"
    if f.is_file():
        try:
            boxes = np.load(f)
            if boxes.shape == (len(paths), 4):
                return boxes
        except (OSError, ValueError):
            pass
    from rich.progress import track
    boxes = np.full((len(paths), 4), np.nan)
    for i, p in enumerate(track(paths, description="finding faces", disable=not progress, transient=True)):
        box = detect_image(load_image(p))
        if box is not None:
            boxes[i] = box
    f.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, boxes)
    atomic_write(f, buf.getvalue(), mode="wb")
    return boxes


def boxes_for(df, progress=True):
    """({path: box}, {source: count}, typical box) for every row of `df` (read_train's: path, person): the
    detected box, else the median of the person's detected boxes, else the typical box (the median of all
    detected boxes; CENTRE when none was found)."""
    paths = list(df["path"])
    found = detect(paths, progress)
    ok = ~np.isnan(found).any(axis=1)
    people = np.asarray(df["person"])
    by_person = {p: np.median(found[(people == p) & ok], axis=0) for p in set(people[ok])}
    typical = tuple(float(v) for v in np.median(found[ok], axis=0)) if ok.any() else CENTRE
    out, counts = {}, dict.fromkeys(SOURCES, 0)
    for path, person, box, hit in zip(paths, people, found, ok):
        if hit:
            out[path], source = tuple(float(v) for v in box), "detected"
        elif person in by_person:
            out[path], source = tuple(float(v) for v in by_person[person]), "person"
        else:
            out[path], source = typical, "typical"
        counts[source] += 1
    return out, counts, typical


def crop_region(box, margin, width, height):
    """The pixel region (left, top, right, bottom) a face crop takes: `box` grown by `margin` of its size on
    each side, kept inside the photo."""
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    left, top = max(0, round((x0 - mx) * width)), max(0, round((y0 - my) * height))
    right, bottom = min(width, round((x1 + mx) * width)), min(height, round((y1 + my) * height))
    return (left, top, max(right, left + 1), max(bottom, top + 1))


def iou(a, b):
    """Intersection over union of two boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix
    return ix / union if union > 0 else 0.0


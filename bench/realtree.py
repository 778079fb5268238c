"""Lay real face photos out as the competition's folders (train/ and eval/ with answers), for bench/realphotos.py.

The source folder holds `with_mask/` and `without_mask/` (as ../shared/realphotos does). Only the mask signal
is real: each made-up person gets five masked photos, one more masked photo as `incorrect_mask` (there are no
wrongly-worn photos, so that class is noise), one unmasked photo as `normal`, and a random gender and age.

The photos are split in two halves first (train pool / eval pool, by `seed`), so no photo, nor any variant of
one, is on both sides. A pool with fewer photos than its people need reuses them; a photo's first use is its
file as it came (format, mode and size kept: the loader meets every quirk), each later use a variant (mirrored
or not, re-cropped, slightly rotated and relit, saved as JPEG) so no two training files are the same picture.
"""
import csv
import hashlib
import random
import shutil
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

PHOTOS = [f"mask{i}" for i in range(1, 6)] + ["incorrect_mask", "normal"]
MASK_OF = {**{f"mask{i}": 0 for i in range(1, 6)}, "incorrect_mask": 1, "normal": 2}
EXTS = {".jpg", ".jpeg", ".png", ".webp"}


def photos(src):
    """(masked, unmasked) sorted file lists of the source folder."""
    src = Path(src)
    pick = lambda d: sorted(p for p in (src / d).iterdir() if p.suffix.lower() in EXTS)  # noqa: E731
    return pick("with_mask"), pick("without_mask")


def halves(files, rng):
    files = list(files)
    rng.shuffle(files)
    k = len(files) // 2
    return files[:k], files[k:]


class Pool:
    """Photos handed out without repeats until the pool is used up, then as variants."""
    def __init__(self, files, rng):
        self.files, self.rng, self.uses = list(files), rng, {}
        self.order = list(files)
        rng.shuffle(self.order)

    def take(self):
        if not self.order:
            self.order = list(self.files)
            self.rng.shuffle(self.order)
        f = self.order.pop()
        n = self.uses.get(f, 0)
        self.uses[f] = n + 1
        return f, n


def variant(src, dst, rng):
    """A different picture of the same photo: mirrored half the time, 80-100 % crop, +-8 degrees, relit."""
    with Image.open(src) as im:
        im.load()
        im = ImageOps.exif_transpose(im).convert("RGB")
    if max(im.size) > 1024:  # a 5,000 px original: the variant need not be as large
        im.thumbnail((1024, 1024))
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    w, h = im.size
    s = rng.uniform(0.8, 1.0)
    cw, ch = max(8, int(w * s)), max(8, int(h * s))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    im = im.crop((left, top, left + cw, top + ch)).rotate(rng.uniform(-8, 8), resample=Image.BILINEAR)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.85, 1.15))
    im.save(dst.with_suffix(".jpg"), quality=90)
    return dst.with_suffix(".jpg")


def place(pool, dst_stem, rng):
    """Write the pool's next photo at `dst_stem` (+ its extension); the written path."""
    f, n = pool.take()
    if n == 0:
        out = dst_stem.with_suffix(f.suffix.lower())
        shutil.copyfile(f, out)
        return out
    return variant(f, dst_stem, rng)


def _age(rng):
    # the published shape, coarsely: many 18-20, many 55-59, a spike at 60, few in between
    return rng.choice([18, 19, 19, 20, 20, 22, 25, 27, 33, 38, 45, 52, 55, 56, 57, 58, 58, 59, 60, 60])


def _label(mask, gender, age):
    return mask * 6 + (1 if gender == "female" else 0) * 3 + (0 if age < 30 else 1 if age < 60 else 2)


def lay_out(src, out, people, eval_people=None, seed=0):
    """Write `out/train` (`people` persons) and `out/eval` (with answers.csv) from the photos in `src`.

    `eval_people` defaults to as many as the eval pool's unmasked photos allow without reuse.
    Returns {"train": people, "eval": eval_people}."""
    rng = random.Random(seed)
    masked, unmasked = photos(src)
    m_train, m_eval = halves(masked, rng)
    u_train, u_eval = halves(unmasked, rng)
    eval_people = eval_people or min(len(u_eval), len(m_eval) // 6)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    images = out / "train" / "images"
    images.mkdir(parents=True)
    pools = {"m": Pool(m_train, rng), "u": Pool(u_train, rng)}
    rows = []
    for i in range(people):
        pid, gender, age = f"{i + 1:06d}", "female" if rng.random() < 0.61 else "male", _age(rng)
        folder = images / f"{pid}_{gender}_Asian_{age}"
        folder.mkdir()
        for name in PHOTOS:
            place(pools["u" if name == "normal" else "m"], folder / name, rng)
        rows.append([pid, gender, "Asian", age, folder.name])
    with open(out / "train" / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", "gender", "race", "age", "path"], *rows])

    ev = out / "eval" / "images"
    ev.mkdir(parents=True)
    pools = {"m": Pool(m_eval, rng), "u": Pool(u_eval, rng)}
    info, answers = [], []
    for i in range(eval_people):
        gender, age = "female" if rng.random() < 0.61 else "male", _age(rng)
        for name in PHOTOS:
            tmp = place(pools["u" if name == "normal" else "m"], ev / f"tmp{i}_{name}", rng)
            image_id = hashlib.sha1(f"{seed}-{i}-{name}".encode()).hexdigest() + tmp.suffix
            tmp.rename(ev / image_id)
            info.append([image_id, 0])
            answers.append([image_id, _label(MASK_OF[name], gender, age), f"e{i:05d}"])
    rng.shuffle(info)  # eval order is not person order (as in the real info.csv)
    order = {row[0]: k for k, row in enumerate(info)}
    answers.sort(key=lambda r: order[r[0]])
    with open(out / "eval" / "info.csv", "w", newline="") as f:
        csv.writer(f).writerows([["ImageID", "ans"], *info])
    with open(out / "eval" / "answers.csv", "w", newline="") as f:
        csv.writer(f).writerows([["ImageID", "ans", "person"], *answers])
    return {"train": people, "eval": eval_people}

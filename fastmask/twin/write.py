"""Writing a twin folder in the real layout (train/, eval/ with answers, noise.csv, preview.png), published
only when complete, so an interrupted generation never leaves a twin that looks finished."""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from fastmask.errors import FastmaskError
from fastmask.labels import AGE_GROUPS, age_group, label_of
from fastmask.twin.draw import draw_face, face_box, identity, pose
from fastmask.twin.people import CANON_H, CANON_W, PHOTO_MASK, PHOTOS, RACE, Person, sample_people


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _photo_rng(person: Person, photo: str, seed):
    key = 2 if person.split == "train" else 3
    rng = np.random.default_rng([seed, key, int(person.id), person.age, PHOTOS.index(photo)])
    scarf = photo == "mask5" and rng.random() < 0.12
    return rng, scarf


def render_photo(person: Person, photo: str, seed=0, size=(CANON_W, CANON_H)) -> Image.Image:
    """What the photo slot `photo` truly shows (before any swap of file names)."""
    rng, scarf = _photo_rng(person, photo, seed)
    return draw_face(identity(person, seed), PHOTO_MASK[photo], rng, size, scarf=scarf)


def true_face_box(person: Person, photo: str, seed=0, size=(CANON_W, CANON_H)):
    """The face box of the photo slot `photo` (fractions of width and height), from the same draws."""
    rng, _ = _photo_rng(person, photo, seed)
    return face_box(identity(person, seed), pose(rng), size)


FACES = "faces.csv"  # the twin's true face boxes, beside noise.csv: what a detector's boxes are checked against


def write_faces(persons, root, seed=0, size=(CANON_W, CANON_H)):
    """faces.csv: folder, file (as stored, after any swap), x0, y0, x1, y1 for every training photo."""
    rows = [(p.folder, stored_name(p, photo), *(round(v, 5) for v in true_face_box(p, photo, seed, size)))
            for p in persons if p.split == "train" for photo in PHOTOS]  # slot `photo` is saved as stored_name
    _write_csv(Path(root) / FACES, ("folder", "file", "x0", "y0", "x1", "y1"), rows)


def stored_name(person: Person, photo: str) -> str:
    """The file a photo slot's picture is saved under: swapped noise exchanges two names."""
    swap = {"incorrect_mask": "normal", "normal": "incorrect_mask"}
    name = swap.get(photo, photo) if person.swapped else photo
    return f"{name}.{person.exts[PHOTOS.index(name)]}"


def eval_image_id(person: Person, photo: str, seed=0) -> str:
    return hashlib.sha1(f"fastmask-twin/{seed}/{person.id}/{photo}".encode()).hexdigest() + ".jpg"


def _save(img, path):
    if path.suffix == ".png":
        img.save(path, compress_level=3)  # lossless anyway; the default level is slow on noise
    else:
        img.save(path, format="JPEG", quality=90)


def write_person(person: Person, root: Path, seed=0, size=(CANON_W, CANON_H)) -> int:
    """Draw and save one person's 7 photos under root/train/images/<folder> or root/eval/images."""
    root = Path(root)
    if person.split == "train":
        folder = root / "train" / "images" / person.folder
        folder.mkdir(parents=True, exist_ok=True)
    for photo in PHOTOS:
        img = render_photo(person, photo, seed, size)
        if person.split == "train":
            _save(img, folder / stored_name(person, photo))
        else:
            _save(img, root / "eval" / "images" / eval_image_id(person, photo, seed))
    return 1


def _write_chunk(people, root, seed, size):
    return sum(write_person(p, root, seed, size) for p in people)


def _ignore_ctrl_c():
    # A terminal's Ctrl-C reaches the whole process group: the parent stops the pool, the workers stay quiet.
    # A forked worker also inherits the command's SIGTERM handler (it raises KeyboardInterrupt): when the parent
    # ends the pool with terminate(), that would print a traceback per worker; the default handler just ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop(pool):
    """End the pool's workers now: leaving the `with` block would wait for every queued chunk to be drawn,
    and a parent killed meanwhile leaves them running, orphaned."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=5)


def write_images(persons, root, seed, size, progress=True, workers=None):
    """All photos, in a process pool when it pays; pixels do not depend on the worker."""
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    chunks = [persons[i:i + 8] for i in range(0, len(persons), 8)]
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("drawing people", total=len(persons))
        if workers > 1 and len(persons) >= 64:  # below that, starting the pool costs more
            pool = ProcessPoolExecutor(workers, initializer=_ignore_ctrl_c)
            try:
                jobs = [pool.submit(_write_chunk, ch, root, seed, size) for ch in chunks]
                for job in as_completed(jobs):
                    bar.advance(task, job.result())
            except BaseException:
                _stop(pool)
                raise
            pool.shutdown()
        else:
            for ch in chunks:
                bar.advance(task, _write_chunk(ch, root, seed, size))


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(header)
        out.writerows(rows)


def write_train_csv(persons, root):
    rows = [(p.id, p.given_gender, RACE, p.age, p.folder) for p in persons if p.split == "train"]
    _write_csv(Path(root) / "train" / "train.csv", ("id", "gender", "race", "age", "path"), rows)


def write_eval(persons, root, seed=0):
    """info.csv (ans all 0, as handed out) and answers.csv (the truth and the person), row for row in one order.

    The order is a seeded shuffle, not ImageID order: the real info.csv is unsorted, and a
    submission written or scored in sorted order must fail on the twin too."""
    rows = sorted((eval_image_id(p, photo, seed), label_of(PHOTO_MASK[photo], p.gender, p.age), p.id)
                  for p in persons if p.split == "eval" for photo in PHOTOS)
    rows = [rows[i] for i in np.random.default_rng([seed, 2]).permutation(len(rows))]
    root = Path(root) / "eval"
    _write_csv(root / "info.csv", ("ImageID", "ans"), [(i, 0) for i, _, _ in rows])
    # the person beside each answer lets a holdout verdict resample people, not correlated photos
    _write_csv(root / "answers.csv", ("ImageID", "ans", "person"), rows)


NOISE_COLUMNS = ("id", "folder", "kind", "file", "true_mask", "given_mask", "true_gender",
                 "given_gender", "age", "true_label", "given_label")


def write_noise(persons, root):
    """One row per mislabelled file: what it shows (true) against what its label says (given)."""
    rows = []
    for p in persons:
        if p.split != "train" or not p.noise:
            continue
        for photo in PHOTOS:
            given_mask = PHOTO_MASK[stored_name(p, photo).split(".")[0]]
            true_mask = PHOTO_MASK[photo]
            if (given_mask, p.given_gender) == (true_mask, p.gender):
                continue
            rows.append((p.id, p.folder, p.noise, stored_name(p, photo), true_mask, given_mask,
                         p.gender, p.given_gender, p.age, label_of(true_mask, p.gender, p.age),
                         label_of(given_mask, p.given_gender, p.age)))
    _write_csv(Path(root) / "noise.csv", NOISE_COLUMNS, sorted(rows))


def _preview_people(persons, n=6):
    """Clean train people covering gender x age group, oldest group included."""
    clean = [p for p in persons if p.split == "train" and not p.noise and not p.duplicate]
    picks = []
    for grp in (2, 0, 1):
        for gender in ("female", "male"):
            match = [p for p in clean if p.gender == gender and age_group(p.age) == grp]
            if match:
                picks.append(match[len(match) // 2])
    picks += [p for p in clean if p not in picks]
    return picks[:n]


def write_preview(persons, root, n=6, thumb=(84, 112)):
    """A contact sheet of a few people x their 7 photos, read back from the written files."""
    root = Path(root)
    people = _preview_people(persons, n)
    font = ImageFont.load_default(size=11)
    label_w, head_h, gap = 130, 16, 2
    tw, th = thumb
    width = label_w + len(PHOTOS) * (tw + gap)
    sheet = Image.new("RGB", (width, head_h + len(people) * (th + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, photo in enumerate(PHOTOS):
        draw.text((label_w + j * (tw + gap) + 2, 2), photo, fill="black", font=font)
    for i, p in enumerate(people):
        y = head_h + i * (th + gap)
        text = f"{p.id}\n{p.gender} {p.age}\nage group {AGE_GROUPS[age_group(p.age)]}"
        draw.multiline_text((4, y + 4), text, fill="black", font=font)
        for j, photo in enumerate(PHOTOS):
            with Image.open(root / "train" / "images" / p.folder / stored_name(p, photo)) as im:
                sheet.paste(im.convert("RGB").resize(thumb, Image.Resampling.BILINEAR),
                            (label_w + j * (tw + gap), y))
    sheet.save(root / "preview.png")
    return root / "preview.png"


# ---------------------------------------------------------------------------------------------
# The twin as a whole
# ---------------------------------------------------------------------------------------------
OWNED = ("noise.csv", "faces.csv", "preview.png", "eval", "train")  # publish order: train last, it marks done


def make_twin(out_dir, people=300, eval_people=None, seed=0, size=(CANON_W, CANON_H),
              progress=True, workers=None) -> Path:
    """Generate the twin into out_dir (train/, eval/, noise.csv, faces.csv, preview.png) and return it.

    An earlier twin there is replaced; a folder holding anything else under train/ or eval/
    (a real data set) is refused."""
    return _generate(Path(out_dir), people, eval_people, seed, size, progress, workers,
                     keep_existing=False)


def ensure_twin(out_dir, **kw) -> Path:
    """make_twin(out_dir, **kw) unless out_dir/train/train.csv exists (its parameters unchecked)."""
    out = Path(out_dir)
    if not (out / "train" / "train.csv").exists():
        _generate(out, **kw, keep_existing=True)
    return out


def _generate(out, people=300, eval_people=None, seed=0, size=(CANON_W, CANON_H), progress=True,
              workers=None, keep_existing=False):
    _check_args(people, eval_people, size)
    _check_overwritable(out)
    persons = sample_people(people, eval_people, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A sibling folder, so an interrupted run never leaves a train.csv that looks finished.
    tmp = out.resolve().parent / f".{out.resolve().name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "train" / "images").mkdir(parents=True)
        (tmp / "eval" / "images").mkdir(parents=True)
        write_images(persons, tmp, seed, tuple(size), progress, workers)
        write_train_csv(persons, tmp)
        write_eval(persons, tmp, seed)
        write_noise(persons, tmp)
        write_faces(persons, tmp, seed, tuple(size))
        write_preview(persons, tmp)
        _publish(tmp, out, keep_existing)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _check_args(people, eval_people, size):
    if not isinstance(people, (int, np.integer)) or people < 1:
        raise FastmaskError(f"--people: need a positive whole number, got {people!r}")
    if eval_people is not None and (not isinstance(eval_people, (int, np.integer))
                                    or eval_people < 0):
        raise FastmaskError(f"--eval-people: need a whole number >= 0, got {eval_people!r}")
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and 16 <= v <= 4096
                                 for v in size):
        shown = "x".join(map(str, size)) if isinstance(size, (tuple, list)) else repr(size)
        raise FastmaskError(f"--size: need width and height in 16..4096 pixels, got {shown}")


def _check_overwritable(out):
    """Never replace a real data set: only a folder with a twin's noise.csv may be overwritten."""
    if out.exists() and not out.is_dir():
        raise FastmaskError(f"{out}: exists and is not a folder")
    if ((out / "train").exists() or (out / "eval").exists()) and not (out / "noise.csv").exists():
        raise FastmaskError(f"{out}: holds train/ or eval/ without noise.csv, so it is not a "
                            "synthetic twin; refusing to overwrite it")


def _publish(tmp, out, keep_existing):
    out.mkdir(parents=True, exist_ok=True)
    if keep_existing and (out / "train" / "train.csv").exists():
        return  # another process finished the same twin first
    old = tmp / "replaced"
    old.mkdir()
    for name in OWNED:
        if (out / name).exists():
            os.replace(out / name, old / name)
        os.replace(tmp / name, out / name)



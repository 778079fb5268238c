"""The synthetic twin of the private competition data set: `python -m fastmask.synth OUT_DIR`.

The real photos are not on these machines, so every loader, split and recipe is exercised on a
twin that copies the real set's layout, quirks and label statistics (dataset-facts.md) and whose
drawn faces carry the three cues a small CNN can learn: where the mask sits, gender, and age.
Age cues change smoothly with age and vary between identities, so 58/59/60 are as hard to tell
apart as in the real photos. Unlike the real set, the twin also writes the eval answers and a log
of the label noise it injected, so hold-out scores and noise handling can be measured.

Determinism: the population (ids, ages, genders, extensions, noise) comes from one generator
seeded by `seed`; every identity and every photo has its own generator keyed by (seed, id, ...),
so pixels do not depend on the order or the process in which people are drawn.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from fastmask.errors import FastmaskError, cli
from fastmask.labels import AGE_GROUPS, age_group, label_of

PHOTOS = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
PHOTO_MASK = {p: "wear" for p in PHOTOS[:5]} | {"incorrect_mask": "incorrect", "normal": "not_wear"}
RACE = "Asian"
ID_MAX = 6959  # real ids run 000001..006959 with gaps

# People per year of age among the real 2,700. The spikes (18-20, 55-60) and the group totals
# (<30: 1,281; 30-59: 1,227; 60: 192) are published; the years between are spread inside those
# totals, with 30..49 kept inside the published 3..39 people per year.
AGE_COUNTS = {
    18: 192, 19: 407, 20: 267, 21: 80, 22: 65, 23: 55, 24: 48, 25: 42, 26: 38, 27: 32, 28: 30,
    29: 25, 30: 39, 31: 30, 32: 25, 33: 22, 34: 20, 35: 18, 36: 15, 37: 12, 38: 10, 39: 8,
    40: 3, 41: 5, 42: 8, 43: 10, 44: 12, 45: 15, 46: 20, 47: 25, 48: 30, 49: 33, 50: 50,
    51: 55, 52: 58, 53: 62, 54: 69, 55: 100, 56: 123, 57: 106, 58: 159, 59: 85, 60: 192,
}
# P(female | age group), from the per-class image counts (wear classes / 5 photos = people).
FEMALE_SHARE = (732 / 1281, 817 / 1227, 109 / 192)
# Extension kinds per person folder: 2,574 all .jpg, 73 all .png, 46 all .jpeg, 7 mixed.
EXT_KINDS = ("jpg", "png", "jpeg", "mixed")
EXT_COUNTS = (2574, 73, 46, 7)
# Label noise, as shares of train people. 0.6 % flipped x 7 images + 1.2 % swapped x 2 images
# is about 1 % of images, the share one team relabelled in the real set.
FLIP_RATE = 0.006
SWAP_RATE = 0.012
MIN_PEOPLE_FOR_QUIRKS = 20  # below this, no duplicated id and no guaranteed noise
MIN_PEOPLE_FOR_EXT_MIX = 30  # from this, at least one .png, one .jpeg and one mixed folder

CANON_W, CANON_H = 384, 512  # drawing coordinates; scaled to the requested size
FACE_Y = 228  # canonical face centre height: head and shoulders framing like the real photos
MIN_RENDER_W = 192  # tiny sizes are drawn larger and reduced, so thin cues survive as grey levels


# ---------------------------------------------------------------------------------------------
# The population
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Person:
    """One person folder (train) or one eval person; `gender` is what is drawn, the truth."""
    id: str
    age: int
    gender: str
    split: str  # "train" or "eval"
    given_gender: str = ""  # what train.csv and the folder name say; differs for a gender flip
    exts: tuple = ("jpg",) * 7  # one extension per photo slot, in PHOTOS order
    swapped: bool = False  # incorrect_mask and normal files swapped (label noise)
    duplicate: bool = False  # one of the two folders of the duplicated id

    @property
    def folder(self) -> str:
        return f"{self.id}_{self.given_gender or self.gender}_{RACE}_{self.age}"

    @property
    def noise(self) -> str:
        if self.given_gender and self.given_gender != self.gender:
            return "gender_flip"
        return "mask_swap" if self.swapped else ""


def sample_people(people=300, eval_people=None, seed=0) -> list[Person]:
    """Draw the train people (folders) then the eval people, without drawing any image.

    `people` counts folders, so with the duplicated id there are people - 1 distinct train ids."""
    eval_people = default_eval_people(people) if eval_people is None else eval_people
    rng = np.random.default_rng([seed, 0])
    dup = people >= MIN_PEOPLE_FOR_QUIRKS
    ids = _sample_ids(rng, people - dup + eval_people)
    train = [_sample_person(rng, i, "train") for i in sorted(ids[: people - dup])]
    evals = [_sample_person(rng, i, "eval") for i in sorted(ids[people - dup:])]
    if dup:
        train = _add_duplicate(rng, train)
    train = _assign_extensions(rng, train)
    train = _inject_noise(rng, train)
    return sorted(train, key=lambda p: p.folder) + evals


def default_eval_people(people: int) -> int:
    return round(people * 2 / 3)  # the real set: 2,700 train people, 1,800 eval people


def _sample_ids(rng, n):
    pool = max(ID_MAX, math.ceil(n * 1.3))  # keep gaps even when asked for more people
    if pool > 999_999:
        raise FastmaskError(f"--people: {n} people do not fit in 6-digit ids")
    return [f"{i:06d}" for i in rng.choice(np.arange(1, pool + 1), size=n, replace=False)]


AGES = np.array(list(AGE_COUNTS))
AGE_P = np.array(list(AGE_COUNTS.values()), dtype=float) / sum(AGE_COUNTS.values())


def _sample_person(rng, pid, split):
    age = int(rng.choice(AGES, p=AGE_P))
    female = rng.random() < FEMALE_SHARE[age_group(age)]
    gender = "female" if female else "male"
    return Person(id=pid, age=age, gender=gender, split=split,
                  given_gender=gender if split == "train" else "")


def _add_duplicate(rng, train):
    """Like 003397 (ages 19 and 20): one identity photographed twice, a year apart."""
    order = rng.permutation(len(train))
    src = next((k for k in order if 19 <= train[k].age <= 58), order[0])
    first = replace(train[src], duplicate=True)
    second = replace(first, age=min(first.age + 1, 60))
    return [p for k, p in enumerate(train) if k != src] + [first, second]


def _assign_extensions(rng, train):
    probs = np.array(EXT_COUNTS, dtype=float) / sum(EXT_COUNTS)
    kinds = [EXT_KINDS[k] for k in rng.choice(len(EXT_KINDS), size=len(train), p=probs)]
    if len(train) >= MIN_PEOPLE_FOR_EXT_MIX:
        # Tests and loaders must meet every quirk even in a small twin.
        for want in ("png", "jpeg", "mixed"):
            if want not in kinds:
                plain = [k for k, kind in enumerate(kinds) if kind == "jpg"]
                kinds[plain[rng.integers(len(plain))]] = want
    out = []
    for person, kind in zip(train, kinds):
        if kind == "mixed":
            jpeg = set(rng.choice(len(PHOTOS), size=rng.integers(1, len(PHOTOS)), replace=False))
            exts = tuple("jpeg" if k in jpeg else "jpg" for k in range(len(PHOTOS)))
        else:
            exts = (kind,) * len(PHOTOS)
        out.append(replace(person, exts=exts))
    return out


def _inject_noise(rng, train):
    n = len(train)
    n_flip, n_swap = round(n * FLIP_RATE), round(n * SWAP_RATE)
    if n >= MIN_PEOPLE_FOR_QUIRKS:
        n_flip, n_swap = max(n_flip, 1), max(n_swap, 1)
    # The duplicated folders stay clean: a flip there would make one identity two genders.
    candidates = [k for k, p in enumerate(train) if not p.duplicate]
    chosen = rng.choice(candidates, size=min(n_flip + n_swap, len(candidates)), replace=False)
    out = list(train)
    for j, k in enumerate(chosen):
        p = out[k]
        if j < n_flip:
            out[k] = replace(p, given_gender="male" if p.gender == "female" else "female")
        else:
            out[k] = replace(p, swapped=True)
    return out


# ---------------------------------------------------------------------------------------------
# Identities and faces
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """Traits fixed across a person's photos; age-dependent ones are functions of apparent age."""
    gender: str
    apparent_age: float  # age + a per-identity offset: some people look older than they are
    a: float  # face half width (canonical pixels)
    b: float  # face half height
    jaw: float  # lower-face width as a share of a; squarer for men on average
    skin: tuple
    hair: tuple
    hair_end: float | None  # local y where hair behind the face ends; None for short hair
    volume: float
    fringe: bool
    brow: float  # eyebrow thickness
    lips: tuple
    stubble: float
    earrings: tuple | None
    glasses: tuple | None
    clothes: tuple
    shoulders: float
    bg: tuple
    bg_rects: tuple
    spots: tuple  # (x, y, r) age spots in face-local coordinates, shown more with age
    grey: float  # share of grey hair, 0..0.9
    wrinkles: float  # 0 for the young, about 1 at 60
    recession: float  # hairline recession, 0..~1.2
    age_t: float  # 0 at 18, 1 at 60: skin shift


def identity(person: Person, seed: int) -> Identity:
    rng = np.random.default_rng([seed, 1, int(person.id)])
    male = person.gender == "male"
    app = person.age + float(np.clip(rng.normal(0, 3.5), -8, 8))
    a = rng.normal(86 if male else 79, 4.5)
    b = rng.normal(110 if male else 105, 5)
    jaw = rng.normal(0.80 if male else 0.68, 0.05)
    skin = _mix((236, 204, 178), (196, 152, 118), rng.random())
    hair = _mix((22, 18, 16), (88, 58, 36), rng.random() ** 2)
    if male:
        style = rng.choice(["short", "medium", "long"], p=[0.82, 0.15, 0.03])
    else:
        style = rng.choice(["short", "bob", "long"], p=[0.15, 0.23, 0.62])
    # Every branch draws, so an identity's later traits do not depend on its hair style.
    hair_end = {"short": None, "medium": b * rng.uniform(-0.05, 0.3),
                "bob": b * rng.uniform(0.4, 0.95), "long": b + rng.uniform(40, 150)}[str(style)]
    volume = rng.uniform(4, 16) if male else rng.uniform(8, 22)
    fringe = rng.random() < (0.3 if male else 0.45)
    brow = rng.normal(7.0 if male else 4.5, 1.0)
    lipstick = (not male) and rng.random() < 0.55
    lips = _mix((196, 120, 112), (200, 40, 70), rng.uniform(0.4, 0.9)) if lipstick else \
        _mix((190, 125, 115), (160, 100, 95), rng.random())
    stubble = rng.uniform(0.3, 1.0) if male and rng.random() < 0.3 else 0.0
    earrings = ((212, 175, 55), (200, 200, 205))[rng.integers(2)] \
        if not male and rng.random() < 0.25 else None
    glasses = tuple(int(v) for v in rng.integers(10, 120, 3)) if rng.random() < 0.15 else None
    clothes = tuple(int(v * (0.8 if male else 1.0)) for v in rng.integers(25, 235, 3))
    shoulders = rng.normal(195 if male else 170, 12)
    bg = _mix((150, 150, 150), tuple(int(v) for v in rng.integers(90, 240, 3)), 0.5)
    bg_rects = tuple(_bg_rect(rng, bg) for _ in range(rng.integers(0, 4)))
    spots = tuple((rng.uniform(-0.7, 0.7) * a, rng.uniform(-0.6, 0.4) * b, rng.uniform(2, 5))
                  for _ in range(8))
    # Smooth functions of apparent age with per-identity rates: neighbouring ages overlap.
    onset = rng.normal(47, 6)
    dyed = rng.random() < (0.25 if not male else 0.1)
    grey = float(np.clip((app - onset) / 18, 0, 0.9)) * (0.15 if dyed else 1.0)
    wrinkles = rng.uniform(0.6, 1.4) * float(np.clip((app - 25) / 35, 0, 1.3))
    recession = rng.uniform(0, 1.0 if male else 0.25) * float(np.clip((app - 30) / 35, 0, 1.2))
    age_t = float(np.clip((app - 18) / 42, 0, 1.2))
    return Identity(
        gender=person.gender, apparent_age=app, a=a, b=b, jaw=jaw, skin=skin, hair=hair,
        hair_end=hair_end, volume=volume, fringe=fringe, brow=max(brow, 2.5), lips=lips,
        stubble=stubble, earrings=earrings, glasses=glasses, clothes=clothes,
        shoulders=shoulders, bg=bg, bg_rects=bg_rects, spots=spots, grey=grey,
        wrinkles=wrinkles, recession=recession, age_t=age_t)


def _bg_rect(rng, bg):
    x0, y0 = rng.uniform(-40, CANON_W), rng.uniform(-40, CANON_H * 0.7)
    w, h = rng.uniform(40, 220), rng.uniform(60, 400)
    return (x0, y0, x0 + w, y0 + h), _shade(bg, rng.uniform(0.75, 1.2))


def _mix(c1, c2, t):
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(c1, c2))


def _shade(c, f):
    return tuple(int(np.clip(round(x * f), 0, 255)) for x in c)


class _Canvas:
    """ImageDraw in canonical 384x512 pixels around an origin, scaled to the render size."""

    def __init__(self, draw, scale, origin):
        self.d, self.s, (self.ox, self.oy) = draw, scale, origin

    def xy(self, x, y):
        return (self.ox + x * self.s, self.oy + y * self.s)

    def w(self, width):
        return max(1, round(width * self.s))

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width=1):
        (x0, y0), (x1, y1) = self.xy(cx - rx, cy - ry), self.xy(cx + rx, cy + ry)
        self.d.ellipse((x0, y0, x1, y1), fill=fill, outline=outline, width=self.w(width))

    def rect(self, x0, y0, x1, y1, fill=None, radius=0, outline=None, width=1):
        box = self.xy(x0, y0) + self.xy(x1, y1)
        self.d.rounded_rectangle(box, radius=radius * self.s, fill=fill, outline=outline,
                                 width=self.w(width))

    def polygon(self, pts, fill):
        self.d.polygon([self.xy(x, y) for x, y in pts], fill=fill)

    def line(self, pts, fill, width=1):
        self.d.line([self.xy(x, y) for x, y in pts], fill=fill, width=self.w(width), joint="curve")


def _arc_pts(cx, cy, rx, ry, t0, t1, n=16):
    """Points on an ellipse between parametric angles t0..t1 (radians, y down)."""
    t = np.linspace(t0, t1, n)
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


MASK_COLOURS = ((238, 238, 235), (160, 195, 225), (35, 35, 40), (140, 142, 148),
                (235, 180, 195), (40, 50, 85), (215, 195, 170), (150, 190, 165))


def draw_face(ident: Identity, mask: str, rng, size=(CANON_W, CANON_H), scarf=False):
    """One photo: `mask` is "wear", "incorrect" or "not_wear"; `rng` supplies the photo's jitter.

    Returns an RGB PIL image of `size` (width, height)."""
    W, H = size
    k = max(1, math.ceil(MIN_RENDER_W / W))
    RW, RH = W * k, H * k
    cs = min(RW / CANON_W, RH / CANON_H)
    off = ((RW - CANON_W * cs) / 2, (RH - CANON_H * cs) / 2)
    img = Image.new("RGB", (RW, RH), ident.bg)
    draw = ImageDraw.Draw(img)
    scene = _Canvas(draw, cs, off)
    for box, colour in ident.bg_rects:
        scene.rect(*box, fill=colour)
    # Per-photo pose: the person moves inside a fixed scene.
    dx, dy = np.clip(rng.normal(0, 10, 2), -25, 25)
    scale = rng.uniform(0.9, 1.1)
    centre = scene.xy(CANON_W / 2 + dx, FACE_Y + dy)
    face = _Canvas(draw, cs * scale, centre)
    _draw_body(face, ident)
    _draw_head(face, ident, rng)
    if mask == "wear":
        (_draw_scarf if scarf else _draw_mask)(face, ident, rng, top=-0.04, bottom=1.04)
    elif mask == "incorrect":
        # Below the nose (mouth covered) or down on the chin (mouth visible): both are "incorrect".
        if rng.random() < 0.65:
            _draw_mask(face, ident, rng, top=0.25, bottom=1.08)
        else:
            _draw_mask(face, ident, rng, top=0.6, bottom=1.14)
    if ident.glasses is not None:
        _draw_glasses(face, ident)
    # Nearest is 10x faster than bilinear here and the drawing is not antialiased anyway.
    img = img.rotate(rng.normal(0, 3), resample=Image.Resampling.NEAREST, center=centre,
                     fillcolor=ident.bg)
    if k > 1:
        img = img.resize((W, H), Image.Resampling.BOX)
    return _light(img, rng)


def _draw_body(c, f):
    a, b = f.a, f.b
    c.ellipse(0, b + 200, f.shoulders, 150, fill=f.clothes)
    neck = 0.38 if f.gender == "male" else 0.32
    c.rect(-neck * a, 0.4 * b, neck * a, b + 62, fill=_shade(f.skin, 0.88))
    c.polygon([(-neck * a - 8, b + 52), (0, b + 95), (neck * a + 8, b + 52)],
              fill=_shade(f.skin, 0.88))  # neckline
    if f.hair_end is not None:
        # Hair behind the face: its length is the main (not the only) gender cue.
        c.rect(-a * 1.14, -b * 0.85, a * 1.14, f.hair_end, fill=_hair_colour(f), radius=a * 0.5)


def _hair_colour(f):
    return _mix(f.hair, (205, 205, 200), f.grey)


def _draw_head(c, f, rng):
    a, b = f.a, f.b
    skin = _mix(f.skin, (188, 160, 130), 0.35 * f.age_t)  # skin dulls and darkens with age
    for side in (-1, 1):
        c.ellipse(side * a * 0.98, -0.05 * b, 0.13 * a, 0.2 * b, fill=_shade(skin, 0.93))
        if f.earrings is not None:
            c.ellipse(side * a * 1.0, 0.17 * b, 4, 4, fill=f.earrings)
    hair = _hair_colour(f)
    c.ellipse(0, -0.2 * b, a * 1.06 + f.volume * 0.3, b * 0.9 + f.volume, fill=hair)
    c.ellipse(0, 0, a, b, fill=skin)
    jaw = f.jaw * a
    c.rect(-jaw, 0.2 * b, jaw, 0.99 * b, fill=skin, radius=0.45 * a)
    if f.stubble:
        # Dots, not a flat patch: a flat grey jaw read as a mask on the no-mask photos.
        dot = _mix(skin, f.hair, 0.45 * f.stubble)
        for _ in range(160):
            t, r = rng.uniform(0.2, math.pi - 0.2), rng.uniform(0.55, 0.97)
            c.ellipse(r * jaw * math.cos(t), 0.1 * b + r * 0.88 * b * math.sin(t), 1.2, 1.2,
                      fill=dot)
    _draw_age_marks(c, f, skin)
    _draw_hair_cap(c, f, hair, rng)
    _draw_features(c, f, skin)


def _draw_age_marks(c, f, skin):
    """Forehead lines, crow's feet, eye bags, smile lines, spots: all fade in with age."""
    a, b, w = f.a, f.b, min(f.wrinkles, 1.3)
    if w <= 0.05:
        return
    line = _mix(skin, _shade(skin, 0.62), min(w, 1.0))
    for j, y in enumerate((-0.4, -0.48, -0.56)):
        if w > 0.2 + 0.3 * j:
            c.line(_arc_pts(0, y * b + 0.35 * a, 0.42 * a, 0.35 * a, -2.2, -0.95), line, 2.2)
    for side in (-1, 1):
        x = side * 0.58 * a
        for dy in (-0.04, 0.0, 0.04):
            c.line([(x, -0.15 * b + dy * b), (x + side * 0.13 * a, -0.15 * b + dy * 2.2 * b)],
                   line, 1.6)
        c.line(_arc_pts(side * 0.38 * a, -0.11 * b, 0.15 * a, 0.05 * b, 0.3, math.pi - 0.3, 8),
               line, 2.0)  # eye bag
        c.line([(side * 0.2 * a, 0.2 * b), (side * 0.34 * a, 0.5 * b)], line, 2.4)
    n_spots = int(len(f.spots) * np.clip((f.apparent_age - 45) / 20, 0, 1))
    for x, y, r in f.spots[:n_spots]:
        c.ellipse(x, y, r, r, fill=_shade(skin, 0.8))


def _draw_hair_cap(c, f, hair, rng):
    """Hair over the top of the face down to the hairline; the hairline recedes with age."""
    a, b = f.a, f.b
    top = max(-0.5 * b - f.recession * 0.3 * b, -0.85 * b)  # y of the hairline
    if f.fringe:
        top = -0.33 * b
    t0 = math.asin(max(-0.99, top / b))
    pts = _arc_pts(0, 0, a * 1.01, b * 1.01, math.pi - t0, 2 * math.pi + t0, 24)
    if f.fringe:
        xs = np.linspace(a * math.cos(t0), -a * math.cos(t0), 9)
        pts += [(x, top + (6 if j % 2 else 0)) for j, x in enumerate(xs)]
    else:
        # M-shaped when receding: temples go back first.
        temple = max(top - f.recession * 0.18 * b, -0.84 * b)
        pts += [(0.5 * a, temple), (0, top + 4), (-0.5 * a, temple)]
    c.polygon(pts, fill=hair)
    # Grey strands: texture, so greying is not only a colour shift.
    strand = _mix(hair, (230, 230, 228), 0.6)
    for _ in range(int(60 * f.grey)):
        x, y = rng.uniform(-0.85, 0.85) * a, rng.uniform(-1.05, -0.6) * b
        c.line([(x, y), (x + rng.uniform(-12, 12), y + rng.uniform(6, 16))], strand, 1.5)


def _draw_features(c, f, skin):
    a, b = f.a, f.b
    brow = _mix(f.hair, (160, 160, 158), f.grey * 0.5)
    for side in (-1, 1):
        c.line([(side * 0.14 * a, -0.27 * b), (side * 0.38 * a, -0.31 * b),
                (side * 0.62 * a, -0.27 * b)], brow, f.brow)
        c.ellipse(side * 0.38 * a, -0.15 * b, 0.17 * a, 0.055 * b, fill=(240, 238, 232))
        c.ellipse(side * 0.38 * a, -0.15 * b, 0.055 * b, 0.052 * b, fill=(45, 30, 25))
        c.line(_arc_pts(side * 0.38 * a, -0.14 * b, 0.18 * a, 0.07 * b, math.pi + 0.3,
                        2 * math.pi - 0.3, 8), (40, 30, 28), 2.5)
    c.polygon([(0, -0.1 * b), (-0.12 * a, 0.17 * b), (0.12 * a, 0.17 * b)], fill=_shade(skin, 0.92))
    for side in (-1, 1):
        c.ellipse(side * 0.07 * a, 0.17 * b, 0.045 * a, 0.022 * b, fill=_shade(skin, 0.55))
    c.ellipse(0, 0.45 * b, 0.26 * a, 0.065 * b, fill=f.lips)
    c.line([(-0.25 * a, 0.45 * b), (0, 0.46 * b), (0.25 * a, 0.45 * b)], _shade(f.lips, 0.5), 2)


def _mask_colour(rng):
    base = MASK_COLOURS[rng.integers(len(MASK_COLOURS))]
    return tuple(int(np.clip(v + rng.integers(-14, 15), 0, 255)) for v in base)


def _draw_mask(c, f, rng, top, bottom):
    """A mask between local heights top..bottom (in face half-heights), straps to the ears."""
    a, b = f.a, f.b
    colour = _mask_colour(rng)
    edge = _shade(colour, 0.78) if sum(colour) > 150 else _shade(colour, 1.6)
    y0, y1 = top * b, bottom * b
    half = a * (0.97 if top < 0.5 else 0.9)
    ear = (a * 0.98, -0.05 * b)
    for side in (-1, 1):
        c.line([(side * half * 0.95, y0 + 0.06 * b), (side * ear[0], ear[1])], edge, 2.5)
        c.line([(side * half * 0.85, y1 - 0.2 * b), (side * ear[0], ear[1] + 0.15 * b)], edge, 2.5)
    pts = [(-half, y0 + 0.1 * b), (-0.4 * a, y0), (0, y0 - 0.04 * b), (0.4 * a, y0),
           (half, y0 + 0.1 * b), (half * 0.88, y1 - 0.2 * b)]
    pts += _arc_pts(0, y1 - 0.2 * b, half * 0.88, 0.2 * b, 0, math.pi, 10)
    c.polygon(pts, fill=colour)
    style = rng.integers(3)  # surgical pleats, a KF94 seam, or a plain cloth mask
    if style == 0:
        for j in (1, 2, 3):
            y = y0 + (y1 - y0) * j / 4.5
            c.line([(-half * 0.85, y), (half * 0.85, y)], edge, 1.8)
    elif style == 1:
        c.line([(0, y0 - 0.04 * b), (0, y1)], edge, 1.8)


def _draw_scarf(c, f, rng, top, bottom):
    """mask5 is sometimes a scarf: wider than the face, down over the neck, striped."""
    a, b = f.a, f.b
    colour = tuple(int(v) for v in rng.integers(20, 235, 3))
    stripe = _shade(colour, 0.6) if sum(colour) > 300 else _shade(colour, 1.7)
    y0 = top * b + 0.05 * b
    c.polygon([(-1.2 * a, y0 + 0.08 * b), (0, y0), (1.2 * a, y0 + 0.08 * b),
               (1.45 * a, b + 70), (-1.45 * a, b + 70)], fill=colour)
    for j in range(1, 5):
        y = y0 + (b + 70 - y0) * j / 5
        c.line([(-1.25 * a, y), (1.25 * a, y)], stripe, 4)


def _draw_glasses(c, f):
    a, b = f.a, f.b
    for side in (-1, 1):
        c.rect(side * 0.38 * a - 0.23 * a, -0.25 * b, side * 0.38 * a + 0.23 * a, -0.05 * b,
               radius=6, outline=f.glasses, width=3)
    c.line([(-0.15 * a, -0.17 * b), (0.15 * a, -0.17 * b)], f.glasses, 3)


_NOISE = {}


def _noise_field(H, W):
    """One fixed grain field per size, cut at a random offset per photo: drawing fresh normal
    noise for every photo was a third of the time per image."""
    if (H, W) not in _NOISE:
        _NOISE[(H, W)] = np.random.default_rng(7).standard_normal((H + 64, W + 64, 1),
                                                                  dtype=np.float32)
    return _NOISE[(H, W)]


def _light(img, rng):
    """Photo conditions: brightness, side light, colour cast, sensor noise."""
    arr = np.asarray(img, dtype=np.float32)
    H, W = arr.shape[:2]
    gain = rng.uniform(0.8, 1.15) * (1 + rng.uniform(-0.18, 0.18) * (np.arange(W) / W - 0.5))
    cast = rng.normal(1, 0.03, 3)
    arr *= (gain[:, None] * cast).astype(np.float32)[None]
    oy, ox = rng.integers(0, 65, 2)
    arr += _noise_field(H, W)[oy:oy + H, ox:ox + W] * np.float32(rng.uniform(1.5, 5))
    return Image.fromarray(np.clip(arr, 0, 255, out=arr).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def render_photo(person: Person, photo: str, seed=0, size=(CANON_W, CANON_H)) -> Image.Image:
    """What the photo slot `photo` truly shows (before any swap of file names)."""
    key = 2 if person.split == "train" else 3
    rng = np.random.default_rng([seed, key, int(person.id), person.age, PHOTOS.index(photo)])
    scarf = photo == "mask5" and rng.random() < 0.12
    return draw_face(identity(person, seed), PHOTO_MASK[photo], rng, size, scarf=scarf)


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


def write_images(persons, root, seed, size, progress=True, workers=None):
    """All photos, in a process pool when it pays; pixels do not depend on the worker."""
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    chunks = [persons[i:i + 8] for i in range(0, len(persons), 8)]
    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("drawing people", total=len(persons))
        if workers > 1 and len(persons) >= 64:  # below that, starting the pool costs more
            with ProcessPoolExecutor(workers) as pool:
                jobs = [pool.submit(_write_chunk, ch, root, seed, size) for ch in chunks]
                for job in as_completed(jobs):
                    bar.advance(task, job.result())
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
OWNED = ("noise.csv", "preview.png", "eval", "train")  # publish order: train last, it marks done


def make_twin(out_dir, people=300, eval_people=None, seed=0, size=(CANON_W, CANON_H),
              progress=True, workers=None) -> Path:
    """Generate the twin into out_dir (train/, eval/, noise.csv, preview.png) and return it.

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


def parse_size(text: str) -> tuple:
    """'384x512' -> (384, 512): width x height, like the real photos."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise FastmaskError(f"--size: expected WIDTHxHEIGHT such as 384x512, got {text!r}")
    return int(parts[0]), int(parts[1])


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print usage too; the contract is one line
        raise FastmaskError(message)


def _parser():
    p = _Parser(prog="python -m fastmask.synth",
                description="Write a synthetic twin of the mask/gender/age data set.")
    p.add_argument("out_dir", help="folder to write train/, eval/, noise.csv, preview.png into")
    p.add_argument("--people", type=int, default=300, help="train person folders (default 300)")
    p.add_argument("--eval-people", type=int, default=None,
                   help="eval people (default round(people*2/3), like the real 2700/1800)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="384x512", help="WIDTHxHEIGHT of each photo (default 384x512)")
    p.add_argument("--workers", type=int, default=None, help="drawing processes (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@cli
def main(argv):
    args = _parser().parse_args(argv)
    size = parse_size(args.size)
    start = time.perf_counter()
    out = make_twin(args.out_dir, people=args.people, eval_people=args.eval_people,
                    seed=args.seed, size=size, progress=not args.quiet, workers=args.workers)
    n_eval = default_eval_people(args.people) if args.eval_people is None else args.eval_people
    print(f"wrote twin to {out}: {args.people} train folders, {n_eval} eval people, "
          f"{size[0]}x{size[1]}, seed {args.seed}, in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main(sys.argv[1:])

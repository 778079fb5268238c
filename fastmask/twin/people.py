"""The twin's population: train and eval people drawn with the real set's age, gender, extension and
label-noise statistics (dataset-facts.md), before any image is drawn."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from fastmask.errors import FastmaskError
from fastmask.labels import age_group

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



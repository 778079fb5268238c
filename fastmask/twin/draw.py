"""The twin's faces: an identity per person and the drawing of one photo, with the three cues a small
CNN can learn (where the mask sits, gender, age). Every identity and photo has its own generator keyed
by (seed, id, ...), so pixels do not depend on the order or the process that draws them."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from fastmask.twin.people import CANON_H, CANON_W, FACE_Y, MIN_RENDER_W, Person


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


def pose(rng):
    """A photo's pose, the first draws of its `rng` in draw_face: the person moves inside a fixed scene
    (dx, dy in canonical pixels) and nearer or further (scale)."""
    dx, dy = np.clip(rng.normal(0, 10, 2), -25, 25)
    return float(dx), float(dy), float(rng.uniform(0.9, 1.1))


def face_box(ident: Identity, photo_pose, size=(CANON_W, CANON_H)):
    """The face's true box (x0, y0, x1, y1) as fractions of the photo's width and height: the skin ellipse
    draw_face paints for `ident` at `photo_pose` (pose's output), brow to chin (the photo's small rotation
    left out)."""
    W, H = size
    cs = min(W / CANON_W, H / CANON_H)
    ox, oy = (W - CANON_W * cs) / 2, (H - CANON_H * cs) / 2
    dx, dy, scale = photo_pose
    cx, cy = ox + (CANON_W / 2 + dx) * cs, oy + (FACE_Y + dy) * cs
    rx, ry = ident.a * scale * cs, ident.b * scale * cs
    return ((cx - rx) / W, (cy - ry) / H, (cx + rx) / W, (cy + ry) / H)


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
    dx, dy, scale = pose(rng)
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



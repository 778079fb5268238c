"""`fastmask suspects RUN --review`: the relabel loop's page, RUN/review.html.

Each suspect image (suspects.csv, most confident disagreement first) beside its person's other photos, with
the given and the predicted label; a box per field where they differ (mask for this photo, gender or age for
the whole person, as relabel.csv takes them). The user ticks what to fix and downloads relabel.csv: the rows
already in DATA/relabel.csv first, unchanged, then the ticked ones. One static file, thumbnails inlined, no
server and no network: it opens from disk and can be mailed to whoever checks the labels."""
import base64
import io
import json
from html import escape
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from fastmask.data.load import load_data
from fastmask.data.relabel import RELABEL
from fastmask.errors import FastmaskError
from fastmask.io import atomic_write
from fastmask.labels import AGE_GROUPS, AGE_THRESHOLD, GENDERS, MASKS, age_group, decode
from fastmask.report.suspects import rescore
from fastmask.store.folder import OOF, SUSPECTS
from fastmask.store.run_folder import RunFolder
from fastmask.views.html import Raw, page

REVIEW = "review.html"
THUMB = (96, 128)  # width, height: seven photos of a person fit one row at 1,440 px


def suggested_age(age, group, threshold=AGE_THRESHOLD):
    """An age in the predicted group, as near the given one as the group allows (the user can edit it)."""
    low, high = ((0, 29), (30, threshold - 1), (threshold, 120))[group]
    return min(max(int(age), low), high)


def fixes(row, pred, threshold=AGE_THRESHOLD):
    """The corrections that would make `row`'s label the predicted class `pred`: (id, field, from, to, scope)
    for each field that differs; mask per photo, gender and age per person (relabel.csv's rule)."""
    m, g, a = decode(int(pred))
    image = f"{row['folder']}/{row['file']}"
    out = []
    if MASKS[m] != row["mask"]:
        out.append((image, "mask", row["mask"], MASKS[m], "this photo"))
    if GENDERS[g] != row["gender"]:
        out.append((row["person"], "gender", row["gender"], GENDERS[g], f"every photo of person {row['person']}"))
    if a != age_group(row["age"], threshold):
        out.append((row["person"], "age", int(row["age"]), suggested_age(row["age"], a, threshold),
                    f"every photo of person {row['person']} (now {AGE_GROUPS[age_group(row['age'], threshold)]}, "
                    f"predicted {AGE_GROUPS[a]})"))
    return out


def thumbnail(path):
    """A small JPEG of the photo as a data: URL (a photo that no longer reads: None, shown as missing)."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail(THUMB)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
    except (OSError, UnidentifiedImageError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _photo(row, given, pred_text, suspect=False):
    src = thumbnail(row["path"])
    img = (f'<img src="{src}" alt="{escape(row["file"])}">' if src else
           f'<div class="missing">{escape(row["file"])}: unreadable</div>')
    cap = f'<b>{escape(row["file"])}</b> {escape(row["mask"])}'
    if suspect:
        cap += f'<br>given: <span class="given">{escape(given)}</span><br>predicted: ' \
               f'<span class="predicted">{escape(pred_text)}</span>'
    return f'<figure class="{"suspect" if suspect else "other"}">{img}<figcaption>{cap}</figcaption></figure>'


def _fix_box(fix):
    fid, field, old, new, scope = fix
    value = (f'<input type="number" class="age" min="0" max="120" value="{new}" aria-label="new age">'
             if field == "age" else f"<b>{escape(str(new))}</b>")
    return (f'<label class="fix"><input type="checkbox" class="tick" data-id="{escape(fid)}" data-field="{field}" '
            f'data-value="{escape(str(new))}"> {field}: {escape(str(old))} &rarr; {value} '
            f'<span class="scope">({escape(scope)})</span></label>')


def card(n, s, row, people):
    """One suspect's section: its photo first, then its person's other photos, then the boxes and a note."""
    photos = [_photo(row, s["given"], f"{s['predicted']} ({float(s['p_pred']):.2f})", suspect=True)]
    photos += [_photo(r, "", "") for _, r in people.iterrows() if r["path"] != row["path"]]
    boxes = "".join(_fix_box(f) for f in fixes(row, s["pred"])) or \
        '<span class="scope">the given fields already give the predicted class (an earlier correction?)</span>'
    fold = f" &middot; fold {int(s['fold'])}" if "fold" in s and s["fold"] == s["fold"] else ""
    return (f'<section class="card" data-rank="{n}" data-image="{escape(row["folder"])}/{escape(row["file"])}">'
            f'<h2>#{n} &middot; person {escape(row["person"])} ({escape(row["gender"])}, {int(row["age"])}){fold} '
            f'&middot; p(given label) '
            f'{float(s["p_given"]):.3f}</h2><div class="photos">{"".join(photos)}</div>'
            f'<div class="fixes">{boxes}<input type="text" class="note" placeholder="note (why)"></div></section>')


def suspects_of(run_dir):
    """The run's suspects.csv (re-ranked from oof.csv when it is missing), as a frame."""
    d = Path(run_dir)
    if not (d / SUSPECTS).is_file():
        if not (d / OOF).is_file():
            raise FastmaskError(f"{d}: no {SUSPECTS} or {OOF} (suspect labels come from a k-fold run: "
                                f"--set split=kfold:5)")
        rescore(d)
    return pd.read_csv(d / SUSPECTS, dtype={"person": str})


def write(run_dir, top=50, out=None):
    """Write the review page for the run's `top` suspects; returns (its path, suspects shown, suspects in all,
    the data folder whose relabel.csv the download extends)."""
    d = Path(run_dir)
    if not d.is_dir():
        raise FastmaskError(f"{d}: no such run folder")
    s = suspects_of(d)
    root = RunFolder(d).config.get("data")
    if not root or not Path(root).is_dir():
        raise FastmaskError(f"{d / 'config.json'}: its data folder {root!r} is not here (the photos are needed)")
    data = load_data(root, progress=False)
    train = data.train.assign(key=data.train["folder"] + "/" + data.train["file"])
    by_key = train.set_index("key")
    sections = []
    for _, r in s.iterrows():
        if len(sections) == top:
            break
        key = f"{Path(r['path']).parent.name}/{Path(r['path']).stem}"
        if key not in by_key.index:  # the data changed since the run: nothing to show or correct
            continue
        row = by_key.loc[key].to_dict()
        people = train[train["person"] == row["person"]].sort_values("file")
        sections.append(card(len(sections) + 1, r, row, people))
    existing = Path(data.root) / RELABEL
    kept = existing.read_text(encoding="utf-8").splitlines()[1:] if existing.is_file() else []
    target = out or d / REVIEW
    atomic_write(target, page(
        "review.html", run=d.name, shown=len(sections), total=len(s), data=str(data.root),
        relabel=str(existing), kept=len([x for x in kept if x.strip()]),
        cards=Raw("".join(sections) or "<p>No suspects: every out-of-fold prediction agrees with its label.</p>"),
        kept_rows=Raw(json.dumps([x for x in kept if x.strip()]).replace("</", "<\\/"))))
    return Path(target), len(sections), len(s), data.root


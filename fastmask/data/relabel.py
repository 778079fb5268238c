"""Label corrections: `relabel.csv` in the data folder (beside train/ and eval/), one correction a row.

    id,field,value,note
    000144_female_Asian_52/normal,mask,incorrect,the strap hangs below the chin
    000497,gender,female,

`id` is one image (`<folder>/<photo>`, the photo with or without its extension) or a person id (every
photo of that person; gender and age only, as a person's photos differ in mask); `field` is gender, age or
mask; `value` a value the labels take (male/female, an age in years, wear/incorrect/not_wear). The loader
applies them before the split, so the corrected labels are the ones validation and holdout are scored on
and the data fingerprint changes with them; the photo's given labels stay beside them (`given_*` columns),
and a recipe trains on the corrected ones only with `relabel=True` (the hypothesis that they help)."""
import csv
from dataclasses import dataclass
from pathlib import Path


from fastmask.errors import FastmaskError
from fastmask.labels import AGE_THRESHOLD, GENDERS, MASKS, label_of

RELABEL = "relabel.csv"
COLUMNS = ("id", "field", "value", "note")
FIELDS = ("gender", "age", "mask")


@dataclass(frozen=True)
class Correction:
    line: int           # in relabel.csv, counting the header as line 1
    id: str
    field: str
    value: object
    note: str = ""


def read_corrections(path):
    """The corrections in `path`; a bad row is a FastmaskError naming the file, the line and what is wrong."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise FastmaskError(f"{path}: unreadable ({e})") from None
    if not rows or [c.strip() for c in rows[0][:3]] != list(COLUMNS[:3]):
        raise FastmaskError(f"{path}:1: the header must be {','.join(COLUMNS)} (note is optional)")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < 3:
            raise FastmaskError(f"{path}:{n}: expected id,field,value[,note], got {','.join(row)!r}")
        pid, field, value = (c.strip() for c in row[:3])
        out.append(Correction(n, pid, field, _value(field, value, f"{path}:{n}"), ",".join(row[3:]).strip()))
    return out


def _value(field, value, where):
    if field not in FIELDS:
        raise FastmaskError(f"{where}: unknown field {field!r}; corrections set one of {', '.join(FIELDS)}")
    if field == "gender" and value not in GENDERS:
        raise FastmaskError(f"{where}: gender {value!r} is not one of {', '.join(GENDERS)}")
    if field == "mask" and value not in MASKS:
        raise FastmaskError(f"{where}: mask {value!r} is not one of {', '.join(MASKS)}")
    if field == "age":
        try:
            age = int(value)
        except ValueError:
            age = -1
        if not 0 <= age <= 120:
            raise FastmaskError(f"{where}: age {value!r} is not a whole number of years (0..120)")
        return age
    return value


def apply(df, corrections, where=RELABEL):
    """`df` (read_train's rows) with the corrections applied: gender, age, mask and label corrected,
    `given_gender`, `given_age`, `given_mask` and `given_label` holding what train.csv and the photo names
    said. Returns (frame, [(Correction, images changed, old value)]); an id that names no image is a
    FastmaskError naming its line."""
    df = df.copy()
    for f in (*FIELDS, "label"):
        df[f"given_{f}"] = df[f]
    image_key = df["folder"] + "/" + df["file"]
    applied = []
    for c in corrections:
        stem = c.id.rsplit(".", 1)[0] if "/" in c.id else c.id
        rows = (image_key == stem) if "/" in c.id else (df["person"] == c.id)
        if not rows.any():
            what = "image" if "/" in c.id else "person id"
            raise FastmaskError(f"{where}:{c.line}: {what} {c.id!r} is not in the training data")
        if "/" not in c.id and c.field == "mask":
            raise FastmaskError(f"{where}:{c.line}: mask is corrected per photo (<folder>/<photo>), not per person")
        old = df.loc[rows, c.field].iloc[0]
        df.loc[rows, c.field] = c.value
        applied.append((c, int(rows.sum()), old.item() if hasattr(old, "item") else old))
    df["label"] = [label_of(m, g, a, AGE_THRESHOLD) for m, g, a in zip(df["mask"], df["gender"], df["age"])]
    return df.astype({"age": "int64", "label": "int64"}), applied


def labels_of(rows, threshold=AGE_THRESHOLD, given=False):
    """The class codes of `rows` at the age `threshold`: from the corrected gender, age and mask, or with
    `given` from what train.csv and the photo names said (the same where nothing was corrected)."""
    pre = "given_" if given and "given_mask" in rows else ""
    return [label_of(m, g, a, threshold) for m, g, a in zip(rows[pre + "mask"], rows[pre + "gender"], rows[pre + "age"])]


def summary(applied, path):
    """config.json's "relabel" entry: the file and each correction as applied."""
    return {"file": str(path), "corrections": [
        {"line": c.line, "id": c.id, "field": c.field, "from": old, "to": c.value, "images": n, "note": c.note}
        for c, n, old in applied]}


def load(root, df):
    """`df` with `root`/relabel.csv applied, and config.json's entry (None without the file)."""
    path = Path(root) / RELABEL
    if not path.is_file():
        return df, None
    out, applied = apply(df, read_corrections(path), where=str(path))
    return out, summary(applied, path)


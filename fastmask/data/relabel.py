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

import pandas as pd

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
    """The corrections in `path`; a bad row is a FastmaskError naming the file, the line and what is wrong.

    What a spreadsheet writes is read as meant: a UTF-8 byte-order mark (Excel's "CSV UTF-8"), \\r\\n line
    ends, spaces around a cell, empty trailing columns, the header's and the field's capitals. What could mean
    two things is refused with its line: a non-empty cell after the note (an unquoted comma in a note, or a
    column shifted), and a field longer than the csv module takes (no correction is that long)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = _rows(csv.reader(f), path)
    except (OSError, UnicodeDecodeError) as e:
        raise FastmaskError(f"{path}: unreadable ({e})") from None
    if not rows or [c.lower() for c in _trimmed(rows[0][1])] not in (list(COLUMNS[:3]), list(COLUMNS)):
        raise FastmaskError(f"{path}:{rows[0][0] if rows else 1}: the header must be {','.join(COLUMNS)} "
                            "(note is optional)")
    out = []
    for n, row in rows[1:]:
        cells = _trimmed(row)
        if not cells:
            continue
        if len(cells) < 3:
            raise FastmaskError(f"{path}:{n}: expected id,field,value[,note], got {','.join(row)!r}")
        if len(cells) > len(COLUMNS):
            raise FastmaskError(f"{path}:{n}: {len(cells)} columns, expected id,field,value[,note] (a note holding "
                                "a comma must be quoted, as a spreadsheet saves it)")
        pid, field, value = cells[0], cells[1].lower(), cells[2]
        out.append(Correction(n, pid, field, _value(field, value, f"{path}:{n}"), cells[3] if len(cells) > 3 else ""))
    return out


def _rows(reader, path):
    """[(line where the row starts, its cells)]; the csv module's own error (a field over its size limit, a
    NUL byte) is one FastmaskError naming the line."""
    rows = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return rows
        except csv.Error as e:
            what = (f"a field longer than {csv.field_size_limit()} characters" if "field limit" in str(e)
                    else f"not CSV ({e})")
            raise FastmaskError(f"{path}:{start}: {what}") from None
        rows.append((start, row))


def _trimmed(row):
    """A row's cells without surrounding spaces, and without the empty cells a spreadsheet adds at its end."""
    cells = [c.strip() for c in row]
    while cells and not cells[-1]:
        cells.pop()
    return cells


def _value(field, value, where):
    if field not in FIELDS:
        raise FastmaskError(f"{where}: unknown field {field!r}; corrections set one of {', '.join(FIELDS)}")
    if field in ("gender", "mask"):
        value = value.lower()
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
    said. Returns (frame, [(Correction, images it sets, old value)], distinct images the corrections touch:
    a photo two rows name counts once). An id that names no image, and two rows setting one photo's field
    to different values (the same id twice, or a person and one of their photos), are a FastmaskError
    naming the line; a row repeating an earlier one is applied once more, to the same effect."""
    df = df.copy()
    for f in (*FIELDS, "label"):
        df[f"given_{f}"] = df[f]
    image_key = df["folder"] + "/" + df["file"]
    applied = []
    touched = pd.Series(False, index=df.index)
    set_by = {f: pd.Series(None, index=df.index, dtype=object) for f in FIELDS}  # (value, line) a row set
    for c in corrections:
        stem = c.id.rsplit(".", 1)[0] if "/" in c.id else c.id
        rows = (image_key == stem) if "/" in c.id else (df["person"] == c.id)
        if not rows.any():
            what = "image" if "/" in c.id else "person id"
            hint = ""
            if "/" not in c.id and c.id.isdigit() and (df["person"] == c.id.zfill(6)).any():
                hint = f" (a spreadsheet drops the leading zeros of {c.id.zfill(6)}: save the id column as text)"
            raise FastmaskError(f"{where}:{c.line}: {what} {c.id!r} is not in the training data{hint}")
        if "/" not in c.id and c.field == "mask":
            raise FastmaskError(f"{where}:{c.line}: mask is corrected per photo (<folder>/<photo>), not per person")
        clash = next(((i, v) for i, v in set_by[c.field][rows].dropna().items() if v[0] != c.value), None)
        if clash is not None:
            i, (value, line) = clash
            raise FastmaskError(f"{where}:{c.line}: sets {c.field} of {image_key[i]} to {c.value!r}, but line {line} "
                                f"sets it to {value!r}: keep one of the two rows")
        set_by[c.field][rows] = pd.Series([(c.value, c.line)] * int(rows.sum()), index=df.index[rows], dtype=object)
        touched |= rows
        old = df.loc[rows, c.field].iloc[0]
        df.loc[rows, c.field] = c.value
        applied.append((c, int(rows.sum()), old.item() if hasattr(old, "item") else old))
    df["label"] = [label_of(m, g, a, AGE_THRESHOLD) for m, g, a in zip(df["mask"], df["gender"], df["age"])]
    return df.astype({"age": "int64", "label": "int64"}), applied, int(touched.sum())


def labels_of(rows, threshold=AGE_THRESHOLD, given=False):
    """The class codes of `rows` at the age `threshold`: from the corrected gender, age and mask, or with
    `given` from what train.csv and the photo names said (the same where nothing was corrected)."""
    pre = "given_" if given and "given_mask" in rows else ""
    return [label_of(m, g, a, threshold) for m, g, a in zip(rows[pre + "mask"], rows[pre + "gender"], rows[pre + "age"])]


def summary(applied, path, images):
    """config.json's "relabel" entry: the file, the distinct images corrected, and each correction as applied
    (its "images" are those its row names, which other rows may name too)."""
    return {"file": str(path), "images": images, "corrections": [
        {"line": c.line, "id": c.id, "field": c.field, "from": old, "to": c.value, "images": n, "note": c.note}
        for c, n, old in applied]}


def load(root, df):
    """`df` with `root`/relabel.csv applied, and config.json's entry (None without the file)."""
    path = Path(root) / RELABEL
    if not path.is_file():
        return df, None
    out, applied, images = apply(df, read_corrections(path), where=str(path))
    return out, summary(applied, path, images)


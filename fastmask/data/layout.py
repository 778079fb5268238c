"""The competition layout -> DataFrames. Every quirk of the real data set is handled here only.

Quirks (see dataset-facts.md): .jpg/.jpeg/.png mixed, even inside one folder; macOS `._*`
resource-fork files and folders beside the real ones; hidden entries (.DS_Store,
.ipynb_checkpoints); and one id (003397) in two folders with different ages. `person` is therefore
the id, not the folder, so person-grouped splits keep both folders on one side.
"""
from __future__ import annotations

import errno
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from fastmask.errors import FastmaskError, one_line
from fastmask.labels import AGE_THRESHOLD, GENDERS, label_of

TRAIN_COLUMNS = ("id", "gender", "race", "age", "path")
# Photo stem -> mask state; the order is also the row order within a folder.
PHOTOS = {
    "mask1": "wear", "mask2": "wear", "mask3": "wear", "mask4": "wear", "mask5": "wear",
    "incorrect_mask": "incorrect",
    "normal": "not_wear",
}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")  # WEBP: users' own folders, not the competition's
COLUMNS = ["path", "person", "folder", "file", "gender", "race", "age", "mask", "label"]
MAX_AGE = 120


def _ignored(name: str) -> bool:
    """Entries no loader should see: `._*` forks, .DS_Store, .ipynb_checkpoints, zip's __MACOSX."""
    return name.startswith(".") or name == "__MACOSX"


def _unreadable(exc: BaseException) -> str:
    """Why PIL could not open an image, in one line."""
    if isinstance(exc, UnidentifiedImageError):
        return "unknown or corrupt format"  # PIL's own text repeats the whole path
    return one_line(exc, named=False)


def _as_dir(root, what: str) -> Path:
    # abspath, not resolve(): keep the user's symlinked path in messages and in `path`.
    path = Path(os.path.abspath(os.path.expanduser(str(root))))
    if not path.exists():
        raise FastmaskError(f"{path}: {what} not found")
    if not path.is_dir():
        raise FastmaskError(f"{path}: {what} is not a folder")
    return path


def _read_csv(path: Path) -> pd.DataFrame:
    """All cells as stripped strings: ids keep leading zeros and empty cells stay '' (not NaN)."""
    if not path.is_file():
        raise FastmaskError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise FastmaskError(f"{path}: empty file (no header)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise FastmaskError(f"{path}: not a readable CSV ({one_line(e, named=False)})") from None
    if df.empty:
        raise FastmaskError(f"{path}: no rows under the header")
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda col: col.str.strip())


def _require_columns(df: pd.DataFrame, columns, path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ",".join(df.columns)
        raise FastmaskError(f"{path}: missing column(s) {', '.join(missing)} (has {have})")


def _parse_row(row: dict, where: str) -> tuple[str, str, str, int]:
    """(id, gender, race, age) of one train.csv row, checked against its folder name."""
    for col in TRAIN_COLUMNS:
        if not row[col]:
            raise FastmaskError(f"{where}: {col} is empty")
    pid, gender, race, age_text = row["id"], row["gender"], row["race"], row["age"]
    if gender not in GENDERS:
        raise FastmaskError(f"{where}: gender {gender!r} is not one of {', '.join(GENDERS)}")
    try:
        age = int(age_text)
    except ValueError:
        raise FastmaskError(f"{where}: age {age_text!r} is not a whole number") from None
    if not 0 <= age <= MAX_AGE:
        raise FastmaskError(f"{where}: age {age} is outside 0..{MAX_AGE}")
    folder = row["path"]
    parts = folder.split("_")
    if len(parts) < 4 or "/" in folder or "\\" in folder:
        raise FastmaskError(f"{where}: path {folder!r} is not <id>_<gender>_<race>_<age>")
    # Race sits between gender and age, so an underscore inside it would still parse.
    named = {"id": parts[0], "gender": parts[1], "race": "_".join(parts[2:-1]), "age": parts[-1]}
    actual = {"id": pid, "gender": gender, "race": race, "age": age_text}
    for field in ("id", "gender", "race", "age"):
        if named[field] != actual[field]:
            raise FastmaskError(
                f"{where}: folder {folder!r} says {field} {named[field]!r} "
                f"but the {field} column says {actual[field]!r}")
    return pid, gender, race, age


def _image_problem(path: str, size: int, decode: bool = False) -> str | None:
    """A one-line problem with the image, or None.

    By default PIL parses the header only: decoding 18,900 images takes minutes, and the cache build
    decodes every image anyway and names the one that fails. With `decode` (skip_bad) the image is
    decoded the way training will read it, since a truncated JPEG has a good header and would only
    fail mid-run, where it can no longer be skipped."""
    if size == 0:
        return f"{path}: zero-byte image"
    if decode:
        try:
            load_image(path)
        except FastmaskError as e:
            return str(e)
        return None
    try:
        with Image.open(path):
            pass
    except Exception as e:  # PIL raises many types on garbage; any of them means unreadable
        return f"{path}: not a readable image ({_unreadable(e)})"
    return None


def _scan_folder(folder: Path) -> tuple[dict, str | None]:
    """{stem: (file name, byte size)} of the 7 photos, or a one-line problem naming the folder."""
    found: dict[str, list[tuple[str, int]]] = {}
    unexpected, broken = [], {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if _ignored(entry.name):
                continue
            stem, ext = os.path.splitext(entry.name)
            try:
                photo = stem in PHOTOS and ext.lower() in IMAGE_EXTS and entry.is_file()
                if photo:
                    found.setdefault(stem, []).append((entry.name, entry.stat().st_size))
                else:
                    unexpected.append(entry.name)
            except OSError as e:  # a symlink to itself or to nowhere reachable: name it, not a traceback
                broken[stem] = f"{entry.name} ({e.strerror})"
    faults = []
    if broken:
        faults.append("unreadable " + ", ".join(sorted(broken.values())))
    missing = [s for s in PHOTOS if s not in found and s not in broken]
    if missing:
        faults.append("missing " + ", ".join(missing))
    doubled = sorted(n for files in found.values() if len(files) > 1 for n, _ in files)
    if doubled:
        faults.append("same photo twice " + ", ".join(doubled))
    if unexpected:
        faults.append("unexpected " + ", ".join(sorted(unexpected)))
    if faults:
        expected = ", ".join(PHOTOS)
        return {}, f"{folder}: {'; '.join(faults)} (expected {expected} as .jpg/.jpeg/.png/.webp)"
    return {stem: files[0] for stem, files in found.items()}, None


def _roster(root: Path) -> list[tuple[str, str, str, str, int]]:
    """(folder, id, gender, race, age) per train.csv row, sorted by folder."""
    csv_path = root / "train.csv"
    table = _read_csv(csv_path)
    _require_columns(table, TRAIN_COLUMNS, csv_path)
    seen: dict[str, int] = {}
    rows = []
    for i, row in enumerate(table[list(TRAIN_COLUMNS)].to_dict("records")):
        line = i + 2  # the header is line 1
        where = f"{csv_path} line {line}"
        pid, gender, race, age = _parse_row(row, where)
        folder = row["path"]
        if folder in seen:
            raise FastmaskError(f"{where}: folder {folder!r} already named on line {seen[folder]}")
        seen[folder] = line
        rows.append((folder, pid, gender, race, age))
    return sorted(rows)


def _folder_problems(images: Path, named: set[str]) -> list[tuple[str, str]]:
    """Rows without a folder, and folders without a row: the roster and the disk disagree."""
    on_disk = {e.name for e in os.scandir(images) if e.is_dir() and not _ignored(e.name)}
    problems = [("folder", f"{images / f}: folder not found (named by train.csv)")
                for f in sorted(named - on_disk)]
    problems += [("folder", f"{images / f}: folder not named by any train.csv row")
                 for f in sorted(on_disk - named)]
    return problems


def _report(problems: list[tuple[str, str]], skip_bad: bool) -> None:
    """Raise on the first (kind, message) problem, or with skip_bad warn once with the counts."""
    if not problems:
        return
    first, n = problems[0][1], len(problems)
    if not skip_bad:
        more = f" [+{n - 1} more bad folders/images; skip_bad=True skips them]" if n > 1 else ""
        raise FastmaskError(first + more)
    folders = sum(kind == "folder" for kind, _ in problems)
    warnings.warn(f"skipped {n} bad: {folders} folder(s), {n - folders} image(s); first: {first}",
                  stacklevel=3)


def read_train(root, skip_bad: bool = False, threshold: int = AGE_THRESHOLD) -> pd.DataFrame:
    """One row per training image, columns COLUMNS, sorted by folder then PHOTOS order.

    `root` holds train.csv and images/. Bad input raises FastmaskError; with skip_bad=True bad
    folders (missing, wrong photo set, no row) and bad images are dropped with one warning, and
    every image is fully decoded so that one which would fail mid-training is dropped too."""
    root = _as_dir(root, "train folder")
    roster = _roster(root)
    images = _as_dir(root / "images", "images folder")
    problems = _folder_problems(images, {r[0] for r in roster})
    records = []
    for folder, pid, gender, race, age in roster:
        folder_path = images / folder
        if not folder_path.is_dir():
            continue  # already reported by _folder_problems
        photos, problem = _scan_folder(folder_path)
        if problem:
            problems.append(("folder", problem))
            continue
        for stem, mask in PHOTOS.items():
            name, size = photos[stem]
            path = str(folder_path / name)
            bad = _image_problem(path, size, decode=skip_bad)
            if bad:
                problems.append(("image", bad))
                continue
            records.append((path, pid, folder, stem, gender, race, age, mask,
                            label_of(mask, gender, age, threshold)))
    _report(problems, skip_bad)
    if not records:
        raise FastmaskError(f"{root}: no usable training images")
    df = pd.DataFrame.from_records(records, columns=COLUMNS)
    return df.astype({"age": "int64", "label": "int64"})


def _info_ids(root: Path) -> tuple[Path, list[str]]:
    info_path = root / "info.csv"
    info = _read_csv(info_path)
    _require_columns(info, ["ImageID"], info_path)
    ids = info["ImageID"].tolist()
    dup = info["ImageID"].duplicated()
    if dup.any():
        raise FastmaskError(f"{info_path}: ImageID {ids[int(np.argmax(dup))]!r} appears twice")
    if "" in ids:
        raise FastmaskError(f"{info_path} line {ids.index('') + 2}: ImageID is empty")
    return info_path, ids


def _is_file(entry) -> bool:
    try:
        return entry.is_file()
    except OSError:  # a symlink loop: not a usable file (read_eval names it)
        return False


def read_eval(root) -> pd.DataFrame:
    """`ImageID` and absolute `path`, in info.csv order (the order a submission must keep)."""
    root = _as_dir(root, "eval folder")
    info_path, ids = _info_ids(root)
    images = _as_dir(root / "images", "images folder")
    # One listing instead of 12,600 stat calls.
    present = {e.name for e in os.scandir(images) if _is_file(e) and not _ignored(e.name)}
    missing = [i for i in ids if i not in present]
    for i in missing[:1]:
        try:
            os.stat(images / i)
        except OSError as e:
            if e.errno != errno.ENOENT:  # there, but a symlink loop or unreadable: say so
                raise FastmaskError(f"{images / i}: unreadable ({e.strerror})") from None
    if missing:
        raise FastmaskError(f"{images}: {len(missing)} of {len(ids)} images listed in "
                            f"{info_path.name} are missing (first: {missing[0]})")
    return pd.DataFrame({"ImageID": ids, "path": [str(images / i) for i in ids]})


def read_answers(root) -> pd.DataFrame | None:
    """answers.csv (ImageID, ans[, person]) aligned to info.csv order, or None when absent.

    Only a synthetic twin has answers; the real eval set never does."""
    root = _as_dir(root, "eval folder")
    path = root / "answers.csv"
    if not path.exists():
        return None
    _, ids = _info_ids(root)
    answers = _read_csv(path)
    _require_columns(answers, ["ImageID", "ans"], path)
    dup = answers["ImageID"].duplicated()
    if dup.any():
        raise FastmaskError(f"{path}: ImageID {answers['ImageID'][dup].iloc[0]!r} appears twice")
    ans = pd.to_numeric(answers["ans"], errors="coerce")
    bad = ans.isna() | (ans % 1 != 0) | (ans < 0) | (ans > 17)
    if bad.any():
        i = int(np.argmax(bad))
        raise FastmaskError(f"{path} line {i + 2}: ans {answers['ans'][i]!r} is not a class 0..17")
    have, want = set(answers["ImageID"]), set(ids)
    if have != want:
        lacking = [i for i in ids if i not in have]
        extra = [i for i in answers["ImageID"] if i not in want]
        parts = []
        if lacking:
            parts.append(f"{len(lacking)} info.csv images without an answer (first: {lacking[0]})")
        if extra:
            parts.append(f"{len(extra)} answers for images not in info.csv (first: {extra[0]})")
        raise FastmaskError(f"{path}: disagrees with info.csv: {'; '.join(parts)}")
    by_id = dict(zip(answers["ImageID"], ans.astype("int64")))
    out = pd.DataFrame({"ImageID": ids, "ans": [int(by_id[i]) for i in ids]})
    if "person" in answers:  # the twin names each eval image's person, so holdout verdicts resample people
        out["person"] = out["ImageID"].map(dict(zip(answers["ImageID"], answers["person"].astype(str))))
    return out


def locate(data_dir) -> tuple[Path, Path | None]:
    """(train root, eval root or None) from a download folder holding train/ (and eval/),
    or from a folder that itself holds train.csv."""
    data = _as_dir(data_dir, "data folder")
    if (data / "train.csv").is_file():
        return data, None
    train = data / "train"
    if not train.is_dir():
        raise FastmaskError(f"{data}: holds neither train/ nor train.csv")
    if not (train / "train.csv").is_file():
        raise FastmaskError(f"{train / 'train.csv'}: file not found")
    ev = data / "eval"
    return train, (ev if ev.is_dir() else None)


def fingerprint(df: pd.DataFrame) -> str:
    """16 hex digits over (folder/file, byte size, labels) per row, independent of row order
    and of where the data lives, so two runs on copies of the same data match."""
    if "path" not in df.columns:
        raise FastmaskError("fingerprint: the DataFrame has no 'path' column")
    fields = [c for c in ("ImageID", "person", "gender", "race", "age", "mask", "label")
              if c in df.columns]
    lines = []
    for path, *values in zip(df["path"], *(df[c] for c in fields)):
        try:
            size = os.stat(path).st_size
        except OSError:
            raise FastmaskError(f"{path}: file not found (fingerprint)") from None
        rel = "/".join(Path(path).parts[-2:])
        lines.append("\t".join([rel, str(size), *map(str, values)]))
    lines.sort()
    digest = hashlib.sha256("\t".join(["path", "bytes", *fields]).encode())
    digest.update("\n".join(lines).encode())
    return digest.hexdigest()[:16]


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im.copy()
    if im.mode == "I" or im.mode.startswith("I;16"):
        # 16-bit grey: PIL's convert clips at 255 (a white image); scale into 8 bits instead.
        grey = np.asarray(im, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).convert("RGB")
    if "A" in im.getbands() or "transparency" in im.info:
        # Transparent pixels go black: alpha is dropped onto a black background.
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", im.size, (0, 0, 0, 255)), rgba).convert("RGB")
    return im.convert("RGB")


def load_image(path) -> Image.Image:
    """The image upright as RGB (EXIF orientation applied; grey, palette, alpha and 16-bit images
    converted); FastmaskError if it cannot be decoded."""
    try:
        with Image.open(path) as im:
            im.load()
            # Phones store pixels as the sensor saw them and say "rotate" in EXIF: honour it.
            ImageOps.exif_transpose(im, in_place=True)
            return to_rgb(im)
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError... on bad files
        raise FastmaskError(f"{path}: cannot read image ({_unreadable(e)})") from None

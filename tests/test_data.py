"""data.py against a small tree with the real data set's quirks (see dataset-facts.md)."""
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fastmask.data import layout as data
from fastmask.errors import FastmaskError
from fastmask.labels import label_of

STEMS = ["mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal"]
# (id, gender, age, {stem: extension}); race is Asian for everyone, as in the real set.
PEOPLE = [
    ("003397", "female", 20, dict.fromkeys(STEMS, ".jpeg")),  # listed before its twin on purpose
    ("000001", "female", 45, {**dict.fromkeys(STEMS, ".jpg"), "mask2": ".JPG"}),
    ("000002", "male", 30, {s: (".jpg" if i % 2 else ".jpeg") for i, s in enumerate(STEMS)}),
    ("000003", "female", 60, dict.fromkeys(STEMS, ".png")),
    ("003397", "female", 19, dict.fromkeys(STEMS, ".jpg")),
]
N_IMAGES = 7 * len(PEOPLE)
# What macOS leaves in a copied folder: AppleDouble header bytes, not an image.
APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 64


def folder_of(pid, gender, age):
    return f"{pid}_{gender}_Asian_{age}"


def write_image(path, mode="RGB", value=100):
    arr = np.full((8, 8, 3), value, np.uint8)
    im = Image.fromarray(arr)
    if mode == "L":
        im = im.convert("L")
    elif mode == "RGBA":
        im = im.convert("RGBA")
        im.putalpha(Image.fromarray(np.tile(np.array([0, 255] * 4, np.uint8), (8, 1))))
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}[Path(path).suffix.lower()]
    im.save(path, format=fmt)


def write_csv(root, people):
    rows = [dict(id=p, gender=g, race="Asian", age=str(a), path=folder_of(p, g, a))
            for p, g, a, _ in people]
    pd.DataFrame(rows, columns=["id", "gender", "race", "age", "path"]).to_csv(
        root / "train.csv", index=False)


def make_train(root: Path) -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    write_csv(root, PEOPLE)
    for pid, gender, age, exts in PEOPLE:
        folder = images / folder_of(pid, gender, age)
        folder.mkdir()
        for stem, ext in exts.items():
            mode = {("000003", "normal"): "L", ("000003", "incorrect_mask"): "RGBA"}.get(
                (pid, stem), "RGB")
            write_image(folder / f"{stem}{ext}", mode)
    # The quirks a blind glob trips on.
    (images / "000001_female_Asian_45" / "._mask1.jpg").write_bytes(APPLEDOUBLE)
    (images / "000003_female_Asian_60" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    fork_dir = images / "._000002_male_Asian_30"
    fork_dir.mkdir()
    (fork_dir / "._mask1.jpg").write_bytes(APPLEDOUBLE)
    (images / ".ipynb_checkpoints").mkdir()
    ckpt = images / "000002_male_Asian_30" / ".ipynb_checkpoints"
    ckpt.mkdir()
    write_image(ckpt / "mask1-checkpoint.jpg")
    (images / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return root


@pytest.fixture
def train_root(tmp_path):
    return make_train(tmp_path / "train")


@pytest.fixture
def eval_root(tmp_path):
    root = tmp_path / "eval"
    (root / "images").mkdir(parents=True)
    ids = ["cbc5.jpg", "0a1b.png", "ffee.jpeg", "1234.jpg"]  # deliberately unsorted
    for i in ids:
        write_image(root / "images" / i)
    (root / "images" / "._cbc5.jpg").write_bytes(APPLEDOUBLE)
    pd.DataFrame({"ImageID": ids, "ans": 0}).to_csv(root / "info.csv", index=False)
    return root


# ---------------------------------------------------------------- read_train: the good path

def test_rows_columns_and_order(train_root):
    df = data.read_train(train_root)
    assert len(df) == N_IMAGES
    assert set(data.COLUMNS) <= set(df.columns)
    assert df.index.tolist() == list(range(N_IMAGES))
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in df["path"])
    assert df["folder"].tolist() == sorted(df["folder"])
    assert df["file"].tolist()[:7] == STEMS
    assert df["age"].dtype == np.int64 and df["label"].dtype == np.int64
    assert set(df["person"]) == {"000001", "000002", "000003", "003397"}  # zeros kept
    assert set(df["race"]) == {"Asian"}


def test_labels_by_hand(train_root):
    df = data.read_train(train_root).set_index(["folder", "file"])["label"]
    assert df["000003_female_Asian_60", "incorrect_mask"] == 1 * 6 + 1 * 3 + 2  # 11
    assert df["000002_male_Asian_30", "mask4"] == 0 * 6 + 0 * 3 + 1  # 1
    assert df["000001_female_Asian_45", "normal"] == 2 * 6 + 1 * 3 + 1  # 16
    assert df["003397_female_Asian_19", "mask1"] == 0 * 6 + 1 * 3 + 0  # 3


def test_masks_and_labels_follow_the_code(train_root):
    df = data.read_train(train_root)
    want_mask = {"incorrect_mask": "incorrect", "normal": "not_wear"}
    assert (df["mask"] == df["file"].map(lambda f: want_mask.get(f, "wear"))).all()
    assert df["label"].tolist() == [label_of(m, g, a) for m, g, a in
                                    zip(df["mask"], df["gender"], df["age"])]
    older = data.read_train(train_root, threshold=45).set_index(["folder", "file"])["label"]
    assert older["000001_female_Asian_45", "mask1"] == 0 * 6 + 1 * 3 + 2


def test_duplicated_id_is_one_person(train_root):
    df = data.read_train(train_root)
    twin = df[df["person"] == "003397"]
    assert len(twin) == 14
    assert set(twin["folder"]) == {"003397_female_Asian_19", "003397_female_Asian_20"}
    assert df["person"].nunique() == 4 and df["folder"].nunique() == 5


def test_mixed_extensions_and_ignored_entries(train_root):
    df = data.read_train(train_root)
    names = {Path(p).name for p in df["path"]}
    assert {"mask1.jpeg", "mask2.jpg", "mask2.JPG", "normal.png", "mask1.jpg"} <= names
    mixed = {Path(p).suffix for p in df.loc[df["person"] == "000002", "path"]}
    assert mixed == {".jpg", ".jpeg"}
    assert not any(part.startswith(".") for p in df["path"] for part in Path(p).parts[-2:])


def test_csv_whitespace_and_ids_stay_strings(train_root):
    text = (train_root / "train.csv").read_text().replace(",female,", ", female ,")
    (train_root / "train.csv").write_text(text)
    assert set(data.read_train(train_root)["person"]) == {"000001", "000002", "000003", "003397"}


# ---------------------------------------------------------------- read_train: bad input

def _rm(rel):
    return lambda root: (root / rel).unlink()


def _write(rel, content):
    return lambda root: (root / rel).write_bytes(content)


def _edit_csv(old, new):
    def edit(root):
        p = root / "train.csv"
        text = p.read_text()
        assert old in text
        p.write_text(text.replace(old, new, 1))
    return edit


def _orphan(root):
    folder = root / "images" / "000099_male_Asian_20"
    folder.mkdir()
    for s in STEMS:
        write_image(folder / f"{s}.jpg")


def _drop_column(col):
    def edit(root):
        p = root / "train.csv"
        pd.read_csv(p, dtype=str).drop(columns=[col]).to_csv(p, index=False)
    return edit


F1 = "images/000001_female_Asian_45"
BAD = {
    "no train.csv": (_rm("train.csv"), ["train.csv", "not found"]),
    "empty train.csv": (_write("train.csv", b""), ["train.csv", "empty"]),
    "header only": (_write("train.csv", b"id,gender,race,age,path\n"), ["train.csv", "no rows"]),
    "missing column": (_drop_column("age"), ["train.csv", "age"]),
    "missing photo": (_rm(f"{F1}/mask3.jpg"), ["000001_female_Asian_45", "mask3"]),
    "extra photo": (lambda r: write_image(r / F1 / "mask6.jpg"), ["000001_female_Asian_45",
                                                                  "mask6.jpg"]),
    "wrong name": (lambda r: (r / F1 / "normal.jpg").rename(r / F1 / "Normal.jpg"),
                   ["000001_female_Asian_45", "normal", "Normal.jpg"]),
    "photo twice": (lambda r: write_image(r / F1 / "mask1.png"), ["mask1.jpg", "mask1.png"]),
    "folder missing": (lambda r: shutil.rmtree(r / "images/000002_male_Asian_30"),
                       ["000002_male_Asian_30", "not found"]),
    "gender disagrees": (_edit_csv("000002,male,", "000002,female,"),
                         ["train.csv line", "000002_male_Asian_30", "gender"]),
    "age disagrees": (_edit_csv("Asian,45,", "Asian,46,"), ["000001_female_Asian_45", "age"]),
    "orphan folder": (_orphan, ["000099_male_Asian_20", "not named"]),
    "zero-byte": (_write(f"{F1}/mask4.jpg", b""), ["000001_female_Asian_45/mask4.jpg",
                                                   "zero-byte"]),
    "garbage": (_write(f"{F1}/normal.jpg", os.urandom(300)), ["000001_female_Asian_45/normal.jpg",
                                                             "not a readable image"]),
    "bad gender": (_edit_csv("000002,male,Asian,30,000002_male", "000002,M,Asian,30,000002_M"),
                   ["gender", "'M'"]),
    "bad age": (_edit_csv("Asian,45,000001_female_Asian_45", "Asian,old,000001_female_Asian_old"),
                ["age", "'old'"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_names_the_culprit(train_root, case):
    mutate, words = BAD[case]
    mutate(train_root)
    with pytest.raises(FastmaskError) as info:
        data.read_train(train_root)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_root(tmp_path):
    with pytest.raises(FastmaskError, match="nowhere.*not found"):
        data.read_train(tmp_path / "nowhere")


def test_skip_bad_skips_and_counts(train_root):
    (train_root / F1 / "mask4.jpg").write_bytes(b"")
    (train_root / "images/000002_male_Asian_30/mask3.jpeg").unlink()
    _orphan(train_root)
    with pytest.raises(FastmaskError, match=r"\+2 more"):
        data.read_train(train_root)
    with pytest.warns(UserWarning, match=r"skipped 3 bad: 2 folder\(s\), 1 image\(s\); first:") as rec:
        df = data.read_train(train_root, skip_bad=True)
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    assert len(df) == N_IMAGES - 7 - 1
    assert "000002_male_Asian_30" not in set(df["folder"])
    assert "000099_male_Asian_20" not in set(df["folder"])
    assert not df["path"].str.endswith("000001_female_Asian_45/mask4.jpg").any()


def test_skip_bad_still_raises_on_csv_faults(train_root):
    _edit_csv("000002,male,", "000002,female,")(train_root)
    with pytest.raises(FastmaskError, match="gender"):
        data.read_train(train_root, skip_bad=True)


def test_no_warning_on_clean_tree(train_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.read_train(train_root, skip_bad=True)


# ---------------------------------------------------------------- eval and answers

def test_read_eval_keeps_info_order(eval_root):
    df = data.read_eval(eval_root)
    assert df["ImageID"].tolist() == ["cbc5.jpg", "0a1b.png", "ffee.jpeg", "1234.jpg"]
    assert df["path"].tolist() == [str(eval_root / "images" / i) for i in df["ImageID"]]


def test_read_eval_missing_images_counted(eval_root):
    (eval_root / "images" / "ffee.jpeg").unlink()
    (eval_root / "images" / "1234.jpg").unlink()
    with pytest.raises(FastmaskError, match=r"2 of 4 .*first: ffee\.jpeg"):
        data.read_eval(eval_root)


def test_read_eval_bad_roots(tmp_path, eval_root):
    with pytest.raises(FastmaskError, match="not found"):
        data.read_eval(tmp_path / "missing")
    pd.DataFrame({"id": ["cbc5.jpg"]}).to_csv(eval_root / "info.csv", index=False)
    with pytest.raises(FastmaskError, match="info.csv.*ImageID"):
        data.read_eval(eval_root)
    (eval_root / "info.csv").unlink()
    with pytest.raises(FastmaskError, match="info.csv"):
        data.read_eval(eval_root)


def test_read_answers_aligned_to_info(eval_root):
    assert data.read_answers(eval_root) is None
    pd.DataFrame({"ImageID": ["1234.jpg", "cbc5.jpg", "ffee.jpeg", "0a1b.png"],
                  "ans": [4, 17, 0, 9]}).to_csv(eval_root / "answers.csv", index=False)
    ans = data.read_answers(eval_root)
    assert ans["ImageID"].tolist() == data.read_eval(eval_root)["ImageID"].tolist()
    assert ans["ans"].tolist() == [17, 9, 0, 4]


@pytest.mark.parametrize("ids,ans,words", [
    (["1234.jpg", "cbc5.jpg", "ffee.jpeg"], [1, 2, 3], ["without an answer", "0a1b.png"]),
    (["1234.jpg", "cbc5.jpg", "ffee.jpeg", "0a1b.png", "zz.jpg"], [1] * 5, ["not in info", "zz"]),
    (["1234.jpg", "cbc5.jpg", "ffee.jpeg", "0a1b.png"], [1, 2, 18, 3], ["line 4", "18"]),
])
def test_read_answers_mismatch(eval_root, ids, ans, words):
    pd.DataFrame({"ImageID": ids, "ans": ans}).to_csv(eval_root / "answers.csv", index=False)
    with pytest.raises(FastmaskError) as info:
        data.read_answers(eval_root)
    assert all(w in str(info.value) for w in ["answers.csv", *words]), str(info.value)


# ---------------------------------------------------------------- locate

def test_locate(tmp_path, train_root, eval_root):
    assert data.locate(tmp_path) == (train_root, eval_root)
    assert data.locate(train_root) == (train_root, None)
    shutil.rmtree(eval_root)
    assert data.locate(tmp_path) == (train_root, None)
    with pytest.raises(FastmaskError, match="gone"):
        data.locate(tmp_path / "gone")
    with pytest.raises(FastmaskError, match="neither"):
        data.locate(train_root / "images")


# ---------------------------------------------------------------- fingerprint

def test_fingerprint_tracks_files_not_location(tmp_path, train_root):
    df = data.read_train(train_root)
    fp = data.fingerprint(df)
    assert len(fp) == 16 and fp == data.fingerprint(df.iloc[::-1])
    copy = shutil.copytree(train_root, tmp_path / "copy")
    assert data.fingerprint(data.read_train(copy)) == fp
    write_image(copy / F1 / "mask3.jpg", value=7)
    (copy / F1 / "mask3.jpg").write_bytes((copy / F1 / "mask3.jpg").read_bytes() + b"\0" * 10)
    assert data.fingerprint(data.read_train(copy)) != fp
    assert data.fingerprint(data.read_train(train_root, threshold=45)) != fp
    assert data.fingerprint(df.iloc[:-1]) != fp


def test_loaded_data_carries_its_fingerprint_computed_once(tmp_path, train_root, monkeypatch):
    """The run, its parent on demand, the queue and the search read `loaded.fingerprint`: one pass over the files."""
    from fastmask.data.load import load_data
    calls = []
    real = data.fingerprint
    monkeypatch.setattr(data, "fingerprint", lambda df: calls.append(len(df)) or real(df))
    loaded = load_data(tmp_path)  # tmp_path holds train/ (the fixture) and no eval/
    assert loaded.fingerprint == loaded.fingerprint == real(data.read_train(train_root)) and len(calls) == 1


# ---------------------------------------------------------------- load_image

def test_load_image_converts_to_rgb(train_root, tmp_path):
    folder = train_root / "images/000003_female_Asian_60"
    for name in ("normal.png", "incorrect_mask.png", "mask1.png"):
        im = data.load_image(folder / name)
        assert im.mode == "RGB" and im.size == (8, 8)
    rgba = np.asarray(data.load_image(folder / "incorrect_mask.png"))
    assert rgba[0, 0].tolist() == [0, 0, 0] and rgba[0, 1].tolist() == [100, 100, 100]
    pal = Image.fromarray(np.full((8, 8, 3), 50, np.uint8)).convert("P")
    pal.save(tmp_path / "p.png")
    assert data.load_image(tmp_path / "p.png").mode == "RGB"
    deep = Image.fromarray(np.full((8, 8), 65535 // 2, np.uint16))
    deep.save(tmp_path / "deep.png")
    assert 120 <= np.asarray(data.load_image(tmp_path / "deep.png")).mean() <= 135


@pytest.mark.parametrize("content", [b"", b"garbage" * 20, APPLEDOUBLE])
def test_load_image_bad_file(tmp_path, content):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(FastmaskError, match="bad.jpg"):
        data.load_image(p)


def test_load_image_truncated(train_root):
    p = train_root / F1 / "mask1.jpg"
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(FastmaskError, match="mask1.jpg"):
        data.load_image(p)


def test_load_image_applies_exif_orientation(tmp_path):
    # Stored 40 wide x 20 high, left red, right blue, tagged "rotate 90 clockwise" (orientation 6).
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20], a[:, 20:] = (255, 0, 0), (0, 0, 255)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "side.jpg", exif=exif.tobytes(), quality=95)
    up = data.load_image(tmp_path / "side.jpg")
    assert up.size == (20, 40)
    px = np.asarray(up)
    assert px[2, 10].argmax() == 0 and px[-3, 10].argmax() == 2  # red on top, blue below


def test_skip_bad_decodes_and_skips_a_truncated_jpeg(train_root):
    p = train_root / F1 / "mask1.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(p, quality=95)
    p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])  # header intact, pixels cut off
    assert len(data.read_train(train_root)) == N_IMAGES  # without skip_bad: headers only, fast
    with pytest.warns(UserWarning, match=r"skipped 1 bad: 0 folder\(s\), 1 image\(s\); first: .*mask1\.jpg") as rec:
        df = data.read_train(train_root, skip_bad=True)
    assert len(rec) == 1
    assert len(df) == N_IMAGES - 1 and not df["path"].str.endswith(f"{F1}/mask1.jpg").any()

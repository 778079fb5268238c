"""The relabel loop's data side: relabel.csv in the data folder is applied before the split, scores use the
corrected labels, training uses them only with relabel=True, the fingerprint and the card show them, and a
bad row is one line naming the file and line."""
import json
import shutil

import pytest

from fastmask.data.layout import fingerprint
from fastmask.data.load import load_data
from fastmask.data.relabel import RELABEL, apply, read_corrections
from fastmask.errors import FastmaskError

from conftest import TINY, in_process


def code(mask, gender, age):
    """The class code of dataset-facts.md, written out: mask * 6 + gender * 3 + age group."""
    m = {"wear": 0, "incorrect": 1, "not_wear": 2}[mask]
    g = {"male": 0, "female": 1}[gender]
    return m * 6 + g * 3 + (0 if age < 30 else 1 if age < 60 else 2)


@pytest.fixture
def data_dir(twin, tmp_path):
    """A copy of the tiny twin, free to hold a relabel.csv."""
    d = tmp_path / "data"
    shutil.copytree(twin, d)
    return d


def write(d, *rows):
    (d / RELABEL).write_text("id,field,value,note\n" + "".join(r + "\n" for r in rows))


def test_corrections_change_the_labels_scored_and_keep_the_given_ones(data_dir):
    plain = load_data(data_dir, progress=False).train
    row = plain[plain["file"] == "normal"].iloc[0]
    other = plain[plain["person"] != row["person"]].iloc[0]
    new_gender = "female" if other["gender"] == "male" else "male"
    write(data_dir, f"{row['folder']}/normal.jpg,mask,incorrect,strap below the chin",
          f"{other['person']},gender,{new_gender},")
    data = load_data(data_dir, progress=False)
    df = data.train
    fixed = df[(df["folder"] == row["folder"]) & (df["file"] == "normal")].iloc[0]
    assert (fixed["mask"], fixed["label"]) == ("incorrect", code("incorrect", row["gender"], row["age"]))
    assert (fixed["given_mask"], fixed["given_label"]) == ("not_wear", code("not_wear", row["gender"], row["age"]))
    theirs = df[df["person"] == other["person"]]
    assert len(theirs) == 7 and set(theirs["gender"]) == {new_gender} and set(theirs["given_gender"]) == {other["gender"]}
    assert list(theirs["label"]) == [code(m, new_gender, a) for m, a in zip(theirs["mask"], theirs["age"])]
    untouched = df[~df["person"].isin([row["person"], other["person"]])]
    assert (untouched["label"] == untouched["given_label"]).all()
    assert fingerprint(df) != fingerprint(plain)
    assert [(c["line"], c["field"], c["from"], c["to"], c["images"]) for c in data.relabel["corrections"]] == [
        (2, "mask", "not_wear", "incorrect", 1), (3, "gender", other["gender"], new_gender, 7)]


def test_training_learns_the_corrections_only_with_relabel_true(data_dir):
    from fastmask.data.dls import build_dls
    from fastmask.recipe import load_recipe, parse_sets
    plain = load_data(data_dir, progress=False).train
    everyone = sorted(plain["person"].unique())
    to = {p: "female" if g == "male" else "male" for p, g in plain.groupby("person")["gender"].first().items()}
    write(data_dir, *(f"{p},gender,{to[p]}," for p in everyone))  # everyone flipped: both sides of the split
    data = load_data(data_dir, progress=False)
    r = load_recipe("recipes/person_split.py", parse_sets(TINY[1::2]))
    for relabel in (False, True):
        dls = build_dls(r.variant(relabel=relabel), data.train)
        train, valid = dls.train.items, dls.valid.items
        assert (train["y"] == (train["label"] if relabel else train["given_label"])).all()
        assert (valid["y"] == valid["label"]).all()  # scored on the corrected labels either way
        assert (train["label"] != train["given_label"]).all()


@pytest.mark.parametrize("rows, message", [
    (["000001,gender,other,"], "relabel.csv:2: gender 'other' is not one of male, female"),
    (["x/normal,colour,red,"], "relabel.csv:2: unknown field 'colour'; corrections set one of gender, age, mask"),
    (["", "000001,age,old,"], "relabel.csv:3: age 'old' is not a whole number of years (0..120)"),
    (["000001,mask,wear"], "relabel.csv:2: mask is corrected per photo (<folder>/<photo>), not per person"),
    (["999999,age,40,"], "relabel.csv:2: person id '999999' is not in the training data"),
    (["000001"], "relabel.csv:2: expected id,field,value[,note], got '000001'"),
])
def test_a_bad_row_names_its_line(data_dir, rows, message):
    people = load_data(data_dir, progress=False).train["person"]
    rows = [r.replace("000001", people.iloc[0]) for r in rows]
    write(data_dir, *rows)
    with pytest.raises(FastmaskError) as e:
        load_data(data_dir, progress=False)
    assert str(e.value) == f"{data_dir / RELABEL}:" + message.split(":", 1)[1].replace("000001", people.iloc[0])


def test_a_bad_header_is_refused(tmp_path):
    (tmp_path / RELABEL).write_text("image,field,value\n")
    with pytest.raises(FastmaskError, match=r"relabel.csv:1: the header must be id,field,value,note"):
        read_corrections(tmp_path / RELABEL)


def test_an_unknown_image_is_refused(data_dir):
    df = load_data(data_dir, progress=False).train
    with pytest.raises(FastmaskError, match=r"x:2: image 'nobody/normal.jpg' is not in the training data"):
        apply(df, read_corrections_from(data_dir, "nobody/normal.jpg,mask,wear,"), where="x")


def read_corrections_from(d, row):
    write(d, row)
    return read_corrections(d / RELABEL)


def test_the_relabel_recipe_is_judged_and_its_card_lists_the_corrections(data_dir, tmp_path):
    df = load_data(data_dir, progress=False).train
    row = df[df["file"] == "mask1"].iloc[0]
    write(data_dir, f"{row['folder']}/mask1,mask,incorrect,chin strap")
    runs = tmp_path / "runs"
    p = in_process("run", "recipes/relabel.py", *TINY, "--data", data_dir, "--runs", runs)
    assert p.returncode == 0, p.stderr[-2000:]
    child = next(runs.glob("*-relabel"))
    cfg = json.loads((child / "config.json").read_text())
    assert cfg["changed"] == {"relabel": [False, True]} and cfg["relabel"]["corrections"][0]["to"] == "incorrect"
    parent = next(runs.glob("*-oversample"))  # trained first, on the same data: one fingerprint, one verdict
    assert json.loads((parent / "config.json").read_text())["data_fingerprint"] == cfg["data_fingerprint"]
    card = (child / "card.md").read_text()
    assert "**Relabelled.** 1 correction(s)" in card and "this run trained on them (relabel=True)" in card
    assert f"- line 2: `{row['folder']}/mask1` mask 'wear' → 'incorrect' (chin strap)" in card
    assert json.loads((child / "metrics.json").read_text())["verdict"]["parent_run"] == parent.name  # judged against it


def test_a_bad_relabel_file_stops_the_run_in_one_line_before_any_folder(data_dir, tmp_path):
    write(data_dir, "000000/normal,mask,wear,")
    p = in_process("run", "recipes/relabel.py", *TINY, "--data", data_dir, "--runs", tmp_path / "runs")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and f"{data_dir / RELABEL}:2: image" in p.stderr
    assert not (tmp_path / "runs").exists()


# --- what people save: spreadsheets, repeated rows, a huge cell ---------------------------------------

def _person(df, i=0):
    """The i-th person of the data, their photos (in the frame's order) and given gender."""
    p = sorted(df["person"].unique())[i]
    mine = df[df["person"] == p]
    return p, list(mine["folder"] + "/" + mine["file"]), mine["gender"].iloc[0]


@pytest.mark.parametrize("rows, distinct", [
    # the same person twice: 7 + 7 images named, 7 photos
    (lambda p, photos, g: [f"{p},gender,{g},", f"{p},gender,{g},again"], 7),
    # a person's gender and age, then one of their photos' mask: 7 + 7 + 1 named, 7 photos
    (lambda p, photos, g: [f"{p},gender,{g},", f"{p},age,44,", f"{photos[0]},mask,incorrect,"], 7),
    # a photo with and without .jpg, and one photo of another person: 1 + 1 + 1 named, 2 photos
    (lambda p, photos, g: [f"{photos[1]},mask,incorrect,", f"{photos[1]}.jpg,mask,incorrect,", "OTHER,mask,wear,"], 2),
])
def test_the_card_counts_each_corrected_photo_once(data_dir, rows, distinct):
    from fastmask.report.card import _relabel
    df = load_data(data_dir, progress=False).train
    p, photos, g = _person(df)
    flip = "female" if g == "male" else "male"
    _, others, _ = _person(df, 1)
    write(data_dir, *(r.replace("OTHER", others[2]) for r in rows(p, photos, flip)))
    r = load_data(data_dir, progress=False).relabel
    assert r["images"] == distinct
    line = _relabel({"relabel": r, "fields": {"relabel": False}})[0]
    assert line.startswith(f"**Relabelled.** {len(r['corrections'])} correction(s) from `{data_dir / RELABEL}` "
                           f"({distinct} images):"), line


def test_a_spreadsheet_export_reads_as_the_plain_file(data_dir):
    """Excel's "CSV UTF-8": a byte-order mark, \\r\\n, spaces around cells, empty trailing columns, capitals."""
    df = load_data(data_dir, progress=False).train
    p, photos, g = _person(df)
    flip = "female" if g == "male" else "male"
    write(data_dir, f"{p},gender,{flip},seen in photo 3", f"{photos[0]},mask,not_wear,", f"{p},age,31,")
    plain = read_corrections(data_dir / RELABEL)
    (data_dir / RELABEL).write_bytes("\ufeff".encode() + (
        "ID , Field,Value,Note,,\r\n"
        f" {p} ,Gender, {flip.title()} ,seen in photo 3,,\r\n"
        f"{photos[0]},mask,NOT_WEAR,,,\r\n"
        ",,,,\r\n"
        f"{p},age,31\r\n").encode())
    spread = read_corrections(data_dir / RELABEL)
    assert [(c.id, c.field, c.value, c.note) for c in spread] == [(c.id, c.field, c.value, c.note) for c in plain]
    assert [c.line for c in spread] == [2, 3, 5]  # the empty row is skipped, not renumbered
    assert load_data(data_dir, progress=False).relabel["images"] == 7


def test_a_quoted_note_may_hold_commas_and_line_ends(data_dir):
    df = load_data(data_dir, progress=False).train
    _, photos, _ = _person(df)
    (data_dir / RELABEL).write_text(f'id,field,value,note\n{photos[0]},mask,wear,"a strap, then\nthe chin"\n'
                                    f'{photos[1]},mask,wear,\n')
    c = read_corrections(data_dir / RELABEL)
    assert [(x.line, x.note) for x in c] == [(2, "a strap, then\nthe chin"), (4, "")]


@pytest.mark.parametrize("rows, message", [
    # an unquoted comma in the note: is "then the chin" a fifth column or part of the note?
    (["PHOTO0,mask,wear,a strap,then the chin"], "relabel.csv:2: 5 columns, expected id,field,value[,note] (a note "
                                                  "holding a comma must be quoted, as a spreadsheet saves it)"),
    # one id and field, two values
    (["PHOTO0,mask,wear,", "PHOTO1,mask,wear,", "PHOTO0.jpg,mask,incorrect,"],
     "relabel.csv:4: sets mask of PHOTO0 to 'incorrect', but line 2 sets it to 'wear': keep one of the two rows"),
    # a person's gender, then one of their photos' gender the other way
    (["PERSON,gender,female,", "PHOTO1,gender,male,"],
     "relabel.csv:3: sets gender of PHOTO1 to 'male', but line 2 sets it to 'female': keep one of the two rows"),
    # a spreadsheet read the id as a number
    (["NUMBER,age,40,"], "relabel.csv:2: person id 'NUMBER' is not in the training data (a spreadsheet drops the "
                          "leading zeros of PERSON: save the id column as text)"),
])
def test_ambiguous_rows_are_refused_with_their_line(data_dir, rows, message):
    df = load_data(data_dir, progress=False).train
    p, photos, _ = _person(df)
    fill = {"PHOTO0": photos[0], "PHOTO1": photos[1], "PERSON": p, "NUMBER": str(int(p))}
    def filled(text):
        for k, v in fill.items():
            text = text.replace(k, v)
        return text
    write(data_dir, *map(filled, rows))
    with pytest.raises(FastmaskError) as e:
        load_data(data_dir, progress=False)
    assert str(e.value) == f"{data_dir / RELABEL}:" + filled(message).split(":", 1)[1]


def test_a_16_mb_field_is_one_line_naming_its_line(data_dir, tmp_path):
    df = load_data(data_dir, progress=False).train
    _, photos, _ = _person(df)
    (data_dir / RELABEL).write_text(f"id,field,value,note\n{photos[0]},mask,wear,\n{photos[1]},mask,wear,"
                                    + "x" * (16 << 20) + "\n")
    p = in_process("run", "recipes/relabel.py", *TINY, "--data", data_dir, "--runs", tmp_path / "runs")
    assert (p.returncode, p.stderr) == (2, f"fastmask: error: {data_dir / RELABEL}:3: a field longer than 131072 "
                                           "characters\n")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("header_only", [False, True])
def test_the_relabel_recipe_without_corrections_says_there_is_nothing_to_apply(data_dir, tmp_path, header_only):
    if header_only:
        write(data_dir)
    p = in_process("run", "recipes/relabel.py", *TINY, "--no-parent", "--data", data_dir, "--runs", tmp_path / "runs")
    assert p.returncode == 0, p.stderr[-2000:]
    what = "has no corrections" if header_only else "does not exist"
    assert (f"fastmask: warning: relabel=True, but {data_dir / RELABEL} {what}: nothing to apply; this run trains on "
            "the labels given, as a run without relabel does\n") in p.stderr

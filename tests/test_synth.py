"""The synthetic twin: real layout and quirks, label statistics, noise log, determinism, CLI."""
import csv
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastmask import synth
from fastmask.errors import FastmaskError
from fastmask.labels import age_group, label_of
from fastmask.twin import people as twin_people, write

REPO = Path(__file__).resolve().parents[1]
PEOPLE, SIZE, SEED = 40, (48, 64), 0
N_EVAL = twin_people.default_eval_people(PEOPLE)


def read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    return write.make_twin(tmp_path_factory.mktemp("a") / "twin", people=PEOPLE, seed=SEED,
                           size=SIZE, progress=False, workers=1)


@pytest.fixture(scope="module")
def twin_again(tmp_path_factory):
    # Same seed through the process pool: pixels must not depend on who drew them.
    return write.make_twin(tmp_path_factory.mktemp("b") / "twin", people=PEOPLE, seed=SEED,
                           size=SIZE, progress=False, workers=2)


@pytest.fixture(scope="module")
def persons():
    return twin_people.sample_people(PEOPLE, seed=SEED)


@pytest.fixture(scope="module")
def train_rows(twin):
    header, rows = read_csv(twin / "train" / "train.csv")
    assert header == ["id", "gender", "race", "age", "path"]
    return [dict(zip(header, r)) for r in rows]


def test_layout_and_headers(twin):
    assert sorted(os.listdir(twin)) == ["eval", "faces.csv", "noise.csv", "preview.png", "train"]
    assert sorted(os.listdir(twin / "train")) == ["images", "train.csv"]
    assert sorted(os.listdir(twin / "eval")) == ["answers.csv", "images", "info.csv"]
    assert read_csv(twin / "eval" / "info.csv")[0] == ["ImageID", "ans"]
    assert read_csv(twin / "eval" / "answers.csv")[0] == ["ImageID", "ans", "person"]
    assert tuple(read_csv(twin / "noise.csv")[0]) == write.NOISE_COLUMNS
    # Nothing half-written is left beside the twin.
    assert [p.name for p in twin.parent.iterdir()] == ["twin"]


def test_every_folder_is_a_row_with_seven_photos(twin, train_rows):
    assert len(train_rows) == PEOPLE
    folders = sorted(os.listdir(twin / "train" / "images"))
    assert folders == sorted(r["path"] for r in train_rows)
    for r in train_rows:
        assert r["path"] == f"{r['id']}_{r['gender']}_Asian_{r['age']}"
        assert r["race"] == "Asian" and r["gender"] in ("male", "female")
        assert len(r["id"]) == 6 and 1 <= int(r["id"]) <= twin_people.ID_MAX
        files = os.listdir(twin / "train" / "images" / r["path"])
        assert sorted(f.split(".")[0] for f in files) == sorted(write.PHOTOS)
    with Image.open(twin / "train" / "images" / folders[0] / os.listdir(
            twin / "train" / "images" / folders[0])[0]) as im:
        assert im.size == SIZE and im.mode == "RGB"


def test_one_id_has_two_folders_a_year_apart(train_rows):
    counts = Counter(r["id"] for r in train_rows)
    dup = [i for i, n in counts.items() if n > 1]
    assert len(dup) == 1 and counts[dup[0]] == 2
    a, b = [r for r in train_rows if r["id"] == dup[0]]
    assert abs(int(a["age"]) - int(b["age"])) == 1 and a["gender"] == b["gender"]


def test_extension_mix(twin, train_rows):
    kinds = Counter()
    for r in train_rows:
        exts = {f.rsplit(".", 1)[1] for f in os.listdir(twin / "train" / "images" / r["path"])}
        kinds[tuple(sorted(exts))] += 1
    assert kinds[("png",)] >= 1 and kinds[("jpeg",)] >= 1 and kinds[("jpeg", "jpg")] >= 1
    assert set(kinds) <= {("jpg",), ("png",), ("jpeg",), ("jpeg", "jpg")}
    assert kinds[("jpg",)] > PEOPLE / 2


def test_ages_in_range_and_old_means_sixty(train_rows):
    ages = [int(r["age"]) for r in train_rows]
    assert min(ages) >= 18 and max(ages) <= 60
    assert all(a == 60 for a in ages if a >= 60)


def test_eval_files_answers_and_ids(twin, persons):
    _, info = read_csv(twin / "eval" / "info.csv")
    _, answers = read_csv(twin / "eval" / "answers.csv")
    assert len(info) == 7 * N_EVAL
    assert [i for i, _ in info] == [i for i, _, _ in answers]
    assert {a for _, a in info} == {"0"}
    assert all(0 <= int(a) <= 17 for _, a, _ in answers)
    assert sorted(os.listdir(twin / "eval" / "images")) == sorted(i for i, _ in info)
    assert all(len(i) == 44 and i.endswith(".jpg") for i, _ in info)
    # Answers are the drawn truth: eval carries no label noise.
    truth = {write.eval_image_id(p, photo, SEED): label_of(write.PHOTO_MASK[photo], p.gender,
                                                           p.age)
             for p in persons if p.split == "eval" for photo in write.PHOTOS}
    assert {i: int(a) for i, a, _ in answers} == truth
    # each answer names its person (so a holdout verdict can resample people), 7 photos each
    person_of = {write.eval_image_id(p, photo, SEED): p.id for p in persons if p.split == "eval"
                 for photo in write.PHOTOS}
    assert {i: who for i, _, who in answers} == person_of
    train_ids = {p.id for p in persons if p.split == "train"}
    eval_ids = [p.id for p in persons if p.split == "eval"]
    assert len(set(eval_ids)) == N_EVAL and not train_ids & set(eval_ids)


def test_eval_rows_are_unsorted_like_the_real_info_csv(twin):
    # A submission written in sorted order, or answers paired by position after a sort, must fail
    # on the twin as it would on the real set: so neither file is in ImageID order.
    ids = [i for i, _ in read_csv(twin / "eval" / "info.csv")[1]]
    assert ids != sorted(ids) and ids != sorted(ids, reverse=True)
    assert ids == [i for i, _, _ in read_csv(twin / "eval" / "answers.csv")[1]]


def test_same_seed_same_bytes_and_pixels(twin, twin_again):
    for rel in ("train/train.csv", "eval/info.csv", "eval/answers.csv", "noise.csv", "faces.csv"):
        assert (twin / rel).read_bytes() == (twin_again / rel).read_bytes(), rel
    folder = sorted(os.listdir(twin / "train" / "images"))[3]
    name = sorted(os.listdir(twin / "train" / "images" / folder))[0]
    rel = Path("train") / "images" / folder / name
    assert np.array_equal(pixels(twin / rel), pixels(twin_again / rel))
    first_eval = read_csv(twin / "eval" / "info.csv")[1][0][0]
    assert np.array_equal(pixels(twin / "eval" / "images" / first_eval),
                          pixels(twin_again / "eval" / "images" / first_eval))


def test_other_seed_differs(twin, tmp_path):
    other = write.make_twin(tmp_path / "t", people=PEOPLE, seed=SEED + 1, size=SIZE,
                            progress=False, workers=1)
    assert (other / "train/train.csv").read_bytes() != (twin / "train/train.csv").read_bytes()
    assert (other / "eval/info.csv").read_bytes() != (twin / "eval/info.csv").read_bytes()


def test_render_does_not_depend_on_order(persons):
    a, b = persons[0], persons[1]
    first = np.asarray(write.render_photo(a, "mask1", SEED, SIZE))
    write.render_photo(b, "normal", SEED, SIZE)
    assert np.array_equal(first, np.asarray(write.render_photo(a, "mask1", SEED, SIZE)))


def test_noise_log_matches_what_was_drawn(twin, persons, train_rows):
    header, rows = read_csv(twin / "noise.csv")
    rows = [dict(zip(header, r)) for r in rows]
    by_folder = {p.folder: p for p in persons if p.split == "train"}
    csv_gender = {r["path"]: r["gender"] for r in train_rows}
    kinds = Counter(r["kind"] for r in rows)
    assert kinds["gender_flip"] >= 7 and kinds["mask_swap"] >= 2  # >= 1 person each
    for r in rows:
        p = by_folder[r["folder"]]
        assert r["true_gender"] == p.gender  # what was drawn
        assert r["given_gender"] == csv_gender[r["folder"]]  # what train.csv says
        assert r["true_label"] != r["given_label"]
        assert int(r["true_label"]) == label_of(r["true_mask"], r["true_gender"], int(r["age"]))
        assert int(r["given_label"]) == label_of(r["given_mask"], r["given_gender"],
                                                 int(r["age"]))
        if r["kind"] == "gender_flip":
            assert r["true_gender"] != r["given_gender"] and r["true_mask"] == r["given_mask"]
        else:
            assert r["true_mask"] != r["given_mask"] and r["true_gender"] == r["given_gender"]
    for folder, n in Counter(r["folder"] for r in rows).items():
        assert n == (7 if by_folder[folder].noise == "gender_flip" else 2)


def test_swapped_files_really_show_the_other_mask(twin, persons):
    person = next(p for p in persons if p.split == "train" and p.swapped)
    folder = twin / "train" / "images" / person.folder
    stored = next(f for f in os.listdir(folder) if f.startswith("incorrect_mask."))
    got = pixels(folder / stored)
    shows_normal = np.asarray(write.render_photo(person, "normal", SEED, SIZE), dtype=np.int16)
    shows_incorrect = np.asarray(write.render_photo(person, "incorrect_mask", SEED, SIZE),
                                 dtype=np.int16)
    assert np.abs(got - shows_normal).mean() < np.abs(got - shows_incorrect).mean()


def test_noise_share_near_one_percent_of_images():
    train = [p for p in twin_people.sample_people(2700, eval_people=0, seed=3)]
    images = sum(7 if p.noise == "gender_flip" else 2 if p.noise else 0 for p in train)
    assert 0.007 < images / (7 * len(train)) < 0.013


def test_sampling_matches_published_proportions():
    people = [p for p in twin_people.sample_people(3000, eval_people=0, seed=1)]
    ages = np.array([p.age for p in people])
    female = np.array([p.gender == "female" for p in people])
    groups = age_group(ages)
    assert abs(female.mean() - 1658 / 2700) < 0.03
    for g, n in enumerate((1281, 1227, 192)):
        assert abs((groups == g).mean() - n / 2700) < 0.03, g
    assert abs(female[groups == 0].mean() - 732 / 1281) < 0.05
    assert ages.min() >= 18 and set(ages[ages >= 60]) == {60}
    assert abs((ages >= 58).mean() - 436 / 2700) < 0.03
    assert (ages == 19).mean() > (ages == 35).mean() * 5  # the spike and the sparse thirties


def test_cli_bad_size_is_one_line_exit_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for args in (["--size", "abc"], ["--people", "many"]):
        res = subprocess.run([sys.executable, "-m", "fastmask.synth", str(tmp_path / "o"), *args],
                             capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
        assert res.returncode == 2, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("fastmask:")
    assert not (tmp_path / "o").exists()


def test_parse_size():
    assert synth.parse_size("384x512") == (384, 512)
    for bad in ("abc", "384", "3x4x5", "-1x5"):
        with pytest.raises(FastmaskError, match="--size"):
            synth.parse_size(bad)
    with pytest.raises(FastmaskError, match="--size"):
        write.make_twin("unused", size=(0, 5), progress=False)


def test_refuses_to_overwrite_a_real_data_set(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "train.csv").write_text("id,gender,race,age,path\n")
    with pytest.raises(FastmaskError, match="not a synthetic twin"):
        write.make_twin(tmp_path, people=2, size=SIZE, progress=False)
    assert (tmp_path / "train" / "train.csv").read_text() == "id,gender,race,age,path\n"


def test_interrupted_generation_leaves_no_twin(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(write, "write_preview", boom)
    with pytest.raises(KeyboardInterrupt):
        write.make_twin(tmp_path / "t", people=2, size=SIZE, progress=False)
    assert not (tmp_path / "t" / "train" / "train.csv").exists()
    assert [p.name for p in tmp_path.iterdir()] in ([], ["t"])


def test_ensure_twin_generates_once_and_make_twin_replaces(tmp_path):
    out = write.ensure_twin(tmp_path / "t", people=3, size=SIZE, progress=False)
    first = (out / "train" / "train.csv").read_bytes()
    assert write.ensure_twin(out, people=3, seed=5, progress=False) == out
    assert (out / "train" / "train.csv").read_bytes() == first  # kept, not regenerated
    write.make_twin(out, people=3, seed=5, size=SIZE, progress=False)
    assert (out / "train" / "train.csv").read_bytes() != first
    assert sorted(os.listdir(tmp_path)) == ["t"]


def test_preview_shows_an_old_person(twin, persons):
    with Image.open(twin / "preview.png") as im:
        assert im.width > 7 * 60 and im.height > 6 * 60
    shown = write._preview_people(persons)
    assert len(shown) == 6 and len({(p.gender, age_group(p.age)) for p in shown}) >= 4
    if any(p.age == 60 and not p.noise for p in persons if p.split == "train"):
        assert any(p.age == 60 for p in shown)

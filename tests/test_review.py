"""The relabel loop's review page (`fastmask suspects RUN --review`): which boxes a suspect gets, the page
built from a run's suspects.csv, and, in headless Chromium, ticking boxes and downloading a relabel.csv that
the loader takes (the twin's labels change, and with them the data fingerprint)."""
import csv
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from fastmask.data.layout import fingerprint
from fastmask.data.load import load_data
from fastmask.data.relabel import RELABEL, read_corrections
from fastmask.labels import GENDERS, MASKS, age_group, encode, label_of
from fastmask.views.review import fixes, suggested_age, write
from tests.conftest import in_process


def test_suggested_age_is_the_nearest_age_in_the_predicted_group():
    assert suggested_age(18, 1) == 30          # <30 predicted 30-59: its lowest age
    assert suggested_age(52, 2) == 60          # 30-59 predicted >=60
    assert suggested_age(65, 1) == 59          # >=60 predicted 30-59: its highest age
    assert suggested_age(65, 1, threshold=58) == 57
    assert suggested_age(40, 0) == 29


def test_a_suspect_gets_a_box_for_each_field_that_differs_mask_per_photo_the_rest_per_person():
    row = {"folder": "000007_male_Asian_18", "file": "mask2", "person": "000007", "mask": "wear", "gender": "male",
           "age": 18}
    # predicted: incorrect (1), female (1), 30-59 (1) -> 1*6 + 1*3 + 1 = 10
    got = fixes(row, 10)
    assert [(i, f, old, new) for i, f, old, new, _ in got] == [
        ("000007_male_Asian_18/mask2", "mask", "wear", "incorrect"),
        ("000007", "gender", "male", "female"),
        ("000007", "age", 18, 30)]
    # predicted wear, male, <30: the given class itself -> nothing to tick
    assert fixes(row, 0) == []
    # only the age group differs (>=60 = group 2): one box, for the person
    assert [(f, new) for _, f, _, new, _ in fixes(row, 2)] == [("age", 60)]


@pytest.fixture
def own_twin(twin, tmp_path):
    """A copy of the session's twin that a test may write relabel.csv into."""
    root = tmp_path / "twin"
    shutil.copytree(twin, root)
    return root


def fake_kfold_run(runs, data, picks):
    """A run folder as a k-fold run leaves it, as far as the review reads it: config.json naming the data and
    suspects.csv with the rows `picks` [(training row, predicted class)], in that rank order."""
    d = runs / "20261204T000000Z-kfold"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"data": str(data), "fields": {}}))
    rows = [{"rank": i + 1, "path": r["path"], "person": r["person"], "label": r["label"], "given": "g",
             "pred": pred, "predicted": "p", "p_given": 0.01 * (i + 1), "p_pred": 0.9, "fold": 2}
            for i, (r, pred) in enumerate(picks)]
    pd.DataFrame(rows).to_csv(d / "suspects.csv", index=False)
    return d


def _person_photos(train, n_people=2):
    people = sorted(train["person"].unique())[:n_people]
    return [train[train["person"] == p].sort_values("file") for p in people]


def test_the_page_shows_the_top_suspects_in_rank_order_with_their_person_s_photos(own_twin, tmp_path):
    train = load_data(own_twin, progress=False).train
    a, b = _person_photos(train)
    gone = {**a.iloc[0].to_dict(), "path": str(own_twin / "train/images/999999_male_Asian_20/mask1.jpg")}
    picks = [(b.iloc[1], 4), (gone, 4), (a.iloc[0], 4), (a.iloc[2], 4)]
    run = fake_kfold_run(tmp_path / "runs", own_twin, picks)
    path, shown, total, root = write(run, top=2)
    html = path.read_text()
    assert path == run / "review.html" and (shown, total) == (2, 4) and Path(root) == own_twin
    # a suspect no longer in the data is passed over; the top 2 are then b's and a's first pick, in rank order
    first, second = b.iloc[1], a.iloc[0]
    assert html.index(f'data-image="{first["folder"]}/{first["file"]}"') < \
        html.index(f'data-image="{second["folder"]}/{second["file"]}"')
    assert html.count('<section class="card"') == 2 and f'{a.iloc[2]["folder"]}/{a.iloc[2]["file"]}"' not in html
    # each card: the suspect, then every other photo of the person (7 photos a twin person)
    assert html.count('<figure class="suspect">') == 2 and html.count('<figure class="other">') == len(a) + len(b) - 2


def test_review_needs_a_kfold_run_and_its_data_one_line_exit_2(own_twin, tmp_path):
    d = tmp_path / "runs" / "single"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"data": str(own_twin)}))
    r = in_process("suspects", d, "--review")
    assert r.returncode == 2 and "oof.csv" in r.stderr and "kfold" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    train = load_data(own_twin, progress=False).train
    run = fake_kfold_run(tmp_path / "runs", tmp_path / "moved", [(train.iloc[0], 4)])
    r = in_process("suspects", run, "--review")
    assert r.returncode == 2 and str(tmp_path / "moved") in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _chromium(download_dir):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        pytest.skip("headless browser test: needs Debian's chromium and chromium-driver (.ci/run installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    # without the background-networking flags Chromium's start-up calls are refused on a closed network
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1440,1000"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                           "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def _downloaded(folder, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done = [p for p in folder.glob("*.csv")]
        if done and not list(folder.glob("*.crdownload")):
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no csv downloaded into {folder}")


def test_ticking_boxes_in_a_browser_downloads_a_relabel_csv_the_loader_applies(own_twin, tmp_path):
    before = load_data(own_twin, progress=False).train
    a, b = _person_photos(before)
    # an earlier correction already in the data folder: the download keeps it, first and unchanged
    earlier = f"{b.iloc[0]['person']},gender,{'female' if b.iloc[0]['gender'] == 'male' else 'male'},seen before"
    (own_twin / RELABEL).write_text("id,field,value,note\n" + earlier + "\n")
    with_earlier = load_data(own_twin, progress=False).train
    photo = a.iloc[0]
    other_gender = "female" if photo["gender"] == "male" else "male"
    other_mask = "incorrect" if photo["mask"] != "incorrect" else "wear"
    pred = encode(MASKS.index(other_mask), GENDERS.index(other_gender), (age_group(photo["age"]) + 1) % 3)
    run = fake_kfold_run(tmp_path / "runs", own_twin, [(photo, pred), (a.iloc[1], pred)])
    r = in_process("suspects", run, "--review")
    assert r.returncode == 0, r.stderr
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    d = _chromium(downloads)
    try:
        d.get((run / "review.html").as_uri())
        cards = d.find_elements("css selector", "section.card")
        assert len(cards) == 2
        boxes = {b.get_attribute("data-field"): b for b in cards[0].find_elements("css selector", "input.tick")}
        assert set(boxes) == {"mask", "gender", "age"}
        boxes["mask"].click()
        boxes["gender"].click()
        boxes["age"].click()
        age = cards[0].find_element("css selector", "input.age")
        age.clear()
        age.send_keys("77")
        cards[0].find_element("css selector", "input.note").send_keys('strap below the chin, "clearly"')
        # the second card (same person) ticks gender again: one row for the person, not two
        next(b for b in cards[1].find_elements("css selector", "input.tick")
             if b.get_attribute("data-field") == "gender").click()
        assert d.find_element("id", "count").text == "4 ticked"
        d.find_element("id", "download").click()
        got = _downloaded(downloads)
    finally:
        d.quit()
    rows = list(csv.reader(got.open()))
    assert rows[0] == ["id", "field", "value", "note"] and ",".join(rows[1]) == earlier
    body = {(i, f): (v, n) for i, f, v, n in rows[2:]}
    assert len(rows) == 2 + 3
    assert body[(f"{photo['folder']}/{photo['file']}", "mask")] == (other_mask, 'strap below the chin, "clearly"')
    assert body[(photo["person"], "age")][0] == "77" and body[(photo["person"], "gender")][0] == other_gender
    # saved as the data folder's relabel.csv, the loader takes every row, and the labels change
    shutil.copy(got, own_twin / RELABEL)
    assert [c.line for c in read_corrections(own_twin / RELABEL)] == [2, 3, 4, 5]
    after = load_data(own_twin, progress=False).train
    mine = after[after["person"] == photo["person"]]
    assert set(mine["gender"]) == {other_gender} and set(mine["age"]) == {77}
    fixed = after[(after["folder"] == photo["folder"]) & (after["file"] == photo["file"])].iloc[0]
    assert fixed["mask"] == other_mask and fixed["label"] == label_of(other_mask, other_gender, 77)
    assert fixed["given_mask"] == photo["mask"] and fixed["given_gender"] == photo["gender"]
    assert fingerprint(after) != fingerprint(with_earlier) != fingerprint(before)

"""The board page in headless Chromium (skipped where there is none, as the review page's test is): the tag
filter (from the list and from a row's chip, whole tags only), the archived toggle, the compare panel's
per-class chart for a child and its parent, and a running run's live figure and curve growing between two
rewrites of the page (history.csv rows written by hand; no training)."""
import pytest
from rich.console import Console

from fastmask.views.board import board

from test_board_team import HISTORY, page_data, runs  # noqa: F401  (the fixture, shared)
from test_review import _chromium

OVERSAMPLE, CUTMIX, ALBU = "20260101T010000Z-oversample", "20260101T020000Z-oversample_cutmix", "20260101T030000Z-albu_light"
ROOT, TTA = "20260101T000000Z-person_split", "20260101T040000Z-tta"


@pytest.fixture
def browser(tmp_path):
    d = _chromium(tmp_path / "downloads")
    yield d
    d.quit()


def draw(runs):  # noqa: F811
    board(runs, console=Console(record=True, width=200))
    return (runs / "index.html").as_uri()


def visible(d):
    return [r.get_attribute("data-id") for r in d.find_elements("css selector", "#runs tbody tr") if r.is_displayed()]


def pick(d, select_id, value):
    from selenium.webdriver.support.ui import Select
    Select(d.find_element("id", select_id)).select_by_value(value)


def test_the_tag_filter_and_the_archived_toggle(runs, browser):  # noqa: F811
    d = browser
    d.get(draw(runs))
    every = [ROOT, OVERSAMPLE, CUTMIX, TTA]
    assert visible(d) == every  # the archived run hidden by default
    assert "(1 archived hidden)" in d.find_element("id", "shown").text
    pick(d, "tag", "keep")
    assert visible(d) == [OVERSAMPLE]  # "keep", not "keeper"
    pick(d, "tag", "")
    assert visible(d) == every
    row = d.find_element("css selector", f'tr[data-id="{CUTMIX}"]')
    row.find_element("css selector", 'button.chip[data-tag="keeper"]').click()
    assert visible(d) == [CUTMIX] and d.find_element("id", "tag").get_attribute("value") == "keeper"
    d.find_element("css selector", f'tr[data-id="{CUTMIX}"] button.chip').click()  # clicked again: any tag
    assert visible(d) == every
    d.find_element("id", "show-archived").click()
    assert visible(d) == [ROOT, OVERSAMPLE, CUTMIX, ALBU, TTA]
    albu = d.find_element("css selector", f'tr[data-id="{ALBU}"]')
    assert "archived" in albu.get_attribute("class")
    assert albu.find_elements("css selector", "td")[1].value_of_css_property("color") == "rgba(153, 153, 153, 1)"
    assert d.find_element("id", f"run-{ALBU}").is_displayed()  # its card comes back with it
    d.refresh()  # a reload (the page reloads itself while a run runs) keeps the toggle and the tag
    assert visible(d) == [ROOT, OVERSAMPLE, CUTMIX, ALBU, TTA]


def test_the_compare_panel_draws_a_childs_per_class_deltas_against_its_parent(runs, browser):  # noqa: F811
    d = browser
    d.get(draw(runs))
    _, data = page_data(runs / "index.html")
    want = data[OVERSAMPLE]["class_deltas"]
    for run in (ROOT, OVERSAMPLE):
        d.find_element("css selector", f'input[type="checkbox"][value="{run}"]').click()
    panel = d.find_element("id", "compare")
    assert "per-class F1: oversample minus its parent person_split" in panel.text
    bars = panel.find_elements("css selector", "svg.class-deltas g[data-class]")
    assert [int(b.get_attribute("data-class")) for b in bars] == [w["cls"] for w in want]
    assert [float(b.get_attribute("data-delta")) for b in bars] == pytest.approx([w["delta"] for w in want])
    up = [b for b in bars if float(b.get_attribute("data-delta")) > 0]
    assert up and all(b.find_element("css selector", "rect").get_attribute("class") == "up" for b in up)
    # a grandchild and its grandparent: not a child and its parent, no chart
    d.find_element("css selector", f'input[type="checkbox"][value="{OVERSAMPLE}"]').click()
    d.find_element("css selector", f'input[type="checkbox"][value="{CUTMIX}"]').click()
    assert not d.find_elements("css selector", "#compare svg.class-deltas")
    assert "minus its parent" not in d.find_element("id", "compare").text


def test_a_running_runs_live_figure_and_curve_grow_as_its_history_does(runs, browser):  # noqa: F811
    d = browser
    history = runs / TTA / "history.csv"
    history.write_text(HISTORY + "0,2.9,2.5,0.81,0.071,00:05\n")
    d.get(draw(runs))
    cell = lambda: d.find_element("css selector", f'tr[data-id="{TTA}"] td.live').text  # noqa: E731
    assert cell() == "0.071 · loss 2.500"
    for run in (ROOT, TTA):
        d.find_element("css selector", f'input[type="checkbox"][value="{run}"]').click()
    points = lambda: len(d.find_elements(  # noqa: E731
        "css selector", f'#compare svg[data-curve="macro_f1"] g[data-run="{TTA}"] circle'))
    assert points() == 1 and "epoch 1: F1 0.071, loss 2.500" in d.find_element("id", "compare").text
    with history.open("a") as f:
        f.write("1,2.5,2.1,0.86,0.093,00:05\n")
    draw(runs)  # what `board --watch` does each round
    d.refresh()  # what the page does by itself while a run runs
    assert cell() == "0.093 · loss 2.100"
    assert points() == 2  # the ticks kept across the reload, the curve one epoch longer
    assert "epoch 2: F1 0.093, loss 2.100" in d.find_element("id", "compare").text

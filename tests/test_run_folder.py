"""The one reader of a run folder: each file read once and only when asked for, values the session
already holds never read back, and damaged files reading as empty rather than raising."""
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from fastmask.store.index import entries
from fastmask.store.run_folder import RunFolder, is_run


def make_run(root, name="20261204T000000Z-baseline", **files):
    d = Path(root) / name
    d.mkdir(parents=True)
    for fname, content in files.items():
        (d / fname.replace("_json", ".json").replace("_csv", ".csv")).write_text(content)
    return d


def test_each_file_is_read_once_when_first_asked(tmp_path):
    d = make_run(tmp_path, config_json=json.dumps({"name": "baseline"}), metrics_json='{"macro_f1": 0.5}',
                 status_json='{"status": "finished", "minutes": 1.5}')
    r = RunFolder(d)
    (d / "metrics.json").write_text('{"macro_f1": 0.9}')  # changed before the first read: that one is seen
    assert r.metrics == {"macro_f1": 0.9}
    (d / "metrics.json").write_text('{"macro_f1": 0.1}')  # changed after: the first read stands
    assert r.metrics == {"macro_f1": 0.9}
    assert (r.recipe, r.name, r.status, r.minutes) == ("baseline", d.name, "finished", 1.5)


def test_known_values_are_never_read_from_disk(tmp_path):
    d = make_run(tmp_path, metrics_json='{"macro_f1": 0.5}', status_json='{"status": "running", "pid": 1}')
    r = RunFolder(d, metrics={"macro_f1": 0.7}, status_json={"status": "finished"})
    assert r.metrics == {"macro_f1": 0.7} and r.status == "finished"
    changed = r.but(metrics={"macro_f1": 0.8})
    assert changed.metrics == {"macro_f1": 0.8} and changed.status == "finished" and r.metrics == {"macro_f1": 0.7}


def test_missing_or_damaged_files_read_as_empty(tmp_path):
    d = make_run(tmp_path, config_json="{not json", metrics_json="[1, 2]", history_csv='"unclosed\n1,2\n')
    r = RunFolder(d)
    assert r.config == {} and r.metrics == {} and r.status_json == {} and r.status == "?"
    assert r.history is None and r.valid is None and r.holdout is None and r.minutes is None


def test_prediction_tables_keep_ids_as_text(tmp_path):
    d = make_run(tmp_path, valid_preds_csv="path,person,label\na.jpg,000123,3\n",
                 holdout_preds_csv="ImageID,label\n0007,1\n")
    r = RunFolder(d)
    assert r.valid["person"].tolist() == ["000123"] and r.holdout["ImageID"].tolist() == ["0007"]
    assert isinstance(r.valid, pd.DataFrame)


def test_a_run_folder_stands_where_its_path_did(tmp_path):
    d = make_run(tmp_path, config_json="{}")
    r = RunFolder(d)
    assert Path(r) == d and os.fspath(r) == str(d) and r / "card.md" == d / "card.md"


def test_unknown_fields_are_refused():
    with pytest.raises(TypeError, match="metric"):
        RunFolder("x", metric={})


def test_a_run_folder_holds_config_or_status(tmp_path):
    a = make_run(tmp_path, "a", config_json="{}")
    b = make_run(tmp_path, "b", status_json="{}")
    c = make_run(tmp_path, "c", card_md="stray")
    assert [is_run(x) for x in (a, b, c)] == [True, True, False]


def test_the_index_hands_out_run_folders_named_by_recipe(tmp_path):
    make_run(tmp_path, "20261204T000001Z-child", config_json='{"name": "child"}', status_json='{"status": "finished"}',
             metrics_json='{"macro_f1": 0.25}')
    make_run(tmp_path, "mlruns")  # not a run folder
    (found,) = entries(tmp_path)
    assert isinstance(found, RunFolder)
    assert (found.recipe, found.name, found.status, found.metrics) == ("child", "20261204T000001Z-child", "finished",
                                                                       {"macro_f1": 0.25})

"""One table of figures for the card and compare, and fold scores read by the run-folder reader alone: the
statistics take numbers, and a headline made from metrics reads no file."""
import json

import pytest

from fastmask.report.card import headline
from fastmask.report.figures import COMPARED, FIGURES
from fastmask.store.run_folder import RunFolder, fold_scores_in
from fastmask.views.compare import METRICS, flat


def test_compare_shows_the_cards_figures_in_the_cards_order():
    assert METRICS == [(f.key, f.label) for f in FIGURES if f.compared]
    assert [k for k, _ in METRICS] == [f.key for f in COMPARED] and set(flat({})) == {f.key for f in COMPARED}


def test_fold_scores_from_a_metrics_dict_need_no_folder():
    assert fold_scores_in({"folds": [0.5, {"macro_f1": 0.6}]}) == [0.5, 0.6]
    assert fold_scores_in({}) is None and fold_scores_in({"folds": [{"f1": 1}]}) is None


def test_the_run_folder_reads_folds_csv_only_without_folds_in_metrics(tmp_path):
    (tmp_path / "folds.csv").write_text("fold,macro_f1\n1,0.6\n0,0.4\n")
    assert RunFolder(tmp_path, metrics={}).fold_scores == pytest.approx([0.4, 0.6])  # ordered by fold
    assert RunFolder(tmp_path, metrics={"folds": [0.7, 0.8]}).fold_scores == [0.7, 0.8]
    (tmp_path / "metrics.json").write_text(json.dumps({"macro_f1": 0.5}))
    assert RunFolder(tmp_path).fold_scores == pytest.approx([0.4, 0.6])


def test_a_headline_reads_no_folds_csv_from_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "folds.csv").write_text("fold,macro_f1\n0,0.9\n1,0.9\n")
    monkeypatch.chdir(tmp_path)
    line = headline({"macro_f1": 0.5, "accuracy": 0.6, "folds": {"0": "finished"}})
    assert line == "validation macro F1 0.500, accuracy 0.600"

"""Macro F1 on the 18-class code against hand computations on planted tables.

Per class F1 = 2tp / (2tp + fp + fn). Macro F1 is the plain mean of that over the classes that occur in
the truth or the predictions (sklearn's default label set, which the competition's scorer used): a class
absent from both has nothing to score and is not counted. zero_division = 0 shows in the per-class table,
which lists all 18 classes: an absent class reads 0 there."""
import numpy as np
import pytest
import torch

from fastmask.labels import per_class
from fastmask.learn.metrics import MacroF1, macro_f1, scores

# Table A: a few classes, one predicted class (7) that is not in the truth, one true class (5) never predicted.
YA = [0, 0, 0, 0, 1, 1, 2, 2, 5]
PA = [0, 0, 0, 1, 1, 2, 2, 2, 7]
# class 0: tp 3, fp 0, fn 1 -> 6/7 | class 1: tp 1 (row 4), fp 1 (row 3), fn 1 (row 5) -> 2/4
# class 2: tp 2, fp 1 (row 5), fn 0 -> 4/5 | class 5: fn 1 -> 0 | class 7: fp 1 -> 0
F1A = {0: 6 / 7, 1: 1 / 2, 2: 4 / 5, 5: 0.0, 7: 0.0}
MACRO_A = (6 / 7 + 1 / 2 + 4 / 5 + 0 + 0) / 5  # 0.43143 over the 5 classes seen
# Not: micro (= accuracy) 6/9 = 0.667; labels of the truth only (/4) 0.539; all 18 labels with
# zero_division 0 (/18) 0.120, with zero_division 1 (13 absent classes at 1) 0.842.


def test_macro_f1_planted_table_by_hand():
    assert macro_f1(YA, PA) == pytest.approx(MACRO_A, abs=1e-12)
    assert macro_f1(YA, PA) == pytest.approx(0.4314285714, abs=1e-9)


def test_macro_f1_over_all_18_classes_is_not_accuracy():
    # Table B: every class twice; even classes both right; odd class c: first right, second predicted c-1.
    y = np.repeat(np.arange(18), 2)
    p = y.copy()
    p[1::2][1::2] = y[1::2][1::2] - 1  # the second image of each odd class
    assert (p != y).sum() == 9
    # even c: tp 2, fp 1 (from c+1) -> 4/5; odd c: tp 1, fn 1 -> 2/3. Macro (9 * 4/5 + 9 * 2/3) / 18 = 11/15.
    assert macro_f1(y, p) == pytest.approx(11 / 15, abs=1e-12)
    assert (y == p).mean() == pytest.approx(27 / 36)  # accuracy (= micro F1) is 0.75, not 0.733


def test_scores_task_and_per_class_f1_by_hand():
    s = scores(YA, PA)
    assert s["macro_f1"] == pytest.approx(MACRO_A, abs=1e-12)
    assert s["accuracy"] == pytest.approx(6 / 9)
    # class -> (mask, gender, age): 0 (0,0,0), 1 (0,0,1), 2 (0,0,2), 5 (0,1,2), 7 (1,0,1)
    # mask: truth all 0, one pred 1 -> class 0: tp 8, fn 1 -> 16/17; class 1: fp 1 -> 0. Macro 8/17.
    assert s["mask_f1"] == pytest.approx(8 / 17, abs=1e-12)
    # gender: truth 1 only on row 8, never predicted -> class 0: tp 8, fp 1 -> 16/17; class 1 -> 0. Macro 8/17.
    assert s["gender_f1"] == pytest.approx(8 / 17, abs=1e-12)
    # age: truth 0 0 0 0 1 1 2 2 2, pred 0 0 0 1 1 2 2 2 1
    # age 0: tp 3, fn 1 -> 6/7; age 1: tp 1, fp 2, fn 1 -> 2/5; age 2: tp 2, fp 1, fn 1 -> 4/6.
    assert s["age_f1"] == pytest.approx((6 / 7 + 2 / 5 + 2 / 3) / 3, abs=1e-12)
    per = s["per_class_f1"]
    assert len(per) == 18
    # keyed by class name (class = mask * 6 + gender * 3 + age group), not by "0".."17"
    by_name = {"male <30 mask": 6 / 7, "male 30-59 mask": 1 / 2, "male >=60 mask": 4 / 5,
               "female >=60 mask": 0.0, "male 30-59 incorrect-mask": 0.0}
    for name, f in by_name.items():
        assert per[name] == pytest.approx(f, abs=1e-12), name
    assert per["female <30 no-mask"] == 0.0  # class 15, absent: 0 (zero_division = 0), not 1
    assert sum(per.values()) == pytest.approx(6 / 7 + 1 / 2 + 4 / 5, abs=1e-12)
    # support: true images per class; YA holds class 0 four times, 1 and 2 twice, 5 once; 7 is only predicted
    sup = s["per_class_support"]
    assert sup["male <30 mask"] == 4 and sup["male 30-59 mask"] == 2 and sup["male >=60 mask"] == 2
    assert sup["female >=60 mask"] == 1 and sup["male 30-59 incorrect-mask"] == 0
    assert sum(sup.values()) == 9


def test_per_class_reads_class_names_and_the_old_integer_keys():
    """Readers of metrics.json get {class id: value} from runs of either format."""
    new = {"per_class_f1": {"male <30 mask": 0.5, "female >=60 no-mask": 0.25}, "per_class_support": {"male <30 mask": 3}}
    old = {"per_class_f1": {"0": 0.5, "17": 0.25}}
    assert per_class(new) == per_class(old) == {0: 0.5, 17: 0.25}
    assert per_class(new, "per_class_support") == {0: 3}
    assert per_class({}) == {}


def test_fastai_metric_scores_the_whole_validation_set_not_batch_means():
    y = torch.tensor(YA)
    logits = torch.nn.functional.one_hot(torch.tensor(PA), 18).float()
    m = MacroF1()
    m.reset()
    m.accum_values(logits[:4], y[:4])
    m.accum_values(logits[4:], y[4:])
    assert m.value == pytest.approx(MACRO_A, abs=1e-12)
    # Batch means would read otherwise: rows 0-3: class 0 6/7, class 1 (fp only) 0 -> 3/7; rows 4-8:
    # class 1 tp 1 fn 1 -> 2/3, class 2 4/5, classes 5 and 7 0 -> 11/30. Their mean is 0.398, not 0.431.

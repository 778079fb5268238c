"""The plots beside a card: what each one computes (against hand-worked tables, never against the code
under test) and which files a run draws. Pixels are not compared; the functions that decide what is drawn are."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fastmask.report import plots
from fastmask.runs.outputs import draw_plots

# --- confusion: rows normalised by the true class ---------------------------------------------------------

# true 0 0 0 1 1 5, predicted 0 1 1 1 1 5.
# counts: row 0 -> col 0: 1, col 1: 2 | row 1 -> col 1: 2 | row 5 -> col 5: 1.
# row shares: row 0 -> 1/3, 2/3 | row 1 -> 1 at col 1 | row 5 -> 1 at col 5 | other rows: all 0.
# (By column, cell [0, 1] would read 2/4 = 0.5; by the grand total 2/6.)
Y, P = [0, 0, 0, 1, 1, 5], [0, 1, 1, 1, 1, 5]


def test_confusion_rows_are_normalised_by_the_true_class():
    counts, shares = plots.confusion_table(Y, P)
    assert counts.shape == shares.shape == (18, 18)
    assert counts[0, 0] == 1 and counts[0, 1] == 2 and counts[1, 1] == 2 and counts[5, 5] == 1
    assert counts.sum() == 6
    assert shares[0, 0] == pytest.approx(1 / 3) and shares[0, 1] == pytest.approx(2 / 3)
    assert shares[1, 1] == pytest.approx(1.0) and shares[5, 5] == pytest.approx(1.0)
    row_sums = shares.sum(1)
    for c in (0, 1, 5):
        assert row_sums[c] == pytest.approx(1.0), c
    for c in set(range(18)) - {0, 1, 5}:  # no true image: a row of zeros, not NaN
        assert row_sums[c] == 0.0, c
    assert not np.isnan(shares).any()


def test_short_names_name_every_class_once_in_order():
    # class = mask * 6 + gender * 3 + age group
    assert plots.short_name(0) == " 0 M <30 mask"
    assert plots.short_name(7) == " 7 M 30-59 inc"
    assert plots.short_name(17) == "17 F 60+ none"
    assert len({plots.short_name(c) for c in range(18)}) == 18


# --- per-class F1 with support ----------------------------------------------------------------------------

def test_f1_table_reads_class_name_keys_and_old_integer_keys_alike():
    named = {"per_class_f1": {"male <30 mask": 0.5, "female >=60 no-mask": 0.25},
             "per_class_support": {"male <30 mask": 4, "female >=60 no-mask": 1}}
    old = {"per_class_f1": {"0": 0.5, "17": 0.25}}  # runs made before class-name keys
    t = plots.f1_table(named)
    assert t.at[0, "f1"] == 0.5 and t.at[17, "f1"] == 0.25 and t.at[0, "support"] == 4 and t.at[17, "support"] == 1
    assert t.at[0, "name"] == " 0 M <30 mask" and pd.isna(t.at[5, "f1"])
    o = plots.f1_table(old)
    assert o.at[0, "f1"] == 0.5 and o.at[17, "f1"] == 0.25 and pd.isna(o.at[0, "support"])


def test_per_class_chart_is_not_drawn_without_per_class_f1(tmp_path):
    assert plots.save_per_class_f1({"macro_f1": 0.3}, tmp_path / "f1.png") is False
    assert not (tmp_path / "f1.png").exists()


# --- learning curves: every fold kept, then the spread --------------------------------------------------

# Two folds: fold 0 ran epochs 0 and 1, fold 1 stopped early after epoch 0.
HIST = pd.DataFrame({"epoch": [0, 1, 0], "fold": [0, 0, 1], "train_loss": [3.0, 2.0, 2.6],
                     "valid_loss": [2.8, 2.4, 3.0], "macro_f1": [0.10, 0.30, 0.20], "accuracy": [0.2, 0.4, 0.3]})


def test_curve_series_keeps_each_fold_with_epochs_counted_from_one():
    s = plots.curve_series(HIST, "macro_f1", "fold")
    assert sorted(s) == [0, 1]  # one curve per fold, not only their mean
    assert list(s[0].index) == [1, 2] and list(s[0].values) == pytest.approx([0.10, 0.30])
    assert list(s[1].index) == [1] and list(s[1].values) == pytest.approx([0.20])
    single = plots.curve_series(HIST[HIST.fold == 0], "valid_loss")
    assert list(single) == [None] and list(single[None].values) == pytest.approx([2.8, 2.4])


def test_spread_is_mean_min_max_over_the_folds_that_reached_each_epoch():
    band = plots.spread(plots.curve_series(HIST, "macro_f1", "fold"))
    # epoch 1: folds 0 and 1 -> 0.10, 0.20: mean 0.15; epoch 2: fold 0 alone -> 0.30
    assert band.loc[1, "mean"] == pytest.approx(0.15) and band.loc[1, "min"] == pytest.approx(0.10)
    assert band.loc[1, "max"] == pytest.approx(0.20) and band.loc[1, "n"] == 2
    assert band.loc[2, "mean"] == pytest.approx(0.30) and band.loc[2, "n"] == 1


# --- per batch and the lr finder -----------------------------------------------------------------------

def test_batches_sit_on_an_epoch_axis_whose_integers_are_epoch_ends():
    # 3 batches an epoch, 2 epochs: Recorder.iters holds the batch count at each epoch end.
    x = plots.batch_axis({"loss": [1] * 6, "lr": [0.1] * 6, "iters": [3, 6]})
    assert list(x) == pytest.approx([1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])


def test_lr_find_points_drop_the_first_tenth_and_the_last_five_as_fastai_does():
    lrs = list(np.geomspace(1e-7, 10, 40))
    losses = [3.0] * 40
    losses[10] = float("nan")
    x, y = plots.lr_find_points({"lrs": lrs, "losses": losses, "suggestion": 1e-3})
    # 40 points: skip 4 at the start and 5 at the end -> indices 4..34 (31 points), less the NaN at 10 -> 30
    assert len(x) == len(y) == 30
    assert x[0] == pytest.approx(lrs[4]) and x[-1] == pytest.approx(lrs[34])


# --- top losses: the age in the title -----------------------------------------------------------------

def row(**kw):
    base = dict(label=4, pred=5, p_true=0.0123, p_pred=0.91, path="x.png")
    return pd.Series({**base, **kw})


def test_top_loss_titles_carry_the_age_and_flag_the_group_boundaries():
    t = plots.loss_title(row(age=59, person="000044"))
    # class 4: mask 0, gender 1, age group 1 -> "female 30-59 mask"; class 5: "female >=60 mask"
    assert t.splitlines()[0] == "true: female 30-59 mask"
    assert t.splitlines()[1] == "pred: female >=60 mask"
    assert "age 59 (near 60)" in t and "person 000044" in t
    assert "p(true) 0.012" in t
    assert "age 29 (near 30)" in plots.loss_title(row(label=3, pred=4, age=29))
    mid = plots.loss_title(row(age=45))
    assert "age 45" in mid and "near" not in mid
    assert "age" not in plots.loss_title(row())  # no age column: no age line


def test_top_loss_grid_titles_come_from_the_rows(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (12, 16)).save(img)
    probs = np.full(18, 0.01)
    probs[5] = 0.83
    vp = pd.DataFrame([{"path": str(img), "person": "000001", "label": 4, "pred": 5, "age": 59,
                        **{f"p{i}": probs[i] for i in range(18)}}])
    worst = plots.top_losses(vp)
    assert "age 59" in plots.loss_title(next(worst.itertuples()))
    assert plots.save_top_losses(vp, tmp_path / "top.png") == 1 and (tmp_path / "top.png").stat().st_size > 1000


# --- what a run draws ------------------------------------------------------------------------------------

class FakeRun:
    def __init__(self, d):
        self.dir = d

    def path(self, name):
        return self.dir / name


class FakePart:
    def __init__(self, name, fold, recorder, history):
        self.name, self.fold, self.seed, self.recorder, self.history = name, fold, 0, recorder, history


def trace(lr_find=None):
    n = 12
    return {"loss": list(np.linspace(3, 2, n)), "lr": list(np.sin(np.linspace(0, 3, n)) * 1e-2 + 1e-4),
            "iters": [6, 12], "lr_find": lr_find}


def test_a_run_draws_every_plot_and_lr_find_only_when_the_lr_was_found(tmp_path):
    y = np.array([0, 0, 1, 1, 5, 5])
    p = np.array([0, 1, 1, 1, 5, 0])
    from fastmask.learn.metrics import scores
    metrics = scores(y, p)
    h0, h1 = HIST[HIST.fold == 0].drop(columns="fold"), HIST[HIST.fold == 1].drop(columns="fold")
    parts = [FakePart("fold0", 0, trace(), h0), FakePart("fold1", 1, trace(), h1)]
    drawn = draw_plots(FakeRun(tmp_path), parts, metrics, HIST, "fold", y, p, kfold=True)
    assert drawn == ["confusion.png", "per_class_f1.png", "curves.png", "batches.png"]
    for name in drawn:
        assert (tmp_path / name).stat().st_size > 1000, name
    assert not (tmp_path / "lr_find.png").exists()  # lr was a number: no finder curve

    found = {"lrs": list(np.geomspace(1e-7, 10, 60)), "losses": list(np.linspace(3, 1, 60)), "suggestion": 1e-3}
    # lr="find": each model's finder curve; the first model's recorder went missing (None), the second has one
    parts = [FakePart("fold0", 0, None, h0), FakePart("fold1", 1, trace(found), h1)]
    drawn = draw_plots(FakeRun(tmp_path), parts, metrics, HIST, "fold", y, p, kfold=True)
    assert "lr_find.png" in drawn and (tmp_path / "lr_find.png").stat().st_size > 1000
    assert "batches.png" in drawn  # from the one model with a recorder


def test_one_or_two_epochs_tick_whole_epochs_only():
    """A 1-epoch run's curve was ticked 0.945 .. 1.050: the ticks are the epochs themselves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastmask.report.plots import whole_epochs
    for xs in ([1], [1, 2], [1, 2, 3, 4, 5, 6]):
        fig, ax = plt.subplots()
        ax.plot(xs, [0.1 * x for x in xs], marker="o")
        whole_epochs(ax)
        fig.canvas.draw()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert all(float(t).is_integer() for t in ticks), (xs, ticks)
        assert set(xs) <= set(ticks) or len(xs) > 2, (xs, ticks)
        plt.close(fig)

"""k-fold runs: one model per person-grouped fold, out-of-fold predictions for every training image,
CV figures, fold exports that reload elsewhere, suspects scored against the twin's noise log, and a
crashed fold that leaves the finished ones recorded."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY

REPO = Path(__file__).resolve().parent.parent
K = 3  # folds in the tests' run (the recipe's 5 would only cost time)


_RUNS = {}


def kfold_run(twin, tmp_path_factory):
    """One tiny k-fold run of recipes/kfold_strong.py through the CLI, shared by the k-fold, infer and
    predict tests (made once per session). Returns (run folder, CLI stdout)."""
    if str(twin) not in _RUNS:
        runs = tmp_path_factory.mktemp("kfold_runs")
        p = subprocess.run([sys.executable, "-m", "fastmask.run", "recipes/kfold_strong.py", "--no-parent", *TINY,
                            "--set", f"split=kfold:{K}", "--data", str(twin), "--runs", str(runs)],
                           cwd=REPO, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        (d,) = [x for x in runs.iterdir() if x.is_dir()]
        _RUNS[str(twin)] = d, p.stdout
    return _RUNS[str(twin)]


@pytest.fixture(scope="module")
def run(twin, tmp_path_factory):
    return kfold_run(twin, tmp_path_factory)[0]


@pytest.fixture(scope="module")
def train_df(twin):
    from fastmask.data import locate, read_train
    return read_train(locate(twin)[0])


def test_folds_partition_people_and_every_image_has_one_oof_row(run, train_df):
    from fastmask.report.folds import check_partition
    oof = pd.read_csv(run / "oof.csv", dtype={"person": str})
    assert list(oof.columns) == ["path", "person", "label", "age", *[f"p{i}" for i in range(18)], "fold"]
    assert check_partition(oof, train_df) == []
    assert len(oof) == len(train_df) and sorted(oof.path) == sorted(train_df.path)
    assert sorted(oof.fold.unique()) == list(range(K))
    assert oof.groupby("person").fold.nunique().max() == 1
    assert np.allclose(oof[[f"p{i}" for i in range(18)]].sum(1), 1, atol=1e-3)
    # the labels are the true ones, not training-time variants
    assert (oof.set_index("path").label.loc[train_df.path].to_numpy() == train_df.label.to_numpy()).all()


def hand_macro_f1(y, p):
    """Macro F1 written out, independent of the package: per class 2tp / (2tp + fp + fn), averaged over the
    classes present in the truth or the predictions."""
    y, p = np.asarray(y), np.asarray(p)
    f = [2 * ((y == c) & (p == c)).sum() / (2 * ((y == c) & (p == c)).sum() + ((y != c) & (p == c)).sum()
                                          + ((y == c) & (p != c)).sum()) for c in np.union1d(y, p)]
    return float(np.mean(f))


def test_kfold_run_folder_and_metrics(run):
    for f in ["recipe.py", "config.json", "history.csv", "metrics.json", "confusion.png", "card.md", "model.pkl",
              "oof.csv", "valid_preds.csv", "suspects.csv", *[f"fold{k}.pkl" for k in range(K)]]:
        assert (run / f).is_file(), f
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    m = json.loads((run / "metrics.json").read_text())
    oof = pd.read_csv(run / "oof.csv")
    probs = oof[[f"p{i}" for i in range(18)]].to_numpy()
    assert m["macro_f1"] == pytest.approx(hand_macro_f1(oof.label, probs.argmax(1)))  # pooled OOF
    per_fold = [hand_macro_f1(g.label, probs[g.index].argmax(1)) for _, g in oof.groupby("fold")]
    assert m["folds"] == pytest.approx(per_fold)
    assert m["cv_mean"] == pytest.approx(np.mean(per_fold)) and m["cv_std"] == pytest.approx(np.std(per_fold, ddof=1))
    for k in ("holdout_macro_f1", "holdout_accuracy", "suspect_precision", "suspect_chance"):
        assert 0 <= m[k] <= 1, k
    assert m["holdout_models"] == [f"fold{k}" for k in range(K)] and len(m["holdout_folds"]) == K
    assert m["suspect_noisy"] == len(pd.read_csv(Path(json.loads((run / "config.json").read_text())["data"]) / "noise.csv"))
    hist = pd.read_csv(run / "history.csv")
    assert sorted(hist.fold.unique()) == list(range(K))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["fields"]["split"] == f"kfold:{K}" and len(m["lr_used"]) == K  # an outcome: metrics.json
    assert (run / "model.pkl").read_bytes() == (run / "fold0.pkl").read_bytes()


def test_cli_prints_cv_and_suspect_precision(run, twin, tmp_path_factory):
    out = kfold_run(twin, tmp_path_factory)[1]
    assert f"over {K} folds" in out and "±" in out and "soft vote of 3 fold models" in out
    assert "suspects: precision at" in out
    # every fold builds a learner; its notices are said once per command
    assert out.count("precision: fp32") == 1, out


def test_suspects_file_is_ranked_and_in_words(run):
    s = pd.read_csv(run / "suspects.csv")
    assert list(s.columns[:8]) == ["rank", "path", "person", "label", "given", "pred", "predicted", "p_given"]
    assert (s.pred != s.label).all() and s.p_given.is_monotonic_increasing
    from fastmask.labels import describe
    assert s.given.tolist() == [describe(x) for x in s.label] and s.predicted.tolist() == [describe(x) for x in s.pred]


def test_fold_model_reloaded_in_fresh_process_predicts_as_in_process(run):
    """oof.csv holds what fold 1's learner predicted in the training process; a fresh one must agree."""
    oof = pd.read_csv(run / "oof.csv")
    mine = oof[oof.fold == 1].head(12)
    code = f"""
import json, sys
from fastmask.models.infer import load, predict_probs
paths = json.loads(sys.stdin.read())
print(json.dumps(predict_probs(load(r"{run / 'fold1.safetensors'}"), paths).tolist()))
"""
    p = subprocess.run([sys.executable, "-c", code], input=json.dumps(mine.path.tolist()), capture_output=True,
                       text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    fresh = np.array(json.loads(p.stdout.strip().splitlines()[-1]))
    assert np.allclose(fresh, mine[[f"p{i}" for i in range(18)]].to_numpy(), atol=2e-5)


def test_crashed_fold_keeps_the_finished_ones(twin, tmp_path, monkeypatch, capsys):
    """Fold 1 of 2 crashes: the run is 'partial', fold 0 is recorded and exported, fold 1 is named."""
    import fastmask.data.load
    import fastmask.runs.session
    from fastmask.recipe import load_recipe, parse_sets
    from fastmask.runs.session import train_and_record
    real_fit, calls = fastmask.runs.session.fit, []

    def flaky_fit(recipe, learn, *a, **k):
        calls.append(recipe.split)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_fit(recipe, learn, *a, **k)

    monkeypatch.setattr(fastmask.runs.session, "fit", flaky_fit)
    r = load_recipe(REPO / "recipes" / "kfold.py", parse_sets([*TINY[1::2], "split=kfold:2"]))
    d = train_and_record(r, fastmask.data.load.load_data(twin), tmp_path / "runs")
    assert calls == ["kfold:2/0", "kfold:2/1"]
    st = json.loads((d / "status.json").read_text())
    assert st["status"] == "partial" and "CUDA out of memory" in st["failed_folds"]["1"]
    m = json.loads((d / "metrics.json").read_text())
    assert len(m["folds"]) == 1 and m["fold_status"] == {"0": "finished", "1": "failed"}
    assert (d / "fold0.pkl").is_file() and (d / "model.pkl").is_file() and not (d / "fold1.pkl").exists()
    oof = pd.read_csv(d / "oof.csv")
    assert set(oof.fold) == {0} and 0 < len(oof) < 280
    assert "fold 1 failed" in capsys.readouterr().err


def test_fold_recipes_and_cv_summary():
    from fastmask.errors import FastmaskError
    from fastmask.recipe import load_recipe
    from fastmask.report.folds import cv_summary, fold_recipe, folds, n_folds
    r = load_recipe(REPO / "recipes" / "kfold.py")
    assert n_folds(r) == 5 and folds(r) == [0, 1, 2, 3, 4]
    f3 = fold_recipe(r, 3)
    assert f3.split == "kfold:5/3" and f3.name == "kfold" and f3.parent is r.parent and r.split == "kfold:5"
    one = r.but(split="kfold:5/2")
    assert n_folds(one) is None and folds(one) == [None] and fold_recipe(one, None) is one
    assert n_folds(r.but(split="person")) is None
    with pytest.raises(FastmaskError, match="split: 'kfold:1' is not a valid"):
        r.but(split="kfold:1")
    s = cv_summary([0.5, 0.7])
    assert s["cv_mean"] == pytest.approx(0.6) and s["cv_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))


# --- planted tables: pooled OOF figure, per-fold figures, holdout soft vote --------------------------------------

def one_hot_probs(pred, sure=0.9):
    """18-column probability rows whose argmax is `pred`."""
    p = np.full((len(pred), 18), (1 - sure) / 17)
    p[np.arange(len(pred)), pred] = sure
    return p


def test_pooled_oof_and_per_fold_macro_f1_by_hand():
    from types import SimpleNamespace

    from fastmask.learn.metrics import scores
    from fastmask.report.folds import oof_frame, probs_of
    from fastmask.runs.outputs import fold_figures
    rows = lambda labels, f: pd.DataFrame({"path": [f"/f{f}/{i}.jpg" for i in range(len(labels))],
                                           "person": [f"{f}{i:05d}" for i in range(len(labels))], "label": labels})
    parts = [(0, rows([0, 0, 1], 0), one_hot_probs([0, 0, 1])),  # fold 0 all right: F1 1
             (1, rows([1, 2, 2], 1), one_hot_probs([1, 2, 1]))]  # fold 1: class 1 tp 1 fp 1 -> 2/3, class 2 tp 1 fn 1 -> 2/3
    oof = oof_frame(parts)
    pred = probs_of(oof).argmax(1)
    # Pooled: truth 0 0 1 1 2 2, pred 0 0 1 1 2 1 -> class 0: 1, class 1: tp 2 fp 1 -> 4/5, class 2: tp 1 fn 1 -> 2/3
    assert scores(oof["label"].to_numpy(), pred)["macro_f1"] == pytest.approx((1 + 4 / 5 + 2 / 3) / 3, abs=1e-12)
    figs = fold_figures([SimpleNamespace(fold=0, status="finished"), SimpleNamespace(fold=1, status="finished")],
                        oof, pred)
    assert figs["folds"] == pytest.approx([1.0, 2 / 3], abs=1e-12)
    assert figs["cv_mean"] == pytest.approx(5 / 6, abs=1e-12)  # the fold mean, not the pooled 37/45
    assert figs["cv_std"] == pytest.approx((1 / 3) / 2 ** 0.5, abs=1e-12)  # ddof 1 over 2 folds: |1 - 2/3| / sqrt 2
    assert figs["fold_status"] == {"0": "finished", "1": "finished"}


def test_holdout_figure_is_the_soft_vote_of_the_finished_folds():
    from types import SimpleNamespace

    from fastmask.runs.outputs import holdout
    ans = [0, 1, 2, 0]

    def table(*rows):
        p = np.zeros((len(rows), 18))
        p[:, :3] = rows
        return p
    m0 = table([.4, .6, 0], [.1, .8, .1], [0, .45, .55], [.7, .3, 0])  # argmax 1 1 2 0
    m1 = m0.copy()
    m2 = table([1, 0, 0], [.1, .8, .1], [0, 1, 0], [.7, .3, 0])  # argmax 0 1 1 0
    # Soft vote (mean): image 0 [.6 .4 0] -> 0, image 2 [0 .633 .367] -> 1: votes 0 1 1 0.
    # Hard vote (2 of 3) and fold 0 alone: 1 1 2 0.
    parts = [SimpleNamespace(fold=k, name=f"fold{k}", eval_probs=p) for k, p in enumerate([m0, m1, m2])]
    parts.append(SimpleNamespace(fold=3, name="fold3", eval_probs=None))  # a failed fold: not in the vote
    data = SimpleNamespace(answers=pd.DataFrame({"ImageID": ["a", "b", "c", "d"], "ans": ans}))
    h = holdout(parts, data, kfold=True)
    # Soft vote 0 1 1 0 against 0 1 2 0: class 0 tp 2 -> 1; class 1 tp 1 fp 1 -> 2/3; class 2 fn 1 -> 0.
    assert h["holdout_macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3, abs=1e-12)  # 5/9; hard vote: 7/9
    assert h["holdout_accuracy"] == pytest.approx(3 / 4)
    # 1 1 2 0 -> class 0 tp 1 fn 1 -> 2/3, class 1 tp 1 fp 1 -> 2/3, class 2 -> 1: 7/9; fold 2 is the soft vote's 5/9
    assert h["holdout_folds"] == pytest.approx([7 / 9, 7 / 9, 5 / 9], abs=1e-12)
    assert h["holdout_models"] == ["fold0", "fold1", "fold2"]


def test_no_weights_stored_twice(run):
    """model.pkl names fold0's learner without a second copy on disk: every weights file with the same
    bytes as another is the same file (a hard link), and nothing else (no models/best.pth) is left behind."""
    import hashlib
    import os
    seen = {}
    for f in sorted(run.rglob("*")):
        if f.suffix in (".pkl", ".pth", ".safetensors", ".pt"):
            seen.setdefault(hashlib.sha256(f.read_bytes()).hexdigest(), []).append(f)
    twins = [fs for fs in seen.values() if len(fs) > 1]
    assert twins, "model.pkl should name fold0's learner"
    for fs in twins:
        assert all(os.path.samefile(fs[0], f) for f in fs[1:]), fs
    assert not (run / "models").exists()

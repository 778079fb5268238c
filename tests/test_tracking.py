"""MLflow tracking (optional extra): off by default, on by FASTMASK_MLFLOW or uri=; a fastai Callback logs
params, per-epoch metrics, artifacts and the hypothesis / parent / verdict tags to a local sqlite store."""
import json
import sys

import pytest

from fastmask.errors import FastmaskError
from fastmask.tracking import ENV, resolve_uri, tracker
from test_card import fake_preds, make_run


def test_off_unless_asked(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    assert resolve_uri(None, tmp_path) is None and tracker(tmp_path) is None
    monkeypatch.setenv(ENV, "0")
    assert tracker(tmp_path) is None


def test_uri_forms(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "1")
    assert resolve_uri(None, tmp_path / "runs") == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    assert resolve_uri(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"  # the argument wins
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_asking_without_mlflow_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    with pytest.raises(FastmaskError, match=r"mlflow is not installed: pip install 'fastmask\[mlflow\]'"):
        tracker(tmp_path, uri="1")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    pytest.importorskip("mlflow")
    return tmp_path_factory.mktemp("mlflow")


def tiny_learner(path):
    """A fastai Learner on random tensors: the callback sees real fastai events in a second."""
    import torch
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    ds = list(zip(x, (x[:, 0] > 0).long()))
    dls = DataLoaders.from_dsets(ds, ds[:32], bs=16)
    return Learner(dls, torch.nn.Linear(4, 2), loss_func=CrossEntropyLossFlat(), metrics=[accuracy], path=path)


def test_callback_logs_params_epochs_artifacts_and_tags(store, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder
    runs = tmp_path / "runs"
    vp = fake_preds(tmp_path, seed=2)
    make_run(runs, "20260101T000000Z", "person_split", vp=vp)
    d, cfg, _ = make_run(runs, "20260102T000000Z", "oversample", parent="person_split", vp=vp,
                         metrics={"verdict": {"verdict": "supported", "delta": 0.04, "low": 0.01, "high": 0.07,
                                              "parent_run": "20260101T000000Z-person_split"}})
    (d / "card.md").write_text("# oversample\n")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    cb = tracker(runs, uri=uri)
    learn = tiny_learner(d)
    learn.fit(2, 1e-2, cbs=[cb])
    assert cb not in learn.cbs  # passed to fit: never exported with the learner
    run_id = cb.finish(d, "finished")

    c = MlflowClient(uri)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == d.name
    tags = run.data.tags
    assert tags["hypothesis"] == "oversample helps." and tags["parent"] == "person_split"
    assert tags["verdict"] == "supported" and tags["parent_run"] == "20260101T000000Z-person_split"
    assert tags["mlflow.source.git.commit"] == "abc1234" and tags["version.fastai"] == "2.8.12"
    assert run.data.params["arch"] == "test_resnet" and run.data.params["split"] == "person"
    for key in ("train_loss", "valid_loss", "accuracy", "lr"):
        assert [m.step for m in c.get_metric_history(run_id, key)] == [0, 1], key
    assert run.data.metrics["final_macro_f1"] == pytest.approx(json.loads((d / "metrics.json").read_text())["macro_f1"])
    assert run.data.metrics["verdict_delta"] == pytest.approx(0.04)
    arts = {a.path for a in c.list_artifacts(run_id)}
    assert {"card.md", "confusion.png", "curves.png", "metrics.json", "config.json", "valid_preds.csv"} <= arts
    assert not (tmp_path / "mlruns").exists() and (store / "mlartifacts").is_dir()


def test_env_var_default_store_and_backfill(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from fastmask.tracking import log_run
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, "1")
    runs = tmp_path / "runs"
    d, _, _ = make_run(runs, "20260101T000000Z", "baseline", vp=fake_preds(tmp_path), status="interrupted")
    (d / "history.csv").write_text("epoch,train_loss,valid_loss,macro_f1,accuracy,time\n0,2.1,2.0,0.1,0.2,00:03\n"
                                   "1,1.8,1.9,0.2,0.3,00:03\n")
    assert tracker(runs).uri == f"sqlite:///{(runs / 'mlflow.db').resolve()}"
    run_id = log_run(d)  # a run made before tracking was on
    c = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    run = c.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["verdict"] == "root"
    assert [m.value for m in c.get_metric_history(run_id, "macro_f1")] == [0.1, 0.2]
    assert (runs / "mlflow.db").is_file() and (runs / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
    from fastmask.board import collect
    assert [r["name"] for r in collect(runs)] == ["baseline"]  # the store is not taken for a run


def test_folds_log_apart_and_a_broken_store_only_warns(store, tmp_path):
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{store / 'mlflow.db'}"
    d, _, _ = make_run(tmp_path / "runs", "20260101T000000Z", "kfold", vp=fake_preds(tmp_path),
                       metrics={"folds": [0.3, 0.4], "cv_mean": 0.35, "cv_std": 0.07,
                                "fold_status": {"0": "finished", "1": "failed"}}, status="partial")
    cb = tracker(tmp_path / "runs", uri=uri)
    for fold in (0, 1):
        tiny_learner(d).fit(1, 1e-2, cbs=[cb.for_fold(fold)])
    run_id = cb.finish(d, "partial")
    c = MlflowClient(uri)
    run = c.get_run(run_id)
    assert {"fold0/valid_loss", "fold1/valid_loss", "final_cv_mean"} <= set(run.data.metrics)
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "partial"

    (tmp_path / "a_file").write_text("")
    broken = tracker(tmp_path, uri=f"sqlite:///{tmp_path / 'a_file' / 'x.db'}")  # can never be created
    learn = tiny_learner(d)
    with pytest.warns(UserWarning, match="MLflow tracking stopped"):
        learn.fit(1, 1e-2, cbs=[broken])
    assert len(learn.recorder.values) == 1 and broken.finish(d) is None  # the training itself went on

"""MLflow tracking (optional extra): off by default, on by FASTMASK_MLFLOW or uri=; each run folder is logged
once (params, every epoch of history.csv as steps, final figures, artifacts, hypothesis / parent / verdict
tags) to a local sqlite store, by the session at the end of a run or afterwards as a back-fill."""
import json
import sys

import pytest

from fastmask.errors import FastmaskError
from fastmask.labels import describe
from fastmask.runs.tracking import ENV, log_run, resolve_uri, track, tracking_uri

from test_card import REPO, fake_preds, make_run


def test_off_unless_asked(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    assert resolve_uri(None, tmp_path) is None and tracking_uri(tmp_path) is None
    monkeypatch.setenv(ENV, "0")
    assert tracking_uri(tmp_path) is None


def test_uri_forms(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "1")
    assert resolve_uri(None, tmp_path / "runs") == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    assert resolve_uri(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"  # the argument wins
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_asking_without_mlflow_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(FastmaskError, match=r"mlflow is not installed: pip install 'fastmask\[mlflow\]'"):
        tracking_uri(tmp_path, uri="1")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    pytest.importorskip("mlflow")
    return tmp_path_factory.mktemp("mlflow")


HISTORY = "epoch,train_loss,valid_loss,macro_f1,accuracy,time\n0,2.1,2.0,0.1,0.2,00:03\n1,1.8,1.9,0.2,0.3,00:03\n"


def test_a_run_logs_params_epochs_final_figures_artifacts_and_tags(store, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder
    runs = tmp_path / "runs"
    vp = fake_preds(tmp_path, seed=2)
    make_run(runs, "20260101T000000Z", "person_split", vp=vp)
    d, cfg, _ = make_run(runs, "20260102T000000Z", "oversample", parent="person_split", vp=vp,
                         metrics={"verdict": {"verdict": "supported", "delta": 0.04, "low": 0.01, "high": 0.07,
                                              "parent_run": "20260101T000000Z-person_split"}})
    (d / "card.md").write_text("# oversample\n")
    (d / "history.csv").write_text(HISTORY)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    run_id = log_run(d, uri)

    c = MlflowClient(uri)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "oversample"  # the recipe leads; the stamp is a tag
    tags = run.data.tags
    assert tags["fastmask.stamp"] == "20260102T000000Z" and tags["mlflow.source.name"].startswith("python -m fastmask.run")
    assert c.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    f1 = json.loads((d / "metrics.json").read_text())["per_class_f1"]
    by_name = {describe(int(k)) if str(k).isdigit() else k: v for k, v in f1.items()}
    assert run.data.metrics["class_f1/male_lt30_mask"] == pytest.approx(by_name["male <30 mask"])
    assert run.data.metrics["class_f1/female_ge60_mask"] == pytest.approx(by_name["female >=60 mask"])
    assert len([k for k in run.data.metrics if k.startswith("class_f1/")]) == 18
    assert tags["hypothesis"] == "oversample helps." and tags["parent"] == "person_split"
    assert tags["verdict"] == "supported" and tags["parent_run"] == "20260101T000000Z-person_split"
    assert tags["mlflow.source.git.commit"] == "abc1234" and tags["version.fastai"] == "2.8.12"
    assert run.data.params["arch"] == "test_resnet" and run.data.params["split"] == "person"
    for key, values in (("train_loss", [2.1, 1.8]), ("valid_loss", [2.0, 1.9]), ("macro_f1", [0.1, 0.2])):
        hist = sorted(c.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in hist] == [(1, values[0]), (2, values[1])], key  # epochs from 1
    assert run.data.metrics["final_macro_f1"] == pytest.approx(json.loads((d / "metrics.json").read_text())["macro_f1"])
    assert run.data.metrics["verdict_delta"] == pytest.approx(0.04)
    arts = {a.path for a in c.list_artifacts(run_id)}
    assert {"card.md", "confusion.png", "curves.png", "metrics.json", "config.json", "valid_preds.csv",
            "history.csv"} <= arts
    assert not (tmp_path / "mlruns").exists() and (store / "mlartifacts").is_dir()


def test_a_run_is_logged_on_its_own_clock_with_its_model_and_one_line(store, tmp_path, capsys):
    """As mlflow.fastai.autolog would have logged it live: the run's start and end, each epoch at its end, the
    model files under model/; and one line naming the experiment and the run."""
    from datetime import datetime, timezone

    from mlflow.tracking import MlflowClient
    d, _, _ = make_run(tmp_path / "runs", "20260102T000000Z", "oversample", minutes=3.5, metrics={"macro_f1": 0.4})
    (d / "history.csv").write_text(HISTORY)  # two epochs of 3 s
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "model.json").write_text("{}")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    run_id = track(d, uri)
    assert capsys.readouterr().out == f"mlflow: logged run {d.name} to experiment 'fastmask' at {uri} (run id {run_id})\n"
    c = MlflowClient(uri)
    info = c.get_run(run_id).info
    start = int(datetime(2026, 1, 2, tzinfo=timezone.utc).timestamp() * 1000)
    assert (info.start_time, info.end_time) == (start, start + 210_000)  # 3.5 minutes
    hist = sorted(c.get_metric_history(run_id, "train_loss"), key=lambda m: m.step)
    assert [m.timestamp for m in hist] == [start + 3000, start + 6000]
    assert [m.timestamp for m in c.get_metric_history(run_id, "final_macro_f1")] == [start + 210_000]
    assert {a.path for a in c.list_artifacts(run_id, "model")} == {"model/model.safetensors", "model/model.json"}


def test_env_var_default_store_and_backfill(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, "1")
    runs = tmp_path / "runs"
    d, _, _ = make_run(runs, "20260101T000000Z", "baseline", vp=fake_preds(tmp_path), status="interrupted")
    (d / "history.csv").write_text(HISTORY)
    assert tracking_uri(runs) == f"sqlite:///{(runs / 'mlflow.db').resolve()}"
    run_id = log_run(d)  # a run made before tracking was on
    c = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    run = c.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["verdict"] == "root"
    assert [m.value for m in sorted(c.get_metric_history(run_id, "macro_f1"), key=lambda m: m.step)] == [0.1, 0.2]
    assert (runs / "mlflow.db").is_file() and (runs / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
    from fastmask.store.index import entries
    assert [e.recipe for e in entries(runs)] == ["baseline"]  # the store is not taken for a run


def test_folds_log_apart_and_a_broken_store_only_warns(store, tmp_path):
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{store / 'mlflow.db'}"
    d, _, _ = make_run(tmp_path / "runs", "20260101T000000Z", "kfold", vp=fake_preds(tmp_path),
                       metrics={"folds": [0.3, 0.4], "cv_mean": 0.35, "cv_std": 0.07,
                                "fold_status": {"0": "finished", "1": "failed"}}, status="partial")
    (d / "history.csv").write_text("epoch,train_loss,valid_loss,fold\n0,2.0,1.5,0\n0,2.2,1.7,1\n")
    run_id = log_run(d, uri)
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.metrics["fold0/valid_loss"] == 1.5 and run.data.metrics["fold1/valid_loss"] == 1.7
    assert run.data.metrics["final_cv_mean"] == 0.35
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "partial"

    (tmp_path / "a_file").write_text("")
    with pytest.warns(UserWarning, match="MLflow tracking skipped"):
        assert track(d, f"sqlite:///{tmp_path / 'a_file' / 'x.db'}") is None  # can never be created


def test_a_tracked_run_is_logged_once_at_its_end(tmp_path, monkeypatch, twin):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from fastmask.data.load import load_data
    from fastmask.recipe import load_recipe, parse_sets
    from fastmask.runs.session import train_and_record
    monkeypatch.setenv(ENV, "1")
    r = load_recipe(REPO / "recipes" / "baseline.py", parse_sets(["epochs=2", "arch=test_resnet", "size=32,24", "lr=1e-3"]))
    d = train_and_record(r, load_data(twin), tmp_path / "runs")
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    [run] = c.search_runs([c.get_experiment_by_name("fastmask").experiment_id])
    assert run.info.run_name == "baseline" and run.data.tags["fastmask.run_dir"] == str(d.dir.resolve())
    # what train_and_record hands back is what it wrote, not read back
    assert d.status == "finished" and d.metrics == json.loads((d / "metrics.json").read_text())
    assert d.status_json == json.loads((d / "status.json").read_text())
    assert run.info.status == "FINISHED"
    assert [m.step for m in sorted(c.get_metric_history(run.info.run_id, "valid_loss"), key=lambda m: m.step)] == [1, 2]
    assert run.data.metrics["final_macro_f1"] == pytest.approx(json.loads((d / "metrics.json").read_text())["macro_f1"])


def test_notes_tags_and_archive_reach_mlflow_at_once_and_by_sync(tmp_path, monkeypatch, capsys):
    """With FASTMASK_MLFLOW on, `fastmask note / tag / archive` bring the logged run's tags and description up
    to its notebook; a tag removed is deleted there; mlflow-sync does the same for runs logged before."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from fastmask.__main__ import main as fastmask
    from fastmask.mlflow_sync import main as sync
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, "1")
    runs = tmp_path / "runs"
    d, _, _ = make_run(runs, "20260101T000000Z", "oversample", vp=fake_preds(tmp_path))
    run_id = log_run(d)
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    assert client.get_run(run_id).data.tags["fastmask.archived"] == "false"
    assert fastmask(["note", str(d), "rare classes up, mask errors unchanged"]) == 0
    assert fastmask(["tag", str(d), "keep", "baseline"]) == 0
    assert "tags and description of" in capsys.readouterr().out
    tags = client.get_run(run_id).data.tags
    assert tags["tag.keep"] == tags["tag.baseline"] == "true" and tags["fastmask.tags"] == "keep, baseline"
    desc = tags["mlflow.note.content"]
    assert desc.startswith("oversample helps.") and desc.rstrip().endswith("rare classes up, mask errors unchanged")
    monkeypatch.delenv(ENV)  # tracking off: the notebook changes, the store does not
    assert fastmask(["tag", str(d), "keep", "--remove"]) == 0
    assert fastmask(["archive", str(d)]) == 0
    assert client.get_run(run_id).data.tags["tag.keep"] == "true"
    assert sync([str(runs)]) == 0  # the back-fill brings the logged run up to its notebook, logging nothing new
    assert "0 run(s) logged, 1 already there" in capsys.readouterr().out
    tags = client.get_run(run_id).data.tags
    assert "tag.keep" not in tags and tags["tag.baseline"] == "true" and tags["fastmask.archived"] == "true"
    assert len(client.search_runs([client.get_experiment_by_name("fastmask").experiment_id])) == 1

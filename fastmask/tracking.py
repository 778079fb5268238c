"""Optional MLflow tracking: a small fastai Callback (MLflow's own fastai autolog is tested only up to
fastai 2.7) that logs a run's recipe fields as params, every epoch's losses and metrics, and, once the
card is written, the final figures, the card and plots as artifacts and the hypothesis / parent / verdict
as tags.

Off unless asked: `FASTMASK_MLFLOW=URI` in the environment or `uri=` in code. The URI is any MLflow
tracking URI (`sqlite:///abs/path.db`, `http://host:5000`, `file:/path`); a plain path means that
sqlite file; `1`/`true`/`on` mean the default store, `RUNS_DIR/mlflow.db` (artifacts beside it in
`RUNS_DIR/mlartifacts/`). Needs `pip install 'fastmask[mlflow]'`.

    cb = tracker(runs_dir)              # None when tracking is off
    learn.fit_one_cycle(5, cbs=[cb])    # params at before_fit, metrics every epoch
    cb.finish(run_dir, "finished")      # after card.md and metrics.json are written
"""
import json
import math
import os
from pathlib import Path

from fastai.callback.core import Callback
from fastai.learner import Recorder

from .errors import FastmaskError
from .record import read_json

ENV = "FASTMASK_MLFLOW"
EXPERIMENT = "fastmask"
ARTIFACTS = ("card.md", "confusion.png", "curves.png", "top_losses.png", "metrics.json", "config.json",
             "history.csv", "recipe.py", "valid_preds.csv", "status.json", "suspects.csv")
FINAL = ("macro_f1", "accuracy", "mask_f1", "gender_f1", "age_f1", "holdout_macro_f1", "holdout_accuracy",
         "epochs_run", "cv_mean", "cv_std")
_ON = ("1", "true", "on", "yes")


def resolve_uri(uri=None, runs_dir="runs"):
    """The tracking URI asked for (argument first, then $FASTMASK_MLFLOW), or None when tracking is off."""
    uri = uri if uri is not None else os.environ.get(ENV, "")
    uri = str(uri).strip()
    if not uri or uri.lower() in ("0", "false", "off", "no"):
        return None
    if uri.lower() in _ON:
        return "sqlite:///" + str((Path(runs_dir) / "mlflow.db").resolve())
    if "://" not in uri and not uri.startswith(("file:", "databricks")):
        return "sqlite:///" + str(Path(uri).expanduser().resolve())  # a plain path: a sqlite file
    return uri


def _mlflow():
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise FastmaskError(f"MLflow tracking asked for ({ENV} or uri=) but mlflow is not installed: "
                            "pip install 'fastmask[mlflow]'") from None
    return MlflowClient


def tracker(runs_dir="runs", uri=None, experiment=EXPERIMENT, **kw):
    """An MLflowCallback when tracking is on (`uri` or $FASTMASK_MLFLOW), else None. Fails fast (before
    any training) when it is on and mlflow is missing."""
    uri = resolve_uri(uri, runs_dir)
    if uri is None:
        return None
    _mlflow()
    return MLflowCallback(uri, experiment=experiment, **kw)


def _value(v, limit=500):
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= limit else s[: limit - 1] + "…"


class MLflowCallback(Callback):
    """Logs one fastai fit to one MLflow run. Pass it to `fit`/`fit_one_cycle` (`cbs=`) so it is not
    exported with the learner. Params and tags come from `params`/`tags`, plus `config.json` in
    `learn.path` when a fastmask run folder is there. `finish(run_dir, status)` adds the final figures,
    artifacts and the verdict tag, and closes the MLflow run."""
    order = Recorder.order + 1  # after the Recorder has this epoch's values
    run_after = Recorder

    def __init__(self, uri, experiment=EXPERIMENT, run_name=None, params=None, tags=None):
        self.uri, self.experiment, self.run_name = uri, experiment, run_name
        self.params, self.tags = dict(params or {}), dict(tags or {})
        self.client, self.run_id, self.step, self.prefix, self.broken = None, None, 0, "", None

    def for_fold(self, fold):
        """This callback, logging the next fit's epochs as `fold{fold}/<metric>` (k-fold runs: one
        MLflow run, each fold's curves apart); fold None logs plain names."""
        self.prefix = "" if fold is None else f"fold{fold}/"
        return self

    def _guard(self, f, *args):
        """Tracking never costs a training run: an MLflow failure becomes one warning and logging stops."""
        if self.broken:
            return None
        try:
            return f(*args)
        except Exception as e:  # noqa: BLE001
            import warnings
            self.broken = f"{type(e).__name__}: {e}"
            warnings.warn(f"MLflow tracking stopped for this run ({self.uri}): {self.broken}", stacklevel=2)
            return None

    # -- MLflow plumbing
    def _client(self):
        if self.client is None:
            self.client = _mlflow()(tracking_uri=self.uri)
        return self.client

    def _experiment_id(self):
        c = self._client()
        exp = c.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):  # artifacts beside the database, not in the current folder
            location = (Path(self.uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
        return c.create_experiment(self.experiment, artifact_location=location)

    def start(self, run_dir=None):
        """Open the MLflow run (once) with params and tags from `run_dir`/config.json and the arguments."""
        if self.run_id is not None:
            return self.run_id
        from mlflow.entities import Param, RunTag
        cfg = read_json(Path(run_dir) / "config.json", {}) if run_dir else {}
        params = {**{k: v for k, v in (cfg.get("fields") or {}).items()}, **self.params}
        env = cfg.get("environment") or {}
        tags = {"hypothesis": cfg.get("hypothesis") or "", "parent": cfg.get("parent") or "",
                "recipe": cfg.get("name") or "", "data_fingerprint": cfg.get("data_fingerprint") or "",
                "fastmask.run_dir": str(Path(run_dir).resolve()) if run_dir else "",
                "mlflow.note.content": cfg.get("hypothesis") or "",
                "mlflow.source.git.commit": env.get("commit") or "",
                **{f"version.{k}": env[k] for k in ("python", "torch", "fastai", "timm") if env.get(k)},
                **self.tags}
        tags = {k: _value(v, 5000) for k, v in tags.items() if v not in ("", None)}
        name = self.run_name or (Path(run_dir).name if run_dir else None)
        run = self._client().create_run(self._experiment_id(), run_name=name)
        self.run_id = run.info.run_id
        self._client().log_batch(self.run_id, params=[Param(k, _value(v)) for k, v in params.items()],
                                 tags=[RunTag(k, v) for k, v in tags.items()])
        return self.run_id

    def _log(self, values, step):
        from mlflow.entities import Metric
        import time
        now = int(time.time() * 1000)
        ms = [Metric(k.replace(" ", "_"), float(v), now, step) for k, v in values.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))]
        if ms:
            self._client().log_batch(self.run_id, metrics=ms)

    # -- fastai events
    def before_fit(self):
        self._guard(self.start, self.learn.path if (Path(self.learn.path) / "config.json").is_file() else None)

    def after_epoch(self):
        self._guard(self._after_epoch)

    def _after_epoch(self):
        rec = self.learn.recorder
        names = [n for n in rec.metric_names[1:] if n != "time"]
        values = dict(zip(names, rec.values[-1])) if rec.values else {}
        try:
            values["lr"] = self.learn.opt.hypers[-1]["lr"]
        except (AttributeError, IndexError, KeyError, TypeError):
            pass
        self._log({self.prefix + k: v for k, v in values.items()}, self.epoch)
        self.step = max(self.step, self.epoch + 1)

    # -- after the card
    def finish(self, run_dir, status="finished", artifacts=ARTIFACTS):
        """Final figures, artifacts and verdict tag from the run folder, then close the MLflow run as
        FINISHED (finished or partial), KILLED (interrupted) or FAILED. Returns the MLflow run id, or None
        when tracking failed (a warning said why)."""
        return self._guard(self._finish, run_dir, status, artifacts)

    def _finish(self, run_dir, status, artifacts):
        from mlflow.entities import RunTag
        run_dir = Path(run_dir)
        self.start(run_dir)
        m = read_json(run_dir / "metrics.json", {}) or {}
        final = {f"final_{k}": m.get(k) for k in FINAL}
        final.update({f"holdout_{k}_f1": v for k, v in (m.get("holdout_task_f1") or {}).items()})
        v = m.get("verdict") or {}
        if "delta" in v:
            final.update(verdict_delta=v["delta"], verdict_low=v.get("low"), verdict_high=v.get("high"))
        self._log(final, self.step)
        has_parent = (read_json(run_dir / "config.json", {}) or {}).get("parent") or self.tags.get("parent")
        tags = {"verdict": v.get("verdict") or ("no parent run" if has_parent else "root"), "status": status}
        if v.get("parent_run"):
            tags["parent_run"] = v["parent_run"]
        self._client().log_batch(self.run_id, tags=[RunTag(k, str(x)) for k, x in tags.items()])
        for name in artifacts:
            if (run_dir / name).is_file():
                self._client().log_artifact(self.run_id, str(run_dir / name))
        state = {"finished": "FINISHED", "partial": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
        self._client().set_terminated(self.run_id, status=state)
        return self.run_id


def log_run(run_dir, uri=None, experiment=EXPERIMENT):
    """Log a finished run folder after the fact (params, per-epoch history.csv, artifacts, tags);
    returns the MLflow run id. For runs made before tracking was on."""
    import pandas as pd
    run_dir = Path(run_dir)
    uri = resolve_uri(uri if uri is not None else "1", run_dir.parent)
    cb = MLflowCallback(uri, experiment=experiment)
    cb.start(run_dir)
    hist = run_dir / "history.csv"
    if hist.is_file():
        for i, row in pd.read_csv(hist).iterrows():
            pre = f"fold{int(row['fold'])}/" if "fold" in row and pd.notna(row["fold"]) else ""
            step = int(row.get("epoch", i))
            cb._log({pre + k: v for k, v in row.items() if k not in ("epoch", "time", "fold")}, step)
            cb.step = max(cb.step, step + 1)
    status = (read_json(run_dir / "status.json", {}) or {}).get("status", "finished")
    return cb.finish(run_dir, status)

"""Optional MLflow tracking: each run folder is logged once, when its card is written, through MLflow's own
client: the recipe fields as params, every epoch of history.csv as metric steps (`fold{k}/` or
`seed{s}/` prefixes for several models), the final figures, the card, plots and records as artifacts,
and the hypothesis / parent / verdict as tags. `log_run` back-fills runs made before tracking was on.

Off unless asked: `FASTMASK_MLFLOW=URI` in the environment or `uri=` in code. The URI is any MLflow
tracking URI (`sqlite:///abs/path.db`, `http://host:5000`, `file:/path`); a plain path means that
sqlite file; `1`/`true`/`on` mean the default store, `RUNS_DIR/mlflow.db` (artifacts beside it in
`RUNS_DIR/mlartifacts/`). Needs `pip install 'fastmask[mlflow]'`."""
import getpass
import json
import os
import time
import warnings
from datetime import datetime
from pathlib import Path

import pandas as pd

from fastmask import console
from fastmask.errors import FastmaskError, one_line
from fastmask.labels import describe
from fastmask.store import notebook
from fastmask.store.folder import PLOT_FILES, RECORDS, STATUS, SUSPECTS, finite_number
from fastmask.store.run_folder import RunFolder

ENV = "FASTMASK_MLFLOW"
EXPERIMENT = "fastmask"
ARTIFACTS = (*RECORDS, *PLOT_FILES, STATUS, SUSPECTS)
FINAL = ("macro_f1", "accuracy", "mask_f1", "gender_f1", "age_f1", "holdout_macro_f1", "holdout_accuracy",
         "epochs_run", "cv_mean", "cv_std", "seed_std")
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
STATES = {"finished": "FINISHED", "partial": "FINISHED", "interrupted": "KILLED"}  # anything else: FAILED
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


def tracking_uri(runs_dir="runs", uri=None):
    """The URI when tracking is on, else None; fails fast (before any training) when mlflow is missing."""
    uri = resolve_uri(uri, runs_dir)
    if uri is not None:
        _client_class()
        _check_scheme(uri)
    return uri


def _check_scheme(uri):
    """FastmaskError naming the URI unless MLflow has a tracking store for its scheme, checked without
    opening it (opening a sqlite store creates the database)."""
    from urllib.parse import urlparse
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry
        known = set(_tracking_store_registry._registry)
    except (ImportError, AttributeError):  # another MLflow: its own error will have to do
        return
    scheme = urlparse(uri).scheme.split("+")[0]  # postgresql+psycopg2://: the database's scheme
    if scheme not in known:
        raise FastmaskError(f"MLflow tracking URI {uri!r}: scheme {scheme!r} is not one MLflow tracks to "
                            f"({', '.join(sorted(k for k in known if k))}; or a plain path for a sqlite file)")


def _client_class():
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise FastmaskError(f"MLflow tracking asked for ({ENV} or uri=) but mlflow is not installed: "
                            "pip install 'fastmask[mlflow]'") from None
    quiet_mlflow()
    return MlflowClient


def quiet_mlflow():
    """MLflow's own INFO lines ("Creating initial MLflow database tables...", alembic's migrations) off:
    ours say what happened. Its warnings and errors still show. Every use of MLflow here goes through
    _client_class, which calls this once mlflow is imported (it sets its loggers up on import)."""
    import logging
    for name in ("mlflow", "alembic"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


def track(run_dir, uri):
    """log_run for the session: tracking never costs a run, so a failing store is one warning. Says where
    the run went in one line (not with --quiet)."""
    try:
        run_id = log_run(run_dir, uri)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"MLflow tracking skipped for {Path(run_dir).name} ({uri}): {one_line(e)}", stacklevel=2)
        return None
    if not console.quiet():
        print(f"mlflow: logged run {Path(run_dir).name} to experiment '{EXPERIMENT}' at {uri} (run id {run_id})")
    return run_id


def log_run(run_dir, uri=None, experiment=EXPERIMENT):
    """Log the run folder `run_dir` as one MLflow run, whatever its status; returns the MLflow run id."""
    from mlflow.entities import Metric, Param
    run_dir = Path(run_dir)
    uri = resolve_uri(uri if uri is not None else "1", run_dir.parent)
    client = _client_class()(tracking_uri=uri)
    folder = RunFolder(run_dir)
    cfg, m, status = folder.config, folder.metrics, folder.status_json.get("status", "finished")
    # the recipe's name leads (the UI cuts long names); the folder's stamp stays a tag
    st, now = folder.status_json, int(time.time() * 1000)
    # the run's own clock, as mlflow.fastai.autolog would have logged it live: its start, each epoch's end
    # (the start plus the epochs' times in history.csv), and its end (status.json's last update)
    start = _ms(st.get("started")) or now
    end = max(start, _ms(st.get("updated")) or _ms(st.get("heartbeat")) or start + int(60000 * (st.get("minutes") or 0)))
    run = client.create_run(_experiment_id(client, uri, experiment), run_name=cfg.get("name") or run_dir.name,
                            start_time=start, tags={**_tags(cfg, m, run_dir, status), **notebook_tags(run_dir, cfg)})
    run_id = run.info.run_id
    steps = _history_steps(folder.history, start)
    final = {f"final_{k}": m.get(k) for k in FINAL}
    final.update({f"holdout_{k}_f1": v for k, v in (m.get("holdout_task_f1") or {}).items()})
    final.update({f"class_f1/{_class_name(k)}": v for k, v in (m.get("per_class_f1") or {}).items()})
    v = m.get("verdict") or {}
    if "delta" in v:
        final.update(verdict_delta=v["delta"], verdict_low=v.get("low"), verdict_high=v.get("high"))
    last = max((s for _, _, s, _ in steps), default=-1) + 1
    metrics = [Metric(k, float(x), ts, s) for k, x, s, ts in [*steps, *((k, x, last, end) for k, x in final.items())]
               if finite_number(x)]
    params = [Param(k, _text(x)) for k, x in (cfg.get("fields") or {}).items()]
    client.log_batch(run_id, params=params)  # ~30 recipe fields, under log_batch's 100
    for i in range(0, len(metrics), 1000):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    for name in ARTIFACTS:
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))
    for f in sorted(run_dir.glob("*.safetensors")):  # the model without code: weights + the JSON that rebuilds it
        for part in (f, f.with_suffix(".json")):
            if part.is_file():
                client.log_artifact(run_id, str(part), artifact_path="model")
    client.set_terminated(run_id, status=STATES.get(status, "FAILED"), end_time=end)
    return run_id


def _ms(iso):
    """Milliseconds since the epoch of an ISO time from status.json, or None."""
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def _seconds(text):
    """fastai's epoch time ("00:07", "1:02:03") in seconds; 0 when unreadable."""
    try:
        parts = [int(x) for x in str(text).split(":")]
    except ValueError:
        return 0
    return sum(x * 60 ** i for i, x in enumerate(reversed(parts)))


def _experiment_id(client, uri, name):
    exp = client.get_experiment_by_name(name)
    if exp is None:
        location = None
        if uri.startswith("sqlite:///"):  # artifacts beside the database, not in the current folder
            location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
        exp = client.get_experiment(client.create_experiment(name, artifact_location=location))
    if exp.tags.get(KIND_TAG) != KIND:  # MLflow 3 opens untagged experiments on its GenAI pages
        client.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
    return exp.experiment_id


def _tags(cfg, m, run_dir, status):
    env, v = cfg.get("environment") or {}, m.get("verdict") or {}
    tags = {"hypothesis": cfg.get("hypothesis"), "parent": cfg.get("parent"), "recipe": cfg.get("name"),
            "data_fingerprint": cfg.get("data_fingerprint"), "fastmask.run_dir": str(run_dir.resolve()),
            "mlflow.note.content": cfg.get("hypothesis"), "mlflow.source.git.commit": env.get("commit"),
            "mlflow.source.name": env.get("command") or cfg.get("name"), "mlflow.source.type": "LOCAL",
            "mlflow.user": env.get("user") or getpass.getuser(), "fastmask.stamp": run_dir.name.split("-", 1)[0],
            **{f"version.{k}": env.get(k) for k in ("python", "torch", "fastai", "timm")},
            "verdict": v.get("verdict") or ("no parent run" if cfg.get("parent") else "root"),
            "parent_run": v.get("parent_run"), "status": status}
    return {k: _text(x, 5000) for k, x in tags.items() if x not in ("", None)}


TAG_PREFIX = "tag."  # a fastmask tag `keep` is the MLflow tag `tag.keep`, so the UI can filter on it


def notebook_tags(run_dir, cfg=None):
    """The run's notebook as MLflow tags: each fastmask tag, whether it is archived, and the description (the
    hypothesis, then every note dated and signed)."""
    book = notebook.read(run_dir)
    cfg = RunFolder(run_dir).config if cfg is None else cfg
    notes = [f"- {n['at']} {n['user']}@{n['host']}: {n['text']}" for n in book.notes]
    text = "\n\n".join(x for x in (cfg.get("hypothesis"), "\n".join(notes)) if x)
    return {**{TAG_PREFIX + t: "true" for t in book.tags}, "fastmask.tags": ", ".join(book.tags),
            "fastmask.archived": "true" if book.archived else "false", **({"mlflow.note.content": _text(text, 5000)}
                                                                         if text else {})}


def push_notebook(client, run_id, run_dir):
    """Bring a logged run's tags and description up to its notebook: a tag removed since is deleted."""
    now = notebook_tags(run_dir)
    for key in client.get_run(run_id).data.tags:
        if key.startswith(TAG_PREFIX) and key not in now:
            client.delete_tag(run_id, key)
    for key, value in now.items():
        client.set_tag(run_id, key, value)


def logged_runs(client, experiment=EXPERIMENT):
    """{run folder (its fastmask.run_dir tag): MLflow run} of the store's fastmask experiment, newest first."""
    exp = client.get_experiment_by_name(experiment)
    out, token = {}, None
    while exp is not None:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        for r in page:
            out.setdefault(r.data.tags.get("fastmask.run_dir"), r)
        token = page.token
        if not token:
            break
    out.pop(None, None)
    return out


def sync_notebook(run_dir):
    """After `fastmask note / tag / archive`: when tracking is on ($FASTMASK_MLFLOW), the run's MLflow tags and
    description follow its notebook. Tracking never costs the note: a failing store is one line, and a run
    the store does not hold yet is left for mlflow-sync. Returns the line to print, or None."""
    run_dir = Path(run_dir)
    uri = resolve_uri(None, run_dir.parent)
    if uri is None:
        return None
    try:
        client = _client_class()(tracking_uri=uri)
        run = logged_runs(client).get(str(run_dir.resolve()))
        if run is None:
            return f"mlflow: {run_dir.name} is not in {uri} yet (fastmask mlflow-sync {run_dir.parent} logs it)"
        push_notebook(client, run.info.run_id, run_dir)
    except Exception as e:  # noqa: BLE001  (tracking never costs a note)
        return f"mlflow: could not update {run_dir.name} at {uri}: {one_line(e)}"
    return f"mlflow: tags and description of {run_dir.name} updated at {uri}"


def _history_steps(hist, start):
    """(name, value, step, time in ms) for every number in history.csv; several models' columns get a
    prefix. Each epoch is stamped when it ended: `start` plus the times of the epochs before it and its own
    (the models of a k-fold or seeds run trained one after another)."""
    if hist is None:
        return []
    group = next((g for g in ("fold", "seed") if g in hist), None)
    out, clock = [], start
    for i, row in hist.iterrows():
        pre = f"{group}{int(row[group])}/" if group and pd.notna(row[group]) else ""
        # history.csv counts epochs from 0 (fastai's CSVLogger); MLflow's steps count from 1, as the rest does
        step = (int(row["epoch"]) if "epoch" in row and pd.notna(row["epoch"]) else int(i)) + 1
        clock += 1000 * _seconds(row.get("time"))
        out += [(pre + k.replace(" ", "_"), x, step, clock) for k, x in row.items() if k not in ("epoch", "time", group)]
    return out


def _class_name(key):
    """An MLflow-safe metric name for a per_class_f1 key (a class name, or the code older runs used):
    MLflow takes letters, digits, _ - . / : and spaces, so "<30" and ">=60" are spelled out."""
    name = describe(int(key)) if str(key).isdigit() else str(key)
    return name.replace(">=", "ge").replace("<", "lt").replace(" ", "_")


def _text(v, limit=500):
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= limit else s[: limit - 1] + "…"

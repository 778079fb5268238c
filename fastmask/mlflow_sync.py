"""fastmask mlflow-sync RUNS_DIR|RUN_DIR ... [--uri URI]

Back-fills MLflow with run folders made before tracking was on: every run of a runs folder (or the run folders
named) is logged once, as a finished run logs itself; runs the store already holds (by their fastmask.run_dir
tag) are not logged again, only their tags and description brought up to their notebook (fastmask note / tag /
archive); runs still running are skipped. The store: --uri, else $FASTMASK_MLFLOW, else RUNS_DIR/mlflow.db."""
import sys
from pathlib import Path

from fastmask import console
from fastmask.errors import FastmaskError, Parser, cli, one_line
from fastmask.runs.tracking import log_run, logged_runs, push_notebook, tracking_uri
from fastmask.store.folder import CONFIG, STATUS
from fastmask.store.index import entries
from fastmask.store.run_folder import is_run


def run_folders(paths, warn=print):
    """The run folders named, or found in the runs folders named (oldest first), without running ones."""
    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise FastmaskError(f"{p}: no such folder")
        if is_run(p):
            found = [e for e in entries(p.parent) if e.dir.resolve() == p.resolve()]
            if not found:
                raise FastmaskError(f"{p}: unreadable run folder ({CONFIG} or {STATUS})")
        else:
            found = entries(p, warn=warn)
            if not found:
                raise FastmaskError(f"{p}: neither a run folder nor a runs folder holding any")
        for e in found:
            if e.status == "running":
                warn(f"skipping {e.dir}: still running (it logs itself when it ends, if tracking is on)")
            else:
                out.append(e.dir)
    return list(dict.fromkeys(out))


def logged(uri):
    """{run folder (its fastmask.run_dir tag): MLflow run id} of the runs the store at `uri` holds, completely
    logged: a back-fill that died half-way (its MLflow run still RUNNING) is deleted so that it is logged again."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    seen = {}
    for run_dir, r in logged_runs(client).items():
        if r.info.status == "RUNNING":
            client.delete_run(r.info.run_id)
        else:
            seen[run_dir] = r.info.run_id
    return seen


def sync(paths, uri=None, force=False, say=print):
    """Log every run folder under `paths` not yet in its store; returns (logged, skipped, failed) counts.
    One run that fails to log is one line and the others still go."""
    done, skipped, failed, known = 0, 0, 0, {}
    for d in run_folders(paths, warn=say):
        u = tracking_uri(d.parent, uri) or tracking_uri(d.parent, "1")  # fails fast without mlflow; quiets it
        if u not in known:
            known[u] = {} if force else logged(u)
        if str(d.resolve()) in known[u]:  # logged already: its notes and tags may be newer than the store's
            from mlflow.tracking import MlflowClient
            try:
                push_notebook(MlflowClient(tracking_uri=u), known[u][str(d.resolve())], d)
            except Exception as e:  # noqa: BLE001  (a damaged notebook or a store error: say which, go on)
                say(f"failed {d}: {one_line(e)}")
                failed += 1
                continue
            skipped += 1
            continue
        try:
            run_id = log_run(d, u)
        except Exception as e:  # noqa: BLE001  (a store error or a damaged run: say which, go on)
            say(f"failed {d}: {one_line(e)}")
            failed += 1
            continue
        known[u][str(d.resolve())] = run_id
        say(f"logged {d} -> {u} (run {run_id})")
        done += 1
    return done, skipped, failed


def main(argv):
    ap = Parser(prog=console.prog("mlflow-sync"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("paths", nargs="+", metavar="RUNS_DIR|RUN_DIR", help="runs folders or run folders")
    ap.add_argument("--uri", help="MLflow tracking URI or sqlite file (default: $FASTMASK_MLFLOW, else RUNS_DIR/mlflow.db)")
    ap.add_argument("--force", action="store_true", help="log runs again even when the store holds them")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    args = ap.parse_args(argv)
    done, skipped, failed = sync(args.paths, uri=args.uri, force=args.force)
    print(f"mlflow-sync: {done} run(s) logged, {skipped} already there" + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli(main)())

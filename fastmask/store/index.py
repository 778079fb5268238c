"""The one index of run folders: every reader (the board, a card's parent run, the search, MLflow back-fill)
finds runs here, by the same rules. A run folder is a folder holding config.json or status.json."""
from pathlib import Path
from typing import Callable, Optional

from fastmask.errors import FastmaskError
from fastmask.recipe import JUDGING, Recipe, _plain
from fastmask.store.folder import CONFIG, METRICS, STATUS, json_problem, read_json
from fastmask.store.run_folder import RunFolder, is_run


def entries(runs_dir, warn: Optional[Callable[[str], None]] = None, must_exist=False):
    """Every run folder under `runs_dir` as a RunFolder, oldest first (folder names start with a UTC stamp). A folder
    whose JSON is unreadable or not an object is skipped, with one line to `warn` when given, so one
    bad folder never hides the others."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        if must_exist:
            raise FastmaskError(f"runs folder {runs_dir}: no such folder")
        return []
    out = []
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        if not is_run(d):
            continue
        problem = next((p for f in (CONFIG, STATUS, METRICS) if (p := json_problem(d / f))), None)
        if problem:
            if warn:
                warn(f"skipping {d}: {problem}")
            continue
        out.append(RunFolder(d, config=read_json(d / CONFIG, {}), status_json=read_json(d / STATUS, {})))
    return out


def finished(runs_dir, name=None, fingerprint=None, fields=None):
    """Finished runs, newest first, optionally of one recipe `name`, one data `fingerprint` and exactly
    these resolved `fields` (config.json's "fields")."""
    return [e for e in reversed(entries(runs_dir))
            if e.status_json.get("status") == "finished"
            and (name is None or e.recipe == name)
            and (fingerprint is None or e.config.get("data_fingerprint") == fingerprint)
            and (fields is None or e.config.get("fields") == fields)]


# Fields that never make two runs of one recipe different setups: which seeds trained (they pool, seed by
# seed), how many, and how the hypothesis is judged.
SEED_FIELDS = ("seed", "replicates")


def setup(fields):
    """A run's resolved fields less the seeds and the judging fields, with the defaults of fields added
    since the run was made, so an older run still pools with a newer one of the same setup."""
    full = {**_DEFAULT_FIELDS, **(fields or {})}
    return {k: v for k, v in full.items() if k not in SEED_FIELDS and k not in JUDGING}


_DEFAULT_FIELDS = {k: _plain(v) for k, v in Recipe().fields().items()}


def seeds_of(fields):
    """The seeds a run trained: seed .. seed + replicates - 1 (one for a k-fold run)."""
    fields = fields or {}
    seed, n = fields.get("seed", 0), fields.get("replicates", 1)
    return list(range(seed, seed + n)) if isinstance(seed, int) and isinstance(n, int) else []


def pool(runs_dir, name, fingerprint, fields, exclude=None):
    """Every finished run of recipe `name` on data `fingerprint` with the setup of `fields` (any seeds),
    newest first: together they are the evidence for that setup, seed by seed."""
    want = setup(fields)
    # resolved: the run being judged may be named absolutely (session) and the runs folder relatively ("runs")
    skip = Path(exclude).resolve() if exclude is not None else None
    return [e for e in finished(runs_dir, name=name, fingerprint=fingerprint)
            if (skip is None or Path(e.dir).resolve() != skip) and setup(e.config.get("fields")) == want]



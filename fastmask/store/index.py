"""The one index of run folders: every reader (the judgement, the board, compare, the queue, the parent on demand,
the search, MLflow back-fill) finds runs here, by the same rules: which runs are finished, which pool as the
evidence for one setup, which seeds a setup's runs cover, and whether a recorded verdict is stale.

A RunIndex is built once per command from a runs folder and reads each run folder once (config.json,
status.json and metrics.json as it is built; the predictions and history when first asked for, through the
folder's RunFolder, which keeps them). It is a snapshot: a command that makes runs builds it again after.
A run folder is a folder holding config.json or status.json."""
from pathlib import Path
from typing import Callable, Optional

from fastmask.errors import FastmaskError
from fastmask.recipe import JUDGING, Recipe, _plain
from fastmask.store.folder import CONFIG, METRICS, STATUS, load_json
from fastmask.store.run_folder import RunFolder, is_run

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


def same_setup(config, name, fingerprint, fields):
    """Whether the run whose config.json is `config` is evidence for recipe `name`'s setup `fields` on data
    `fingerprint` (None: any data): the same recipe, the same data, the same setup() (any seeds). The one
    rule that pools runs; RunIndex.pool applies it to the finished runs."""
    return _pools(config, name, fingerprint, setup(_dict(fields)), setup(_dict(config.get("fields"))))


def _pools(config, name, fingerprint, want, have):
    return (config.get("name") == name and (fingerprint is None or config.get("data_fingerprint") == fingerprint)
            and have == want)


def parent_side(config):
    """(parent recipe, data fingerprint, parent's fields): whose runs are the parent's evidence for the run
    whose config.json is `config`; None without a parent, or for a run recorded before config.json kept the
    parent's fields (it cannot be judged again)."""
    if not config.get("parent") or config.get("parent_fields") is None:
        return None
    return config["parent"], config.get("data_fingerprint"), config["parent_fields"]


def _dict(v):
    # a hand-edited config.json may hold anything as "fields": no setup of its own, never a crash
    return v if isinstance(v, dict) else {}


class RunIndex:
    """The run folders of `runs_dir`, each read once, as RunFolders, oldest first (folder names start with
    a UTC stamp). A folder whose JSON is unreadable or not an object is left out, with one line to `warn`
    when given, so one bad folder never hides the others; a missing `runs_dir` is an empty index (a
    FastmaskError with `must_exist`)."""

    def __init__(self, runs_dir, warn: Optional[Callable[[str], None]] = None, must_exist=False):
        self.dir = Path(runs_dir)
        self.runs = _read(self.dir, warn, must_exist)
        newest = [e for e in reversed(self.runs) if e.status_json.get("status") == "finished"]
        self._finished, self._by_name = newest, {}
        for e in newest:
            self._by_name.setdefault(_key(e.recipe), []).append(e)
        self._setups = {}

    @classmethod
    def of(cls, runs):
        """`runs` when it is an index already, else the index of the runs folder `runs`."""
        return runs if isinstance(runs, cls) else cls(runs)

    def __iter__(self):
        return iter(self.runs)

    def __len__(self):
        return len(self.runs)

    def finished(self, name=None, fingerprint=None, fields=None):
        """Finished runs, newest first, optionally of one recipe `name`, one data `fingerprint` and exactly
        these resolved `fields` (config.json's "fields")."""
        runs = self._finished if name is None else self._by_name.get(_key(name), [])
        return [e for e in runs
                if (fingerprint is None or e.config.get("data_fingerprint") == fingerprint)
                and (fields is None or e.config.get("fields") == fields)]

    def pool(self, name, fingerprint, fields, exclude=None):
        """Every finished run of recipe `name` on data `fingerprint` (None: any) with the setup of `fields`
        (any seeds), newest first, less the run folder `exclude`: together they are the evidence for that
        setup, seed by seed (same_setup's rule)."""
        want = setup(_dict(fields))
        # resolved: the run being judged may be named absolutely (session) and the runs folder relatively ("runs")
        skip = Path(exclude).resolve() if exclude is not None else None
        return [e for e in self._by_name.get(_key(name), [])
                if _pools(e.config, name, fingerprint, want, self._setup(e))
                and (skip is None or e.dir.name != skip.name or e.dir.resolve() != skip)]

    def seeds(self, name, fingerprint, fields):
        """The seeds the finished runs of recipe `name`'s setup `fields` on data `fingerprint` trained."""
        return {s for e in self.pool(name, fingerprint, fields) for s in seeds_of(_dict(e.config.get("fields")))}

    def evidence(self, run):
        """(child runs, parent runs) for RunFolder `run`'s verdict: `run` first, then the other finished runs
        of its setup, and the parent setup's finished runs on the same data, each newest first. The parent
        side is empty when the recipe has no parent or its parent has no comparable run."""
        cfg = run.config
        kids = [run, *self.pool(cfg.get("name"), cfg.get("data_fingerprint"), cfg.get("fields"), exclude=run.dir)]
        side = parent_side(cfg)
        return kids, (self.pool(*side) if side else [])

    def stale(self, run):
        """Whether finished run `run`'s (a RunFolder or its folder) recorded verdict no longer holds all the
        evidence: a comparable run of its setup or of its parent's finished since, or the parent runs it was
        judged on are gone. A run without a parent, or without the parent's fields, never is (nothing to
        judge it on again)."""
        run = run if isinstance(run, RunFolder) else RunFolder(run)
        if run.status_json.get("status") != "finished" or parent_side(run.config) is None:
            return False
        m = run.metrics
        old = m.get("verdict") if isinstance(m.get("verdict"), dict) else {}
        kids, parents = self.evidence(run)
        if not parents:
            return bool(old)
        return old.get("parent_runs") != [p.name for p in parents] or old.get("child_runs") != [k.name for k in kids]

    def _setup(self, e):
        # each run's setup worked out once: the board asks it of every pair of runs of one recipe
        if e.name not in self._setups:
            self._setups[e.name] = setup(_dict(e.config.get("fields")))
        return self._setups[e.name]


def _key(v):
    # names come from hand-editable JSON: one that is not text still indexes (and matches only its equal)
    try:
        hash(v)
    except TypeError:
        return repr(v)
    return v


def _read(runs_dir, warn, must_exist):
    if not runs_dir.is_dir():
        if must_exist:
            raise FastmaskError(f"runs folder {runs_dir}: no such folder")
        return []
    out = []
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        if not is_run(d):
            continue
        read = {k: load_json(d / f) for k, f in (("config", CONFIG), ("status_json", STATUS), ("metrics", METRICS))}
        problem = next((p for _, p in read.values() if p), None)
        if problem:
            if warn:
                warn(f"skipping {d}: {problem}")
            continue
        out.append(RunFolder(d, **{k: v for k, (v, _) in read.items()}))
    return out


# The index's questions for one command that asks just one: each builds the index of `runs_dir`.

def entries(runs_dir, warn: Optional[Callable[[str], None]] = None, must_exist=False):
    """Every run folder under `runs_dir` as a RunFolder, oldest first (RunIndex)."""
    return list(RunIndex(runs_dir, warn, must_exist))


def finished(runs_dir, name=None, fingerprint=None, fields=None):
    """RunIndex.finished of `runs_dir`."""
    return RunIndex(runs_dir).finished(name, fingerprint, fields)


def pool(runs_dir, name, fingerprint, fields, exclude=None):
    """RunIndex.pool of `runs_dir`."""
    return RunIndex(runs_dir).pool(name, fingerprint, fields, exclude)

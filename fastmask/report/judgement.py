"""This run against its parent: which runs count as the evidence, and the one judgement that the card, the
board, `fastmask compare` and MLflow all show (one function, so no two views can disagree).

The evidence for a hypothesis is every finished run of the child's setup and every finished run of the
parent's setup on the same data (`RunIndex.evidence`: any seeds, any replicates), paired seed by seed, so seeds
added later (`--decide`, `--replicates`, another `--set seed=`) join the same verdict. A card written
before its parent finished, or before more seeds came in, is re-judged (`rejudge`) by the next run of
that recipe, by `fastmask board` and by `fastmask compare` (outputs.rejudge rewrites the card); the verdict it
replaced stays in metrics.json's `verdict_history`."""
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from fastmask.errors import one_line
from fastmask.report.verdict import compare
from fastmask.store.folder import CONFIG
from fastmask.store.index import RunIndex
from fastmask.store.run_folder import RunFolder

DECIDED = ("supported", "refuted", "no effect")
DEFAULT_DECIDE = 6  # `--decide` without a number: up to six paired seeds


@dataclass
class Judgement:
    """This run against its parent's comparable runs: what the card says and metrics.json records."""
    parent: Optional[RunFolder] = None           # the parent's newest comparable run
    verdict: Optional[dict] = None               # verdict.compare's dict; None when no paired test was possible
    rising: list = field(default_factory=list)   # which of the two were still improving at their last epoch
    other_fingerprints: list = field(default_factory=list)  # no parent run: the data of the parent's other runs
    child_runs: list = field(default_factory=list)   # the folders pooled on each side, newest first
    parent_runs: list = field(default_factory=list)
    command: Optional[str] = None                # the command that adds the seeds a claim needs

    @property
    def entry(self):
        """metrics.json's "verdict": the verdict with the runs it pooled; None without a parent run."""
        if self.parent is None:
            return None
        return {**(self.verdict or {"verdict": "cannot compare"}), "parent_run": self.parent.name,
                "child_runs": self.child_runs, "parent_runs": self.parent_runs,
                **({"provisional": True} if self.rising and self.verdict else {}),
                **({"command": self.command} if self.command else {})}


def judge(this, runs):
    """The Judgement of RunFolder `this` against its parent's comparable runs (RunIndex.evidence) in `runs`:
    a runs folder, or the RunIndex of one that a caller judging many runs built once."""
    index = RunIndex.of(runs)
    cfg = this.config
    kids, parents = index.evidence(this)
    if not parents:
        other = [e for e in index.finished(name=cfg["parent"])
                 if e.config.get("data_fingerprint") != cfg.get("data_fingerprint")] if cfg.get("parent") else []
        return Judgement(other_fingerprints=[str(e.config.get("data_fingerprint")) for e in other])
    fields = cfg.get("fields") or {}
    try:
        # open-ended looks: one rule for every view, whenever re-judged
        v = compare(kids, parents, judged_on=fields.get("judged_on", "macro_f1"),
                    min_effect=fields.get("min_effect", 0.02))
    except Exception as e:  # noqa: BLE001  (an older or damaged parent run must not cost this run its card)
        warnings.warn(f"verdict against {parents[0].name}: {one_line(e)}")
        v = None
    newest = parents[0]
    rising = [who for who, h in (("this run", this.history), ("the parent's run", newest.history)) if still_improving(h)]
    command = decide_command(cfg, runs=index.dir) if v is not None and v.get("verdict") not in DECIDED else None
    return Judgement(newest, v, rising, child_runs=[k.name for k in kids], parent_runs=[p.name for p in parents],
                     command=command)


def decide_command(cfg, budget=None, runs=None):
    """The command that adds paired seeds to this run's setup and its parent's until the verdict decides:
    pasted from any folder it continues this evidence (the same recipe file, --set, --data and --runs)."""
    fields = cfg.get("fields") or {}
    budget = budget or max(DEFAULT_DECIDE, int(fields.get("decide") or 0))
    return run_command(cfg, runs, drop=("decide", "replicates"), extra=("--decide", budget))


def run_command(cfg, runs=None, recipe=None, drop=(), extra=()):
    """`fastmask run` for the setup of the run whose config.json is `cfg`, as a user pastes it: this
    interpreter by its full path (console.command_line), the recipe file (`recipe`, default the run's own;
    runs from before config.json kept its path: recipes/NAME.py), its --set overrides but those in `drop`,
    --data and --runs (`runs`, the run's runs folder) absolute, then `extra`."""
    from fastmask.console import command_line
    sets = [x for k, v in (cfg.get("overrides") or {}).items() if k not in drop for x in ("--set", f"{k}={set_text(v)}")]
    recipe = recipe or cfg.get("recipe_file") or f"recipes/{cfg.get('name')}.py"
    args = [_absolute(recipe), *sets]
    data = cfg.get("data")
    if data:
        args += ["--data", _absolute(Path(data).parent if Path(data).name == "train" else data)]
    if runs is not None:
        args += ["--runs", _absolute(runs)]
    return command_line("run", *args, *extra)


def set_text(v):
    """A field's value as `--set` text, as the recipe parser reads it back: a list as a,b (size=64,48), a dict as
    k:v,k:v (loss=ce:0.6,f1:0.4), None as none, a bool as true/false."""
    if isinstance(v, dict):
        return ",".join(f"{k}:{w}" for k, w in v.items())
    return ("none" if v is None else ",".join(map(str, v)) if isinstance(v, (tuple, list))
            else str(v).lower() if isinstance(v, bool) else str(v))


def _absolute(path):
    return str(Path(path).expanduser().resolve())


def still_improving(history, tol=0.005):
    """True when validation macro F1 was still rising at the last epoch (the mean curve over folds or
    seeds): the best epoch is the last and it beats every earlier one by more than `tol`."""
    if history is None or "macro_f1" not in history or len(history) < 2:
        return False
    groups = [c for c in ("fold", "seed") if c in history]
    curve = (history.groupby("epoch")["macro_f1"].mean() if groups and "epoch" in history
             else history["macro_f1"]).to_numpy(float)
    return bool(len(curve) >= 2 and curve[-1] > curve[:-1].max() + tol)


def same_verdict(a, b):
    """Whether two recorded verdicts say the same thing on the same runs."""
    keys = ("verdict", "parent_runs", "child_runs", "provisional")
    a, b = a or {}, b or {}
    return all(a.get(k) == b.get(k) for k in keys) and (
        a.get("delta") is None) == (b.get("delta") is None) and (
        a.get("delta") is None or abs(a["delta"] - b["delta"]) < 1e-12)


def stale(run_dir, runs):
    """Whether run `run_dir`'s recorded verdict no longer holds all the evidence (RunIndex.stale) in `runs`
    (a runs folder or its RunIndex)."""
    return RunIndex.of(runs).stale(run_dir)


def plan_for(run_dir, runs_dir=None, effect=None):
    """`fastmask plan`: the lines saying what would resolve `effect` (default: the recipe's min_effect)
    for the hypothesis of run `run_dir`, from the noise its verdict measured."""
    from fastmask.errors import FastmaskError
    from fastmask.report.verdict import plan_lines
    d = Path(run_dir)
    if not (d / CONFIG).is_file():
        raise FastmaskError(f"{d}: not a run folder (no {CONFIG})")
    this = RunFolder(d)
    cfg = this.config
    if not cfg.get("parent"):
        raise FastmaskError(f"{d}: recipe {cfg.get('name')} has no parent: there is no hypothesis to plan for")
    j = judge(this, Path(runs_dir) if runs_dir else d.parent)
    if j.verdict is None:
        raise FastmaskError(f"{d}: no comparable finished run of the parent {cfg['parent']} to measure the noise "
                            f"against; run `{decide_command(cfg, 2, runs_dir or d.parent)}` first")
    v = j.verdict
    effect = effect or (cfg.get("fields") or {}).get("min_effect", 0.02)
    head = (f"{cfg.get('name')} vs {cfg['parent']}: {v.get('verdict')}"
            + (f", delta {v['delta']:+.3f}" if "delta" in v else "")
            + f" on {v.get('seeds', 1)} paired seed(s) and {v.get('people', '?')} "
            + ("people" if v.get("units", "person") == "person" else "images"))
    return [head, *plan_lines(v, effect=effect, total_people=cfg.get("n_people"))]

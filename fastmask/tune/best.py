"""The recipe files a search writes, each a child of the searched recipe: a trial's (its run's recipe.py) and
the best trial's, with the command lines that run them again from any folder."""
import os
import sys
import textwrap
from pathlib import Path

from optuna.trial import TrialState

from fastmask import console
from fastmask.errors import FastmaskError
from fastmask.io import atomic_write
from fastmask.store.run_folder import RunFolder
from fastmask.tune.space import changes, changes_text, literal, replay
from fastmask.tune.study import MONITOR


def shown(path):
    """`path` relative to the working folder when inside it, as a command line shows it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def command(module, recipe_file, sets, data, runs_dir, extra=()):
    """The command line a user pastes to do it again, from any folder: this interpreter by its full path, the
    recipe file, --data and --runs absolute."""
    parts = [str(Path(recipe_file).resolve()), *extra, *[x for s in sets for x in ("--set", s)]]
    parts += (["--data", str(Path(data).resolve())] if data is not None else []) + ["--runs", str(Path(runs_dir).resolve())]
    return console.command_line(*parts, module=module)

def module_of(r):
    p = Path(r.file)
    return f"{'recipes.' if p.parent.name == 'recipes' else ''}{p.stem}"


def recipe_text(base, changed, doc, params, home=None):
    """A child recipe file of `home` (default `base`, the searched recipe; else an ancestor with its fields):
    docstring, parent import, `recipe = parent.but(...)` with `changed` as literals (a value no literal
    says: the searched recipe's space replayed on `params`, checked literals)."""
    home = home or base
    # the docstring may quote a study name from a shared storage: nothing in it may end the string
    doc = "".join(c if c.isprintable() or c == "\n" else " " for c in doc).replace("\\", "/").replace('"""', "'''")
    # an indented line is a command: kept whole, for copy and paste
    doc = "\n".join(par if par.startswith("    ") else textwrap.fill(par, 100) for par in doc.split("\n"))
    replayed = f"space(FixedTrial({params!r}))"
    args = {k: repr(v) if literal(v) else f"{replayed}[{k!r}]" for k, v in changed.items()}
    imp = f"from {module_of(home)} import recipe as parent"
    if any(replayed in a for a in args.values()):
        imp = (f"from optuna.trial import FixedTrial\n{imp}"
               + (", space" if module_of(home) == module_of(base) else f"\nfrom {module_of(base)} import space"))
    return f'"""{doc}"""\n{imp}\n\nrecipe = parent.but({", ".join(f"{k}={a}" for k, a in args.items())})\n'


def checked_best(study, space):
    """The best complete trial that replays as a point of the space, and its values; (None, None) without
    one. A trial that does not (a changed space, or a stranger's write) is passed over with one warning."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value == t.value]
    for t in sorted(done, key=lambda t: (-t.value, t.number)):
        try:
            return t, replay(space, t.params)
        except FastmaskError as e:
            print(f"fastmask: warning: search: trial {t.number} is not a point of the searched space "
                  f"({e}); the best recipe passes it over", file=sys.stderr)
    return None, None


def write_best(study, base, space, path, runs_dir, parent_run, searched, sets, data=None, home=None):
    """The best complete trial as a child recipe of `home` (default `base`; see `tune.search.make_objective`); returns its
    path (None without one). Default: `<study>_best.py` beside the searched recipe, or in the runs folder
    when that folder is not writable. Its docstring and the last line printed say how to run it with the
    search's --set, --data and --runs."""
    home = home or base
    best, values = checked_best(study, space)
    if best is None:
        print("search: no complete trial of the searched space yet, so no best recipe")
        return None
    changed, trials = changes(base, values), [t for t in study.trials if not t.user_attrs.get("surplus")]
    n = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    own = RunFolder(parent_run).metrics.get(MONITOR) if parent_run else None
    over = base.name if home is base else f"{home.name} (searched as {base.name}, which leaves it unchanged)"
    # the claim follows the figures: a best trial that scores no higher than the reference run raises nothing
    losing = isinstance(own, (int, float)) and best.value <= own
    if not changed:
        claim = f"Nothing searched beats {base.name}'s own values:"
    elif losing:
        claim = f"No trial beat {home.name}'s own run, so this recipe is no better: {changes_text(changed)} do not raise"
    else:
        claim = f"{changes_text(changed)} raise"
    doc = (f"{claim} validation macro F1 over {over}: trial {best.number} of search study '{study.study_name}' "
           f"scoring {best.value:.3f}" + (f" against {own:.3f} for {home.name} itself (run {Path(parent_run).name})"
                                          if isinstance(own, (int, float)) else "")
           + f", the best of {len(trials)} trials ({n[TrialState.COMPLETE]} complete, {n[TrialState.PRUNED]} pruned, "
           f"{n[TrialState.FAIL]} failed).\n\nSearched with:\n    {searched}\n"
           + "Run it with the search's settings and data:\n    RUN_IT\n"
           + "Validation picked these values, so the verdict against the parent on the same split is "
             "optimistic: judge it on holdout macro F1 or another seed.")
    ident = "".join(c if c.isalnum() or c == "_" else "_" for c in study.study_name)
    path = Path(path) if path else Path(base.file).parent / f"{ident}_best.py"
    if path.resolve() == Path(base.file).resolve():
        raise FastmaskError(f"--best {path}: that is the searched recipe itself")

    def run_it(where):
        return command("fastmask.run", shown(str(where)), sets, data, runs_dir)
    for where in (path, Path(runs_dir) / path.name):
        try:
            text = recipe_text(base, changed, doc.replace("RUN_IT", run_it(where)), best.params, home=home)
            atomic_write(where, text)
            break
        except OSError as e:
            if where != path:
                raise
            print(f"search: {path.parent} is not writable ({e.strerror}); the best recipe goes to the runs "
                  f"folder (copy it into {path.parent.name or 'recipes'}/ to run it)")
    if losing and changed:
        print(f"search: no trial beat {home.name}'s own run ({MONITOR} {own:.3f}); the best, trial {best.number} "
              f"({best.value:.3f}: {changes_text(changed)}), is written marked as losing -> {where}")
    else:
        print(f"search: best trial {best.number} ({MONITOR} {best.value:.3f}): {changes_text(changed) or 'no change'} "
              f"-> {where}")
    print(f"search: run it with: {run_it(where)}")
    return where

"""A search space: `space(trial)` beside `recipe` in the recipe file, written as optuna writes one and returning
{recipe field: value}; checked once before any training, and replayed on a trial's stored parameters (a shared
storage is anyone's to write: only plain values inside the space's own distributions come back out)."""
import ast
import warnings

import optuna
from optuna.trial import FixedTrial, create_trial

from fastmask.errors import FastmaskError, one_line
from fastmask.learn.build import preflight
from fastmask.recipe import _plain, coerce


def check_space(space, recipe, where):
    """The space's values on one trial of a throwaway study, checked: it runs and returns {field: value}
    the recipe takes, and a suggestion passed through unchanged is valid at every end of its range (each
    choice, low, high). FastmaskError naming `where` otherwise."""
    if not callable(space):
        raise FastmaskError(f'{where}: no search space; add `def space(trial): return dict(lr=trial.suggest_float('
                            f'"lr", 1e-3, 2e-2, log=True))` beside `recipe`')
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    try:
        values = values_of(space, trial)
        for name, dist in trial.distributions.items():
            if name in values and type(values[name]) is type(trial.params[name]) and values[name] == trial.params[name]:
                for end in dist.choices if hasattr(dist, "choices") else (dist.low, dist.high):
                    preflight(recipe.but(**{**values, name: end}))
        preflight(recipe.but(**values))
    except FastmaskError as e:
        raise FastmaskError(f"{where}: space: {e}") from None
    return values


def values_of(space, trial):
    """`space(trial)` as {field: recipe value}; what it raises, or a value its field refuses: FastmaskError."""
    try:
        values = space(trial)
    except Exception as e:  # noqa: BLE001  (the recipe author's code)
        raise FastmaskError(f"space(trial) raised {one_line(e)}") from None
    if not isinstance(values, dict):
        raise FastmaskError(f"space(trial) returned {type(values).__name__}, not a dict {{field: value}}")
    return {k: coerce(k, v) for k, v in values.items()}


def replay(space, params):
    """The values a trial with stored `params` trained: the space run again on them. A shared storage is
    anyone's to write: each parameter must be a plain value inside the distribution the space asks for."""
    fixed = FixedTrial(params)
    with warnings.catch_warnings(action="ignore"):  # FixedTrial only warns on a value out of range
        values = values_of(space, fixed)
    try:  # create_trial refuses a value out of its distribution
        create_trial(params={k: params[k] for k in fixed.distributions}, distributions=fixed.distributions, value=0)
    except ValueError as e:
        raise FastmaskError(str(e)) from None
    if not literal(params):
        raise FastmaskError(f"{params!r} are not plain values")
    return values


def literal(v):
    try:
        return ast.literal_eval(repr(v)) == v
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def changes(base, values):
    return {k: v for k, v in values.items() if _plain(v) != _plain(getattr(base, k))}


def changes_text(values):
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}" if literal(v)
                     else f"{k}=<{type(v).__name__}>" for k, v in values.items())

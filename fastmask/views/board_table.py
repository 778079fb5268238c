"""The board as a terminal table: the run column with its tree guides, the figures, then the parameter columns
(the recipe fields asked for, or every one that varies); whole columns left out, never squeezed, on a narrow
console."""
import difflib
from dataclasses import fields as recipe_fields
from datetime import datetime, timezone

from rich import box
from rich.markup import escape
from rich.table import Table

from fastmask.errors import FastmaskError
from fastmask.recipe import Recipe
from fastmask.store.folder import finite_number
from fastmask.views.board_rows import delta, not_comparable, status_text, verdict_word
from fastmask.views.compare import config_diff

RECIPE_FIELDS = [f.name for f in recipe_fields(Recipe) if f.compare]


# --- parameter columns ------------------------------------------------------------------------------

def varying(rows):
    """The recipe fields whose values differ across `rows` (compare.config_diff's rule), in recipe order; a
    queued job has no fields yet, so it does not count."""
    records = [r["record"] for r in rows if r["record"] is not None]
    return [k for k in config_diff(records) if k not in ("recipe", "data fingerprint")]


def param_columns(rows, names=(), params=False):
    """The parameter columns to show: `names` (each a recipe field, or one some run recorded), then, with
    `params`, every field that varies across `rows`. An unknown name is a FastmaskError naming it."""
    known = dict.fromkeys([*RECIPE_FIELDS, *(k for r in rows for k in r["fields"])])
    for n in names:
        if n not in known:
            close = difflib.get_close_matches(n, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the fields are {', '.join(known)}"
            raise FastmaskError(f"--columns: {n!r} is not a recipe field; {hint}")
    return list(dict.fromkeys([*names, *(varying(rows) if params else [])]))


def param_text(r, name):
    """A field's value as a cell: "—" when the run did not record the field."""
    return _value(r["fields"][name]) if name in r["fields"] else "—"


def _value(v):
    # a search trial's lr is optuna's full float: four digits tell trials apart in a column
    if isinstance(v, float):
        return f"{v:.4g}"
    return ",".join(map(_value, v)) if isinstance(v, list) else str(v)


# --- the table --------------------------------------------------------------------------------------

def when(r):
    try:
        t = datetime.fromisoformat(r["started"])
    except (TypeError, ValueError):
        return "—"
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _f(v, spec=".3f"):
    return format(v, spec) if finite_number(v) else "—"


COLUMNS = ("run", "status", "verdict", "val F1", "holdout F1", "Δ parent", "minutes", "started UTC")
NUMERIC = ("val F1", "holdout F1", "Δ parent", "minutes")
_STYLE = {"supported": "green", "refuted": "red", "inconclusive": "yellow", "no effect": "blue",
          "unreplicated": "yellow", "neither learned": "red", "finished": "", "running": "cyan",
          "interrupted": "magenta", "partial": "yellow", "failed": "red", "lost": "red", "not comparable": "dim"}


def headers(params=()):
    """The table's headers: the run and its figures first (what a wide table must not push off-screen), then
    the parameter columns."""
    return (*COLUMNS, *params)


def cells(r, params=()):
    """The table's text cells for one run, in `headers(params)` order."""
    d = delta(r)
    return [r["prefix"] + r["name"], status_text(r), verdict_word(r), _f(r["macro_f1"]), _f(r["holdout_macro_f1"]),
            "—" if d is None else f"{d:+.3f}", _f(r["minutes"], ".1f"), when(r), *(param_text(r, p) for p in params)]


def table(rows, title, drop=(), params=()):
    """The rich table: the run column carries the tree guides; `drop` leaves columns out."""
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    names = headers(params)
    keep = [i for i, c in enumerate(names) if c not in drop]
    for i in keep:
        t.add_column(escape(names[i]), justify="right" if names[i] in NUMERIC else "left", no_wrap=i != 0,
                     overflow="fold", min_width=RUN_MIN if i == 0 else None)
    for r in rows:
        c = [escape(x) for x in cells(r, params)]
        for i, word in ((1, r["status"]), (2, verdict_word(r))):  # coloured by the word the cell starts with
            if _STYLE.get(word) and c[i].startswith(escape(word)):
                c[i] = f"[{_STYLE[word]}]{c[i]}[/]"
        t.add_row(*[c[i] for i in keep])
    return t


RUN_MIN = 12  # the run column's narrowest: on a console too narrow for the rest, its names fold, never vanish
LEAVE_OUT = ("started UTC", "minutes", "holdout F1")  # the first columns a narrow console does without


def fitted_table(rows, title, console, params=()):
    """The table at its natural width: while it is wider than the console, whole columns are left out (started
    UTC, minutes, holdout F1, then the parameter columns from the right, so those --columns names come last)
    rather than every header squeezed to a few letters; the run column always stays. Returns (table, the
    headers left out, in the order they went)."""
    order = [*LEAVE_OUT, *reversed(params)]
    drop = []
    while True:
        t = table(rows, title, drop, params)
        wide = console.measure(t, options=console.options.update_width(10_000)).maximum
        if wide <= console.width or len(drop) == len(order):
            return t, drop
        drop.append(order[len(drop)])


def print_table(rows, runs_dir, console, shown, params):
    """The fitted table of `rows` with the columns `shown`, what it left out, and a line for each run whose
    figure cannot be set against its parent's; one line when there are no rows."""
    if rows:
        t, drop = fitted_table(rows, f"runs in {runs_dir}", console, shown)
        console.print(t)
        if drop:
            console.print(f"[dim]{len(drop)} column(s) left out to fit {console.width} columns: "
                          f"{escape(', '.join(drop))} (a wider window shows them)[/]")
        if params and not varying(rows):
            console.print("[dim]every recipe field is the same in these runs[/]")
        for r in rows:
            if not_comparable(r):
                console.print(f"[dim]{escape(r['id'])}: Δ parent —, {escape(not_comparable(r))}[/]")
    else:
        console.print(f"no runs in {runs_dir} yet")

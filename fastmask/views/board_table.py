"""The board as a terminal table: the run column with its tree guides, the figures, the columns only some boards
need (which runs folder, tags, notes, who ran it and on what device: each shown when some run has it), then the
parameter columns (the recipe fields asked for, or every one that varies); whole columns left out, never
squeezed, on a narrow console; archived runs hidden unless asked for, and counted."""
import difflib
from dataclasses import fields as recipe_fields
from datetime import datetime, timezone

from rich import box
from rich.markup import escape
from rich.table import Table

from fastmask.errors import FastmaskError
from fastmask.recipe import Recipe
from fastmask.store.folder import finite_number
from fastmask.views.board_parent import delta, not_comparable, verdict_word
from fastmask.views.board_rows import layout, status_text
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
    the columns `params` (extras() and parameter columns)."""
    return (*COLUMNS, *params)


# --- the columns some boards need ---------------------------------------------------------------------

NOTE_CHARS = 40  # of a run's last note, what its cell shows


def tags_text(r):
    return "notebook unreadable" if r.get("notebook") else " ".join(r.get("tags") or []) or "—"


def notes_text(r):
    """"2: the last note, shortened" (the count, the newest note's first line), or "—"."""
    notes = r.get("notes") or []
    if not notes:
        return "—"
    last = " ".join(str(notes[-1].get("text") or "").split())
    return f"{len(notes)}: " + (last if len(last) <= NOTE_CHARS else last[:NOTE_CHARS - 1] + "…")


EXTRA = {"folder": lambda r: r.get("folder") or "—", "tags": tags_text, "notes": notes_text,
         "who": lambda r: r.get("who") or "—", "device": lambda r: r.get("device") or "—"}


def extras(rows):
    """The extra columns `rows` need, in EXTRA's order: folder when they come from several runs folders, tags
    and notes when some run has any (or an unreadable notebook), who and device when some run recorded them
    (runs made before runs said so leave the cell blank)."""
    need = {"folder": any(r.get("folder") for r in rows),
            "tags": any(r.get("tags") or r.get("notebook") for r in rows),
            "notes": any(r.get("notes") for r in rows),
            "who": any(r.get("who") for r in rows), "device": any(r.get("device") for r in rows)}
    return [k for k in EXTRA if need[k]]


def live_text(r):
    """A running run's last finished epoch's validation macro F1 and loss ("0.412 · loss 1.234"), or None."""
    now = r.get("live")
    if not now or not finite_number(now.get("macro_f1")):
        return None
    loss = now.get("valid_loss")
    return f"{now['macro_f1']:.3f}" + (f" · loss {loss:.3f}" if finite_number(loss) else "")


def cells(r, params=()):
    """The table's text cells for one run, in `headers(params)` order; a running run's validation F1 is its
    last finished epoch's (live_text)."""
    d = delta(r)
    f1 = _f(r["macro_f1"]) if finite_number(r["macro_f1"]) or not live_text(r) else live_text(r)
    return [r["prefix"] + r["name"], status_text(r), verdict_word(r), f1, _f(r["holdout_macro_f1"]),
            "—" if d is None else f"{d:+.3f}", _f(r["minutes"], ".1f"), when(r),
            *(EXTRA[p](r) if p in EXTRA else param_text(r, p) for p in params)]


def table_view(rows, shown=(), archived=False):
    """(The rows the table shows, its columns after COLUMNS, how many archived runs it hides): archived runs
    only with `archived`, the others laid out again as a tree among themselves (layout) when some are hidden;
    the extras() those rows need, then the parameter columns `shown`."""
    kept = rows if archived else [r for r in rows if not r.get("archived")]
    if len(kept) < len(rows):
        kept = layout(kept)
    return kept, [*extras(kept), *(s for s in shown if s not in EXTRA)], len(rows) - len(kept)


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
        if live_text(r) and not finite_number(r["macro_f1"]):
            c[3] = f"[cyan]{c[3]}[/]"  # the last epoch's, not the run's: coloured as its running status
        t.add_row(*[c[i] for i in keep])
    return t


RUN_MIN = 12  # the run column's narrowest: on a console too narrow for the rest, its names fold, never vanish
LEAVE_OUT = ("started UTC", "minutes", "holdout F1")  # the first columns a narrow console does without
LEAVE_OUT_EXTRA = ("device", "who", "notes")          # then these, before any parameter column


def fitted_table(rows, title, console, params=()):
    """The table at its natural width: while it is wider than the console, whole columns are left out (started
    UTC, minutes, holdout F1, then the parameter columns from the right, so those --columns names come last)
    rather than every header squeezed to a few letters; the run column always stays. Returns (table, the
    headers left out, in the order they went)."""
    order = [*LEAVE_OUT, *(c for c in LEAVE_OUT_EXTRA if c in params),
             *reversed([p for p in params if p not in LEAVE_OUT_EXTRA])]
    drop = []
    while True:
        t = table(rows, title, drop, params)
        wide = console.measure(t, options=console.options.update_width(10_000)).maximum
        if wide <= console.width or len(drop) == len(order):
            return t, drop
        drop.append(order[len(drop)])


def print_table(rows, runs_dir, console, shown, params, archived=False):
    """The fitted table of `rows` with the columns `shown` (extras() are added before them), what it left out,
    how many archived runs it hides, and a line for each run whose figure cannot be set against its parent's;
    one line when there are no rows. `runs_dir`: the runs folder, or a list of them."""
    where = ", ".join(map(str, runs_dir)) if isinstance(runs_dir, (list, tuple)) else str(runs_dir)
    rows, shown, hidden = table_view(rows, shown, archived)
    if rows:
        t, drop = fitted_table(rows, f"runs in {where}", console, shown)
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
        console.print(f"no runs in {escape(where)} yet" if not hidden else f"no runs to show in {escape(where)}")
    if hidden:
        console.print(f"[dim]{hidden} archived run{'s' if hidden > 1 else ''} hidden (--archived shows "
                      f"{'them' if hidden > 1 else 'it'})[/]")

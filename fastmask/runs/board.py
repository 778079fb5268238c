"""The board: every run folder as a row, the rows as a tree under their parents, shown as a rich table
and as index.html (the table plus every card and plot, one static page that opens offline)."""
import re
import sys
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from urllib.parse import quote

from rich import box
from rich.console import Console
from rich.table import Table

from fastmask.errors import FastmaskError
from fastmask.runs.folder import PLOTS as CARD_PLOTS, TOP_LOSSES, atomic_write
from fastmask.runs.html import Raw, markdown, page, resolver
from fastmask.runs.index import entries

PLOTS = (*(name for name, _ in CARD_PLOTS), TOP_LOSSES)  # the plots a run folder may hold


# --- the runs as a tree -----------------------------------------------------------------------------

def collect(runs_dir, warn=None):
    """One dict per run folder of the run index, oldest first. A folder whose JSON is unreadable or not
    an object is skipped with one warning line (`warn`, default stderr), so one bad folder never hides
    the others."""
    warn = warn or _warn
    return [_row(e) for e in entries(runs_dir, warn=lambda m: warn(f"board: {m}"), must_exist=True)]


def _warn(message):
    print(f"fastmask: warning: {message}", file=sys.stderr)


def _text(v, default=None):
    # Fields a hand-edited file may hold as anything: only text is shown or used as a key.
    return v if isinstance(v, str) else default


def _row(e):
    cfg, st, m = e.config, e.status_json, e.metrics
    v = m.get("verdict") if isinstance(m.get("verdict"), dict) else {}
    return {"dir": e.dir, "id": e.dir.name, "name": _text(cfg.get("name")) or e.dir.name.split("-", 1)[-1],
            "parent": _text(cfg.get("parent")), "fingerprint": _text(cfg.get("data_fingerprint")),
            "status": e.status, "started": st.get("started"), "minutes": st.get("minutes"),
            "macro_f1": m.get("macro_f1"), "holdout_macro_f1": m.get("holdout_macro_f1"),
            "verdict": _text(v.get("verdict")), "delta": v.get("delta"), "parent_run": _text(v.get("parent_run")),
            "hypothesis": _text(cfg.get("hypothesis"), "")}


def _parent_of(r, by_id):
    """The run `r` was judged against (recorded in its verdict), else the parent recipe's newest run on
    the same data started before it (finished ones first), else None."""
    if r["parent_run"] in by_id:
        return by_id[r["parent_run"]]
    if not r["parent"]:
        return None
    older = [p for p in by_id.values() if p["name"] == r["parent"] and p["id"] < r["id"]
             and p["fingerprint"] == r["fingerprint"]]
    older.sort(key=lambda p: (p["status"] == "finished", p["id"]))
    return older[-1] if older else None


def tree(runs):
    """`runs` in display order, each with `depth` and `prefix` (tree guides) and `up` (its parent run or
    None): roots oldest first, each followed by its children, oldest first, depth first."""
    by_id = {r["id"]: r for r in runs}
    kids = {r["id"]: [] for r in runs}
    roots = []
    for r in runs:
        p = _parent_of(r, by_id)
        r["up"] = p
        (kids[p["id"]] if p else roots).append(r)
    out = []

    def walk(r, depth, guide, last):
        r["depth"] = depth
        r["prefix"] = "" if depth == 0 else guide + ("└─ " if last else "├─ ")
        out.append(r)
        children = sorted(kids[r["id"]], key=lambda c: c["id"])
        for i, c in enumerate(children):
            walk(c, depth + 1, "" if depth == 0 else guide + ("   " if last else "│  "), i == len(children) - 1)

    for r in sorted(roots, key=lambda r: r["id"]):
        walk(r, 0, "", True)
    return out


def delta(r):
    """Macro F1 against the parent: the verdict's paired delta, else the difference from the parent run."""
    if isinstance(r.get("delta"), (int, float)):
        return r["delta"]
    up = r.get("up")
    if up and isinstance(r["macro_f1"], (int, float)) and isinstance(up["macro_f1"], (int, float)):
        return r["macro_f1"] - up["macro_f1"]
    return None


def verdict_word(r):
    if r.get("verdict"):
        return r["verdict"]
    if r["parent"] and not r.get("up"):
        return "no parent run"
    return "—" if not r["parent"] else ""


def when(r):
    try:
        t = datetime.fromisoformat(r["started"])
    except (TypeError, ValueError):
        return "—"
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _f(v, spec=".3f"):
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"


def cells(r):
    """The table's text cells for one run, in COLUMNS order."""
    d = delta(r)
    return [r["prefix"] + r["name"], r["status"], verdict_word(r), _f(r["macro_f1"]), _f(r["holdout_macro_f1"]),
            "—" if d is None else f"{d:+.3f}", _f(r["minutes"], ".1f"), when(r)]


COLUMNS = ("run", "status", "verdict", "val F1", "holdout F1", "Δ parent", "minutes", "started UTC")
_STYLE = {"supported": "green", "refuted": "red", "inconclusive": "yellow", "finished": "", "running": "cyan",
          "interrupted": "magenta", "partial": "yellow", "failed": "red", "lost": "red"}


def table(rows, title, drop=()):
    """The rich table: the run column carries the tree guides; `drop` leaves columns out."""
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    keep = [i for i, c in enumerate(COLUMNS) if c not in drop]
    for i in keep:
        t.add_column(COLUMNS[i], justify="right" if 3 <= i <= 6 else "left", no_wrap=i != 0, overflow="fold")
    for r in rows:
        c = cells(r)
        c[0] = c[0].replace("[", r"\[")
        for i in (1, 2):
            if _STYLE.get(c[i]):
                c[i] = f"[{_STYLE[c[i]]}]{c[i]}[/]"
        t.add_row(*[c[i] for i in keep])
    return t


def fitted_table(rows, title, console):
    """The table, leaving out the least needed columns while it is wider than the console."""
    drop = []
    for extra in ((), ("started UTC",), ("minutes",), ("holdout F1",)):
        drop += extra
        t = table(rows, title, drop)
        if console.measure(t, options=console.options.update_width(10_000)).maximum <= console.width:
            break
    return t, drop


# --- index.html -------------------------------------------------------------------------------------

FILES = ("card.md", "config.json", "metrics.json", "history.csv", "valid_preds.csv", "recipe.py", "model.pkl")


def _anchor(r):
    return "run-" + re.sub(r"[^A-Za-z0-9_.-]", "-", r["id"])


def _word(x):
    # status and verdict words get their colour class; any other text is shown plain
    return f'<span class="{x}">{x}</span>' if x in _STYLE else escape(x)


def _table_html(rows):
    if not rows:
        return "<p>No runs yet: <code>python -m fastmask.run recipes/person_split.py</code> makes one.</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    out = [f'<table class="board"><thead><tr>{head}</tr></thead><tbody>']
    for r in rows:
        c = cells(r)
        c = [f'<a href="#{_anchor(r)}">{escape(c[0])}</a>', _word(c[1]), _word(c[2])] + [escape(x) for x in c[3:]]
        out.append("<tr>" + "".join(f'<td class="num">{x}</td>' if 3 <= i <= 6 else f"<td>{x}</td>"
                                    for i, x in enumerate(c)) + "</tr>")
    return "\n".join(out + ["</tbody></table>"])


def _read_card(d):
    try:
        return (d / "card.md").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _section(r, root):
    """One run's section: its card (h1 -> h2), its files, and the plots the card does not show."""
    d = r["dir"]
    rel = quote(d.relative_to(root).as_posix() if d.is_relative_to(root) else d.name)
    text, url = _read_card(d), resolver(d, root)
    if text is not None and text.startswith("# "):
        title, _, body = text.partition("\n")
        h = [markdown(title, url, shift=1)]
    else:
        body = text
        h = [f"<h2>{escape(r['name'])}" + ("" if text is not None else f"  ({escape(r['status'])})") + "</h2>"]
    h.append(f'<p class="small">run folder <code>{escape(r["id"])}</code></p>')
    if r.get("up"):
        h.append(f'<p class="small">parent run: <a href="#{_anchor(r["up"])}">{escape(r["up"]["id"])}</a></p>')
    files = [f for f in FILES if (d / f).is_file()]
    if files:
        h.append('<p class="small">files: ' + ", ".join(f'<a href="{rel}/{f}">{f}</a>' for f in files) + "</p>")
    shown = set()
    if text is not None:
        h.append(markdown(body, url, shift=1, shown=shown))
    else:
        h.append(f"<p>{escape(r['status'])}: no card yet.</p>")
        if r["hypothesis"]:
            h.append(f"<p><strong>Hypothesis.</strong> {escape(r['hypothesis'])}</p>")
    h += [f'<img src="{rel}/{p}" alt="{p}" loading="lazy">' for p in PLOTS
          if f"{rel}/{p}" not in shown and (d / p).is_file()]
    return f'<section class="run" id="{_anchor(r)}">\n' + "\n".join(h) + "\n</section>"


def render_html(rows, root):
    """index.html for `rows` (from `tree`) of the runs folder `root`, from the board.html template."""
    root = Path(root)
    return page("board.html", folder=root.resolve().name, count=len(rows), root=str(root),
                stamp=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                table=Raw(_table_html(rows)), sections=Raw("\n".join(_section(r, root) for r in rows)))


def board(runs_dir="runs", html_out=True, console=None):
    """Print the tree table; write RUNS_DIR/index.html unless html_out is False. Returns the rows."""
    runs_dir = Path(runs_dir)
    rows = tree(collect(runs_dir))
    console = console or Console()
    if rows:
        t, drop = fitted_table(rows, f"runs in {runs_dir}", console)
        console.print(t)
        if drop:
            console.print(f"[dim]left out to fit {console.width} columns: {', '.join(drop)}[/]")
    else:
        console.print(f"no runs in {runs_dir} yet")
    if html_out:
        out = runs_dir / "index.html"
        try:
            atomic_write(out, render_html(rows, runs_dir))
        except OSError as e:
            raise FastmaskError(f"{out}: {e.strerror}") from None
        console.print(f"board: {out}")
    return rows

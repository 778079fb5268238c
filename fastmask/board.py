"""python -m fastmask.board [RUNS_DIR] [--no-html]

Shows the runs as a tree under their parents (a rich table) and writes RUNS_DIR/index.html: the same
table plus every card and plot, one static file that opens offline and links only files that exist."""
import argparse
import html
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from .errors import FastmaskError
from .record import STATUS, atomic_write, effective_status, json_problem, read_json

PLOTS = ("confusion.png", "curves.png", "top_losses.png")


# --- the runs as a tree -----------------------------------------------------------------------------

def collect(runs_dir, warn=None):
    """One dict per run folder (a folder holding config.json or status.json), oldest first. A folder
    whose JSON is unreadable or not an object is skipped with one warning line (`warn`, default stderr),
    so one bad folder never hides the others."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FastmaskError(f"runs folder {runs_dir}: no such folder")
    warn = warn or _warn
    out = []
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        if not ((d / "config.json").exists() or (d / STATUS).exists()):
            continue  # not a run (mlflow artifacts, stray folders)
        problem = next((p for f in ("config.json", STATUS, "metrics.json") if (p := json_problem(d / f))), None)
        if problem:
            warn(f"board: skipping {d}: {problem}")
            continue
        out.append(_row(d))
    return out


def _warn(message):
    print(f"fastmask: warning: {message}", file=sys.stderr)


def _text(v, default=None):
    # Fields a hand-edited file may hold as anything: only text is shown or used as a key.
    return v if isinstance(v, str) else default


def _row(d):
    cfg, st, m = read_json(d / "config.json", {}), read_json(d / STATUS, {}), read_json(d / "metrics.json", {})
    v = m.get("verdict") if isinstance(m.get("verdict"), dict) else {}
    return {"dir": d, "id": d.name, "name": _text(cfg.get("name")) or d.name.split("-", 1)[-1],
            "parent": _text(cfg.get("parent")), "fingerprint": _text(cfg.get("data_fingerprint")),
            "status": effective_status(st), "started": st.get("started"), "minutes": st.get("minutes"),
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
    from rich import box
    from rich.table import Table
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


# --- a small Markdown renderer (what cards use: headings, tables, lists, images, code, emphasis) ------

_CODE = re.compile(r"`([^`]+)`")
_IMG = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_EM = re.compile(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])")


def _inline(text, url):
    """Inline Markdown to HTML; `url(src)` maps a link or image target to an href, or None to drop it."""
    codes = []

    def keep(m):
        codes.append(f"<code>{html.escape(m.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _CODE.sub(keep, text)
    text = html.escape(text, quote=False)

    def img(m):
        alt, src = m.group(1), url(html.unescape(m.group(2)), image=True)
        if src is None:
            return f'<span class="missing">[{alt}: not available]</span>'
        return f'<img src="{html.escape(src)}" alt="{html.escape(html.unescape(alt))}" loading="lazy">'

    def link(m):
        label, href = m.group(1), url(html.unescape(m.group(2)), image=False)
        return label if href is None else f'<a href="{html.escape(href)}">{label}</a>'

    text = _IMG.sub(img, text)
    text = _LINK.sub(link, text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _EM.sub(r"<em>\1</em>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)


def _cells(line):
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def markdown_html(text, url=lambda src, image: src, shift=0):
    """Render simple Markdown to HTML. Headings move down `shift` levels; `url` rewrites or drops targets."""
    out, para, items = [], [], []
    lines = text.splitlines()

    def flush():
        if para:
            out.append("<p>" + "<br>\n".join(_inline(p, url) for p in para) + "</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i, url)}</li>" for i in items) + "</ul>")
            items.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if not s:
            flush()
        elif s.startswith("```"):
            flush()
            code = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                code.append(lines[i])
                i += 1
            out.append("<pre><code>" + html.escape("\n".join(code)) + "</code></pre>")
        elif re.match(r"#{1,6}\s", s):
            flush()
            level = min(6, len(s) - len(s.lstrip("#")) + shift)
            out.append(f"<h{level}>{_inline(s.lstrip('#').strip(), url)}</h{level}>")
        elif s.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            i -= 1
            has_head = len(rows) > 1 and all(re.fullmatch(r":?-{1,}:?", c) for c in rows[1] if c)
            head, body = (rows[0], rows[2:]) if has_head else (None, rows)
            t = ["<table>"]
            if head and any(head):
                t.append("<thead><tr>" + "".join(f"<th>{_inline(c, url)}</th>" for c in head) + "</tr></thead>")
            t.append("<tbody>" + "".join("<tr>" + "".join(f"<td>{_inline(c, url)}</td>" for c in r) + "</tr>"
                                         for r in body) + "</tbody></table>")
            out.append("".join(t))
        elif re.match(r"[-*]\s", s):
            if para:
                out.append("<p>" + "<br>\n".join(_inline(p, url) for p in para) + "</p>")
                para.clear()
            items.append(s[2:].strip())
        elif s.startswith(">"):
            flush()
            out.append(f"<blockquote>{_inline(s.lstrip('>').strip(), url)}</blockquote>")
        elif items and line.startswith(("  ", "\t")):
            items[-1] += " " + s
        else:
            if items:
                flush()
            para.append(s)
        i += 1
    flush()
    return "\n".join(out)


# --- index.html -------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:72em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.board td:first-child{white-space:pre;font-family:ui-monospace,monospace}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}code,pre{font-family:ui-monospace,monospace;background:#f6f6f6}
pre{padding:.5em;overflow-x:auto}section.run{border-top:2px solid #888;margin-top:2em}
.supported{color:#17803d;font-weight:600}.refuted{color:#b3261e;font-weight:600}.inconclusive{color:#8a6d00}
.failed,.lost{color:#b3261e}.partial{color:#8a6d00}.missing{color:#999}.small{color:#666;font-size:90%}
"""


def _resolver(run_dir, root):
    """Map a card's link or image target to a path relative to `root`, or None when it can't be shown
    offline (a missing file, or a remote image)."""
    def url(src, image):
        if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.I) or src.startswith("//"):
            return None if image else (src if src.startswith(("http://", "https://")) else None)
        if src.startswith("#"):
            return None
        target = (run_dir / src.split("#")[0]).resolve()
        try:
            rel = target.relative_to(root.resolve())
        except ValueError:
            return None
        return rel.as_posix() if target.is_file() else None
    return url


def _anchor(r):
    return "run-" + re.sub(r"[^A-Za-z0-9_.-]", "-", r["id"])


def render_html(rows, root):
    root = Path(root)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    h = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
         '<meta name="viewport" content="width=device-width, initial-scale=1">',
         f"<title>fastmask runs — {html.escape(root.resolve().name)}</title><style>{_CSS}</style></head><body>",
         f"<h1>fastmask runs</h1><p class=\"small\">{len(rows)} runs in <code>{html.escape(str(root))}</code>, "
         f"written {stamp} by <code>python -m fastmask.board</code>.</p>"]
    if rows:
        h.append('<table class="board"><thead><tr>' + "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
                 + "</tr></thead><tbody>")
        for r in rows:
            c = [html.escape(x) for x in cells(r)]
            c[0] = f'<a href="#{_anchor(r)}">{c[0]}</a>'
            c[1], c[2] = (f'<span class="{x}">{x}</span>' for x in c[1:3])
            h.append("<tr>" + "".join(f'<td class="num">{x}</td>' if 3 <= i <= 6 else f"<td>{x}</td>"
                                      for i, x in enumerate(c)) + "</tr>")
        h.append("</tbody></table>")
    else:
        h.append("<p>No runs yet: <code>python -m fastmask.run recipes/person_split.py</code> makes one.</p>")
    for r in rows:
        d = r["dir"]
        rel = d.relative_to(root).as_posix() if d.is_relative_to(root) else d.name
        files = [f for f in ("card.md", "config.json", "metrics.json", "history.csv", "valid_preds.csv",
                             "recipe.py", "model.pkl") if (d / f).is_file()]
        card = d / "card.md"
        text = None
        if card.is_file():
            try:
                text = card.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                text = None
        h.append(f'<section class="run" id="{_anchor(r)}">')
        if text is not None:  # the card's own title (h1 -> h2) heads the section
            h.append(markdown_html(text.split("\n", 1)[0], shift=1) if text.startswith("# ") else
                     f"<h2>{html.escape(r['name'])}</h2>")
        else:
            h.append(f"<h2>{html.escape(r['name'])}  ({html.escape(r['status'])})</h2>")
        h.append(f'<p class="small">run folder <code>{html.escape(r["id"])}</code></p>')
        if r.get("up"):
            h.append(f'<p class="small">parent run: <a href="#{_anchor(r["up"])}">{html.escape(r["up"]["id"])}</a></p>')
        if files:
            h.append('<p class="small">files: ' + ", ".join(
                f'<a href="{html.escape(rel)}/{html.escape(f)}">{html.escape(f)}</a>' for f in files) + "</p>")
        if text is not None:
            body = text.split("\n", 1)[1] if text.startswith("# ") and "\n" in text else text
            h.append(markdown_html(body, _resolver(d, root), shift=1))
            # plots the card does not show (e.g. an older card) still appear
            shown = set(re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text))
            h += [f'<img src="{html.escape(rel)}/{p}" alt="{p}" loading="lazy">'
                  for p in PLOTS if p not in shown and (d / p).is_file()]
        else:
            h.append(f"<p>{html.escape(r['status'])}: no card yet.</p>")
            if r["hypothesis"]:
                h.append(f"<p><strong>Hypothesis.</strong> {html.escape(r['hypothesis'])}</p>")
            h += [f'<img src="{html.escape(rel)}/{p}" alt="{p}" loading="lazy">' for p in PLOTS if (d / p).is_file()]
        h.append("</section>")
    h.append("</body></html>")
    return "\n".join(h) + "\n"


def board(runs_dir="runs", html_out=True, console=None):
    """Print the tree table; write RUNS_DIR/index.html unless html_out is False. Returns the rows."""
    from rich.console import Console
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


def main(argv):
    ap = argparse.ArgumentParser(prog="python -m fastmask.board", description=__doc__.splitlines()[2])
    ap.add_argument("runs", nargs="?", default="runs", help="runs folder (default: runs/)")
    ap.add_argument("--no-html", action="store_true", help="print the table only; do not write index.html")
    args = ap.parse_args(argv)
    board(args.runs, html_out=not args.no_html)
    return 0


if __name__ == "__main__":
    from .errors import cli
    sys.exit(cli(main)())

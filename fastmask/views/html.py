"""Static HTML for the board: card Markdown through markdown-it-py (CommonMark plus tables, raw HTML
escaped), links and images rewritten to files that exist, pages filled from a packaged template, and the
board's page itself (its table, data and folded cards; the template's script sorts, filters, compares)."""
import json
import re
from html import escape
from importlib.resources import files
from pathlib import Path
from string import Template
from urllib.parse import quote, unquote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

from fastmask.store.folder import CARD, MODEL_PKL, PLOT_FILES, RECORDS

# html=False: a card's raw HTML (a hypothesis holding <script>) shows as text, never runs.
_MD = MarkdownIt("commonmark", {"html": False, "xhtmlOut": False}).enable("table")


class Raw(str):
    """HTML built from escaped parts: goes into a template as it is (any other value is escaped)."""


def page(template, **fields):
    """The template `template` shipped beside this module, its $fields filled (escaped unless Raw)."""
    text = files(__package__).joinpath(template).read_text(encoding="utf-8")
    return Template(text).substitute({k: v if isinstance(v, Raw) else escape(str(v)) for k, v in fields.items()})


def markdown(text, url=None, shift=0, shown=None):
    """`text` as HTML. Headings move down `shift` levels; `url(target, image)` maps each link or image
    target to the href to write, or None to drop it (a link keeps its label, an image says it is not
    available); the images written are added to the set `shown`."""
    tokens = _folds(_MD.parse(text))
    for t in tokens:
        if t.type in ("heading_open", "heading_close"):
            t.tag = f"h{min(6, int(t.tag[1:]) + shift)}"
        if t.children and url:
            t.children = _rewrite(t.children, url, shown if shown is not None else set())
    return _MD.renderer.render(tokens, _MD.options, {})


_FOLD = re.compile(r"<details><summary>([^<>]*)</summary>")


def _folds(tokens):
    """A card's folded part (report.card folds the verdict's design): a paragraph that is exactly
    `<details><summary>TEXT</summary>` and a later one that is exactly `</details>` become that HTML, TEXT
    escaped. Any other raw HTML stays text, and so does an unpaired fold: a card never closes the board's own
    <details>."""
    out, pending = [], None  # pending: where an open fold went in `out`, and its paragraph's tokens
    i = 0
    while i < len(tokens):
        para = tokens[i:i + 3] if tokens[i].type == "paragraph_open" else []
        text = para[1].content.strip() if len(para) == 3 and para[1].type == "inline" else ""
        m = _FOLD.fullmatch(text)
        if m or (text == "</details>" and pending):
            if m and pending:  # a second open before a close: the first stays text
                out[pending[0]:pending[0] + 1] = pending[1]
            html = f"<details><summary>{escape(m[1])}</summary>\n" if m else "</details>\n"
            pending = (len(out), para) if m else None
            out.append(Token("html_block", "", 0, content=html))
            i += 3
            continue
        out.append(tokens[i])
        i += 1
    if pending:
        out[pending[0]:pending[0] + 1] = pending[1]
    return out


def _rewrite(children, url, shown):
    out, dropped = [], False
    for c in children:
        if c.type == "image":
            src = url(c.attrGet("src"), image=True)
            if src is None:
                alt = _MD.renderer.renderInlineAsText(c.children or [], _MD.options, {})
                c = Token("html_inline", "", 0, content=f'<span class="missing">[{escape(alt)}: not available]</span>')
            else:
                shown.add(src)
                c.attrSet("src", src)
                c.attrSet("loading", "lazy")
        elif c.type == "link_open":
            href = url(c.attrGet("href"), image=False)
            dropped = href is None
            c.hidden = dropped
            if href is not None:
                c.attrSet("href", href)
        elif c.type == "link_close":
            c.hidden, dropped = dropped, False
        out.append(c)
    return out


def resolver(run_dir, root):
    """`url` for `markdown`: a card's target as a path relative to `root` when it names a file that
    exists under `root`; an http(s) link as it is; anything else (a missing file, a remote image, another
    scheme, a bare #fragment) None, so the page opens offline and links only what exists."""
    run_dir, root = Path(run_dir), Path(root).resolve()

    def url(target, image):
        parts = urlsplit(target)
        if parts.scheme or target.startswith("//"):
            return target if not image and parts.scheme in ("http", "https") else None
        if not parts.path:
            return None
        found = (run_dir / unquote(parts.path)).resolve()
        if not found.is_file() or not found.is_relative_to(root):
            return None
        return quote(found.relative_to(root).as_posix())
    return url


def script_json(data):
    """`data` as JSON to put in a <script> block: `<`, `>` and `&` written as \\u escapes (JSON.parse reads
    them back), so a `</script>` or `<!--` in a hypothesis cannot end the block and run as the page."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False)
    return Raw(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


# --- the board's page -------------------------------------------------------------------------------

FILES = (*RECORDS, MODEL_PKL)  # the files a run's section links to
_CLASSED = {"supported", "refuted", "inconclusive", "finished", "running", "interrupted", "partial", "failed",
            "lost", "not comparable"}


def _word(x):
    # status and verdict words get their colour class; any other text is shown plain
    return f'<span class="{x.replace(" ", "-")}">{escape(x)}</span>' if x in _CLASSED else escape(x)


def board_page(root, views, names, numeric, metrics, stamp, reload_s=None):
    """index.html of the runs folder `root` from the board's `views` (board_html.view: one per run, in tree
    order) under the headers `names`: the table, the compare panel's data (with each run's learning curves),
    a folded card per run. With `reload_s` (some run is running) the page reloads itself that often, to show
    what `fastmask board --watch` rewrote; without it the page has no reload at all."""
    root = Path(root)
    data = {"metrics": metrics, "runs": [v["data"] for v in views]}
    return page("board.html", folder=root.resolve().name, count=len(views), root=str(root), stamp=stamp,
                table=Raw(_table(views, names, numeric)), data=script_json(data),
                sections=Raw("\n".join(_section(v, root) for v in views)),
                reload=Raw(reload_script(reload_s)), reloading=Raw(_reloading(reload_s)))


def reload_script(seconds):
    """The page's self-reload while a run is running (the script keeps the reader's ticks, filter, sort,
    open cards and scroll across it), or "" when no run is."""
    if not seconds:
        return ""
    return (f"// a run is running: reload every {seconds:g} s to show the page `fastmask board --watch` rewrites\n"
            f"setTimeout(function () {{ location.reload(); }}, {round(seconds * 1000)});\n")


def _reloading(seconds):
    return f" Some run is running: this page reloads itself every {seconds:g} s." if seconds else ""


def _table(views, names, numeric):
    if not views:
        return "<p>No runs yet: <code>python -m fastmask.run recipes/person_split.py</code> makes one.</p>"
    statuses = "".join(f'<option value="{escape(s)}">{escape(s)}</option>'
                       for s in dict.fromkeys(v["status"] for v in views))
    head = "".join(f'<th class="{"num" if n in numeric else ""}" title="click to sort">{escape(n)}</th>'
                   for n in names)
    out = ['<p class="controls"><input id="filter" type="search" placeholder="filter: words any cell holds" '
           f'size="40"> <select id="status"><option value="">any status</option>{statuses}</select> '
           '<span id="shown" class="small"></span> <button id="open-all" type="button">open all cards</button> '
           '<button id="close-all" type="button">close all</button></p>',
           # a wide table scrolls inside its box, the tick and run columns pinned at its left edge
           f'<div class="scroll"><table class="board" id="runs"><thead><tr><th class="pick" '
           f'title="tick two or more to compare">compare</th>{head}</tr></thead><tbody>']
    for i, v in enumerate(views):
        row = [f'<td class="pick"><input type="checkbox" value="{escape(v["id"])}" '
               f'aria-label="compare {escape(v["name"])}"></td>']
        for n, text, key in v["cells"]:
            sort = i if n == "run" else key
            attr = "" if sort is None else f' data-sort="{sort!r}"'
            if n == "run":
                text = (f'<span class="tree">{escape(v["prefix"])}</span>'
                        f'<a href="#{v["anchor"]}">{escape(text[len(v["prefix"]):])}</a>')
            elif n == "status" and text.startswith(v["status"]):  # "running (epoch 3/15)": the word coloured
                text = _word(v["status"]) + escape(text[len(v["status"]):])
            elif n == "verdict":
                text = _word(text)  # one line: the verdict's reason is its cell's tooltip
            else:
                text = escape(text)
            title = f' title="{escape(v["note"])}"' if n in ("verdict", "Δ parent") and v["note"] else ""
            cls = ' class="num"' if n in numeric else ""
            row.append(f"<td{cls}{attr}{title}>{text}</td>")
        out.append(f'<tr data-id="{escape(v["id"])}" data-card="{escape(v["anchor"])}" '
                   f'data-status="{escape(v["status"])}">' + "".join(row) + "</tr>")
    return "\n".join(out + ["</tbody></table></div>"])


def _read_card(d):
    try:
        return (d / CARD).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _summary(v):
    figures = {n: text for n, text, _ in v["cells"]}
    verdict = figures["verdict"] if figures["verdict"] not in ("", "—") else ""
    return (f'<summary><strong>{escape(v["name"])}</strong> <span class="small">{escape(v["id"])}</span> '
            f'{_word(v["status"])}{" · " + _word(verdict) if verdict else ""} · val F1 {escape(figures["val F1"])}'
            f'</summary>')


def _section(v, root):
    """One run's card, folded: its title line as the summary; open, its card (h1 -> h2), its files and
    the plots the card does not show."""
    d = v["dir"]
    rel = quote(d.relative_to(root).as_posix() if d.is_relative_to(root) else d.name)
    text, url = _read_card(d), resolver(d, root)
    if text is not None and text.startswith("# "):
        title, _, body = text.partition("\n")
        h = [markdown(title, url, shift=1)]
    else:
        body = text
        h = [f"<h2>{escape(v['name'])}" + ("" if text is not None else f"  ({escape(v['status'])})") + "</h2>"]
    if v["status"] == "queued":  # a queue's job with no run folder yet: say what it waits for instead
        h.append(f'<p class="small">{escape(v["data"]["verdict"])} (the queue makes its run folder when it starts)</p>')
    else:
        h.append(f'<p class="small">run folder <code>{escape(v["id"])}</code></p>')
    if v["up"]:
        h.append(f'<p class="small">parent run: <a href="#{v["up"][0]}">{escape(v["up"][1])}</a>'
                 + (f' ({escape(v["note"])})' if v["note"] else "") + "</p>")
    files = [f for f in FILES if (d / f).is_file()]
    if files:
        h.append('<p class="small">files: ' + ", ".join(f'<a href="{rel}/{f}">{f}</a>' for f in files) + "</p>")
    shown = set()
    if text is not None:
        h.append(markdown(body, url, shift=1, shown=shown))
    else:
        h.append(f"<p>{escape(v['status'])}: no card yet.</p>")
        if v["hypothesis"]:
            h.append(f"<p><strong>Hypothesis.</strong> {escape(v['hypothesis'])}</p>")
    h += [f'<img src="{rel}/{p}" alt="{p}" loading="lazy">' for p in PLOT_FILES
          if f"{rel}/{p}" not in shown and (d / p).is_file()]
    return (f'<details class="run" id="{v["anchor"]}">{_summary(v)}\n<section class="run">\n' + "\n".join(h)
            + "\n</section></details>")

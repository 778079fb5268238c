"""The board page's markup (board.html, filled from board_html.view's per-run views): the table with its
controls (text, status and tag filters, the archived toggle), each run's folded card with its notes, and links
that work from wherever the page is written: a run of another runs folder links by its path relative to the
page. The template's script sorts, filters, compares."""
import os
from html import escape
from pathlib import Path
from urllib.parse import quote, urlsplit

from fastmask.store.folder import CARD, MODEL_PKL, PLOT_FILES, RECORDS
from fastmask.views.html import Raw, markdown, page, resolver, script_json

FILES = (*RECORDS, MODEL_PKL)  # the files a run's section links to
STUDY = "study.html"           # `fastmask report`'s page: linked when it is beside the board's
_CLASSED = {"supported", "refuted", "inconclusive", "finished", "running", "interrupted", "partial", "failed",
            "lost", "not comparable"}


def _word(x):
    # status and verdict words get their colour class; any other text is shown plain
    return f'<span class="{x.replace(" ", "-")}">{escape(x)}</span>' if x in _CLASSED else escape(x)


def board_page(page_dir, views, names, numeric, metrics, stamp, reload_s=None, folders=(), archived=False):
    """The board's page, to be written into `page_dir`, from the board's `views` (board_html.view: one per run,
    in tree order) under the headers `names`: the table, the compare panel's data (each run's learning curves,
    live figures, per-class deltas against its parent), a folded card per run. `folders`: the runs folders
    shown; `archived`: the "show archived" toggle starts ticked. With `reload_s` (some run is running) the page
    reloads itself that often, to show what `fastmask board --watch` rewrote; without it the page has no reload."""
    page_dir = Path(page_dir)
    folders = [Path(f) for f in folders] or [page_dir]
    data = {"metrics": metrics, "runs": [v["data"] for v in views], "archived": bool(archived)}
    study = page_dir / STUDY
    return page("board.html", folder=folders[0].resolve().name, count=len(views),
                root=", ".join(map(str, folders)), stamp=stamp,
                table=Raw(_table(views, names, numeric)), data=script_json(data),
                sections=Raw("\n".join(_section(v, page_dir) for v in views)),
                study=Raw(f' The study report: <a href="{STUDY}">{STUDY}</a>.' if study.is_file() else ""),
                reload=Raw(reload_script(reload_s)), reloading=Raw(_reloading(reload_s)))


def reload_script(seconds):
    """The page's self-reload while a run is running (the script keeps the reader's ticks, filters, sort,
    open cards and scroll across it), or "" when no run is."""
    if not seconds:
        return ""
    return (f"// a run is running: reload every {seconds:g} s to show the page `fastmask board --watch` rewrites\n"
            f"setTimeout(function () {{ location.reload(); }}, {round(seconds * 1000)});\n")


def _reloading(seconds):
    return f" Some run is running: this page reloads itself every {seconds:g} s." if seconds else ""


def _options(values):
    return "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in values)


def _controls(views):
    statuses = dict.fromkeys(v["status"] for v in views)
    tags = sorted({t for v in views for t in v["data"]["tags"]})
    n_archived = sum(bool(v["data"]["archived"]) for v in views)
    return ('<p class="controls"><input id="filter" type="search" placeholder="filter: words any cell holds" '
            f'size="40"> <select id="status"><option value="">any status</option>{_options(statuses)}</select> '
            f'<select id="tag" title="only the runs with this tag"><option value="">any tag</option>{_options(tags)}'
            '</select> <label class="small" title="archived runs are hidden until shown here">'
            f'<input id="show-archived" type="checkbox"> show archived ({n_archived})</label> '
            '<span id="shown" class="small"></span> <button id="open-all" type="button">open all cards</button> '
            '<button id="close-all" type="button">close all</button></p>')


def _chips(tags):
    return " ".join(f'<button type="button" class="chip" data-tag="{escape(t)}" title="only the runs tagged '
                    f'{escape(t)}">{escape(t)}</button>' for t in tags)


def _cell_html(v, n, text):
    if n == "run":
        return (f'<span class="tree">{escape(v["prefix"])}</span>'
                f'<a href="#{v["anchor"]}">{escape(text[len(v["prefix"]):])}</a>')
    if n == "status" and text.startswith(v["status"]):  # "running (epoch 3/15)": the word coloured
        return _word(v["status"]) + escape(text[len(v["status"]):])
    if n == "verdict":
        return _word(text)  # one line: the verdict's reason is its cell's tooltip
    if n == "tags" and v["data"]["tags"] and not v["data"]["notebook"]:
        return _chips(v["data"]["tags"])
    return escape(text)


def _table(views, names, numeric):
    if not views:
        return "<p>No runs yet: <code>python -m fastmask.run recipes/person_split.py</code> makes one.</p>"
    head = "".join(f'<th class="{"num" if n in numeric else ""}" title="click to sort">{escape(n)}</th>'
                   for n in names)
    # a wide table scrolls inside its box, the tick and run columns pinned at its left edge
    out = [_controls(views), f'<div class="scroll"><table class="board" id="runs"><thead><tr><th class="pick" '
           f'title="tick two or more to compare">compare</th>{head}</tr></thead><tbody>']
    for i, v in enumerate(views):
        key = escape(v["data"]["id"])
        row = [f'<td class="pick"><input type="checkbox" value="{key}" aria-label="compare {escape(v["name"])}"></td>']
        for n, text, sort in v["cells"]:
            sort = i if n == "run" else sort
            attr = "" if sort is None else f' data-sort="{sort!r}"'
            title = f' title="{escape(v["note"])}"' if n in ("verdict", "Δ parent") and v["note"] else ""
            classes = [c for c in ("num" if n in numeric else "", "live" if n == "val F1" and v["live"] else "") if c]
            if n == "val F1" and v["live"]:
                title = f' title="{escape(v["live"])}"'
            if n == "notes" and v["data"]["notes"]:
                title = f' title="{escape(v["data"]["notes"][-1]["text"] or "")}"'
            cls = f' class="{" ".join(classes)}"' if classes else ""
            row.append(f"<td{cls}{attr}{title}>{_cell_html(v, n, text)}</td>")
        archived = ' data-archived="1" class="archived"' if v["data"]["archived"] else ""
        out.append(f'<tr data-id="{key}" data-card="{escape(v["anchor"])}"{archived} '
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
    tags = "".join(f' <span class="chip">{escape(t)}</span>' for t in v["data"]["tags"])
    archived = ' <span class="small">(archived)</span>' if v["data"]["archived"] else ""
    return (f'<summary><strong>{escape(v["name"])}</strong> <span class="small">{escape(v["id"])}</span> '
            f'{_word(v["status"])}{" · " + _word(verdict) if verdict else ""} · val F1 {escape(figures["val F1"])}'
            f'{tags}{archived}</summary>')


def _rel(path, page_dir):
    """`path` as an href from the page's folder (a run of another runs folder: ../bob/runs/...)."""
    return quote(Path(os.path.relpath(Path(path).resolve(), Path(page_dir).resolve())).as_posix())


def _links(d, root, page_dir):
    """markdown's `url` for run folder `d` of runs folder `root`: html.resolver's rule (files that exist under
    `root`, http links), its targets made relative to the page's folder."""
    url, base = resolver(d, root), _rel(root, page_dir)

    def rebased(target, image):
        href = url(target, image)
        if href is None or base == "." or urlsplit(href).scheme:
            return href
        return f"{base}/{href}"
    return rebased


def _notes(data):
    """The run's notebook in its card: who ran it, its tags, whether it is archived, its notes oldest first."""
    h = []
    if data["who"] or data["device"]:
        h.append(f'<p class="small">ran by {escape(data["who"] or "—")} on {escape(data["device"] or "—")}'
                 + (f' · runs folder {escape(data["folder"])}' if data["folder"] else "") + "</p>")
    if data["notebook"]:
        return h + [f'<p class="missing">{escape(data["notebook"])}</p>']
    if data["archived"]:
        a = data["archived"]
        h.append(f'<p class="small">archived {escape(str(a.get("at") or ""))} by {escape(str(a.get("user") or "?"))}'
                 " (hidden from the board until restored; still evidence for the verdicts that used it)</p>")
    if data["notes"]:
        items = "".join(f'<li><span class="small">{escape(str(n.get("at") or ""))} {escape(str(n.get("user") or ""))}'
                        f'@{escape(str(n.get("host") or ""))}</span> {escape(str(n.get("text") or ""))}</li>'
                        for n in data["notes"])
        h.append(f'<h3>Notes</h3><ul class="notes">{items}</ul>')
    return h


def _section(v, page_dir):
    """One run's card, folded: its title line as the summary; open, its card (h1 -> h2), its notes, its files
    and the plots the card does not show."""
    d, root = v["dir"], v["root"]
    rel = _rel(d, page_dir)
    text, url = _read_card(d), _links(d, root, page_dir)
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
    h += _notes(v["data"])
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

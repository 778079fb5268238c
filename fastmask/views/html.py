"""Static HTML for the pages fastmask writes (the board, the review page, the study report): card Markdown
through markdown-it-py (CommonMark plus tables, raw HTML escaped), links and images rewritten to files that
exist, pages filled from a packaged template, JSON safe inside a <script>. The board's own markup is in
board_page."""
import json
import re
from html import escape
from importlib.resources import files
from pathlib import Path
from string import Template
from urllib.parse import quote, unquote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

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

"""The study report: the page a team reads instead of a wiki, made from run folders alone and regenerated at any
time. The tree of hypotheses (each recipe under its parent, with its verdict, effect and interval, seeds or
folds, notes, tags and the plot that decides it), the open questions with the command that would decide each,
and the best recipe so far with how far it is from the root. Markdown, or HTML through the same Markdown."""
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from fastmask.errors import FastmaskError
from fastmask.report.judgement import DECIDED, decide_command
from fastmask.store import notebook
from fastmask.store.folder import CARD, CURVES_PLOT, PER_CLASS_F1_PLOT
from fastmask.store.index import entries
from fastmask.store.run_folder import RunFolder

OPEN = ("unreplicated", "inconclusive")
# the figure that decides a verdict, first found wins: the per-class change against the parent, else the
# run's own per-class F1, else its curves
DECIDING_PLOTS = ("class_delta.png", PER_CLASS_F1_PLOT, CURVES_PLOT)


@dataclass
class Node:
    """One recipe of the study: its newest finished run (`run`) and how many finished runs it has."""
    name: str
    run: RunFolder
    runs_dir: Path
    n_runs: int
    book: notebook.Notebook
    parent: Optional[str] = None
    children: list = field(default_factory=list)

    @property
    def verdict(self):
        v = self.run.metrics.get("verdict")
        return v if isinstance(v, dict) else {}

    @property
    def score(self):
        """(figure name, value) this recipe is ranked by: holdout macro F1 where the run has it; else validation
        macro F1, except on a random split, whose validation shares people with training (None: not ranked)."""
        m = self.run.metrics
        if _number(m.get("holdout_macro_f1")):
            return "holdout macro F1", float(m["holdout_macro_f1"])
        split = str((self.run.config.get("fields") or {}).get("split", ""))
        if _number(m.get("macro_f1")) and not split.startswith("random"):
            return "validation macro F1", float(m["macro_f1"])
        return None


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


@dataclass
class Study:
    runs_dirs: list
    nodes: dict            # recipe name -> Node
    roots: list            # names, in order
    archived: int          # finished runs left out because they are archived


def build(runs_dirs, archived=False, warn=None):
    """The study of the finished runs in `runs_dirs` (several: one per team member), newest run per recipe."""
    nodes, n_archived, seen = {}, 0, False
    for runs_dir in map(Path, runs_dirs):
        found = entries(runs_dir, warn=warn, must_exist=True)
        seen = seen or bool(found)
        for e in found:
            if e.status not in ("finished", "partial") or not e.recipe:
                continue
            try:
                book = notebook.read(e.dir)
            except FastmaskError as err:  # one damaged notebook must not hide the study: show the run, say why
                if warn:
                    warn(str(err))
                book = notebook.Notebook()
            if book.archived and not archived:
                n_archived += 1
                continue
            old = nodes.get(e.recipe)
            if old is None or e.name.split("-", 1)[0] >= old.run.name.split("-", 1)[0]:
                nodes[e.recipe] = Node(e.recipe, e, runs_dir, (old.n_runs if old else 0) + 1, book,
                                       e.config.get("parent"))
            else:
                old.n_runs += 1
    if not seen:
        raise FastmaskError(f"{', '.join(map(str, runs_dirs))}: no run folders here (a runs folder holds folders "
                            "named <stamp>-<recipe> with config.json)")
    for n in nodes.values():
        if n.parent in nodes:
            nodes[n.parent].children.append(n.name)
    for n in nodes.values():
        n.children.sort()
    roots = sorted(n.name for n in nodes.values() if n.parent not in nodes)
    return Study(list(map(Path, runs_dirs)), nodes, roots, n_archived)


def walk(study):
    """(depth, node) depth first from each root, children by name."""
    out = []

    def visit(name, depth, trail):
        if name in trail:  # a parent loop in hand-edited configs: show each recipe once
            return
        out.append((depth, study.nodes[name]))
        for c in study.nodes[name].children:
            visit(c, depth + 1, trail | {name})
    for r in study.roots:
        visit(r, 0, frozenset())
    return out


def lineage(study, name):
    """The chain of recipe names from the root down to `name`."""
    chain = []
    while name in study.nodes and name not in chain:
        chain.append(name)
        name = study.nodes[name].parent
    return chain[::-1]


def best(study):
    """(node, its score, the root's node and score under the same figure) for the best ranked recipe, or None."""
    ranked = [(n.score, n) for n in study.nodes.values() if n.score is not None]
    if not ranked:
        return None
    figure = "holdout macro F1" if any(s[0] == "holdout macro F1" for s, _ in ranked) else "validation macro F1"
    (_, value), node = max(((s, n) for s, n in ranked if s[0] == figure), key=lambda x: (x[0][1], x[1].name))
    root = study.nodes[lineage(study, node.name)[0]]
    rs = root.score if root.score is not None and root.score[0] == figure else None
    return node, figure, value, root, rs[1] if rs else None


def open_questions(study):
    """(node, verdict word, the command or advice that would decide it) for each recipe left undecided."""
    out = []
    for _, n in walk(study):
        v = n.verdict
        word = v.get("verdict")
        if word in OPEN:
            out.append((n, word, decide_command(n.run.config, runs=n.runs_dir)))
        elif word == "neither learned":
            out.append((n, word, v.get("advice") or "train longer before judging"))
    return out


def _effect(v):
    if not _number(v.get("delta")):
        return ""
    interval = f" [{v['low']:+.3f}, {v['high']:+.3f}]" if _number(v.get("low")) and _number(v.get("high")) else ""
    return f"{v['delta']:+.3f}{interval}"


def _evidence(n):
    v, fields = n.verdict, n.run.config.get("fields") or {}
    split = str(fields.get("split", ""))
    if split.startswith("kfold"):
        return f"{split.split(':')[-1]} folds" if ":" in split else "k folds"
    seeds = v.get("seeds") or fields.get("replicates") or 1
    return f"{seeds} seed{'s' if seeds != 1 else ''}"


def _link(target, out_dir):
    return Path(os.path.relpath(target, out_dir)).as_posix()


def markdown(study, out_dir):
    """The report as Markdown, its links and images relative to `out_dir` (where the report is written)."""
    out_dir = Path(out_dir).resolve()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_runs = sum(n.n_runs for n in study.nodes.values())
    lines = [f"# Study of {', '.join(str(d) for d in study.runs_dirs)}", "",
             f"{len(study.nodes)} recipes, {n_runs} finished runs" +
             (f" ({study.archived} archived runs left out)" if study.archived else "") + f"; made {stamp} from the "
             "run folders alone (`fastmask report` makes it again).", ""]
    b = best(study)
    if b:
        node, figure, value, root, root_value = b
        far = (f", {value - root_value:+.3f} from the root `{root.name}` ({root_value:.3f})"
               if root_value is not None and root is not node else " (the root itself)" if root is node else "")
        lines += [f"**Best so far:** `{node.name}`, {figure} {value:.3f}{far}; its line: "
                  + " → ".join(f"`{x}`" for x in lineage(study, node.name)) + ".", ""]
    questions = open_questions(study)
    lines += ["## Open questions", ""]
    for n, word, todo in questions:
        lines.append(f"- `{n.name}` against `{n.parent}`: **{word}** {_effect(n.verdict)}. Decide it: `{todo}`"
                     if word in OPEN else f"- `{n.name}` against `{n.parent}`: **{word}**. {todo}")
    if not questions:
        lines.append("None: every hypothesis with a parent run is decided.")
    lines += ["", "## Hypotheses", ""]
    for depth, n in walk(study):
        lines += _node(study, n, depth, out_dir)
    return "\n".join(lines) + "\n"


def _node(study, n, depth, out_dir):
    v, m = n.verdict, n.run.metrics
    trail = " › ".join(lineage(study, n.name))
    head = f"{'#' * min(6, 3 + depth)} {n.name}"
    word = v.get("verdict") or ("root" if n.parent is None else "no verdict (no comparable parent run)")
    out = [head, "", f"*{trail}*", ""]
    hyp = n.run.config.get("hypothesis")
    if hyp:
        out += ["> " + hyp.replace("\n", "\n> "), ""]
    figures = [f"validation macro F1 {m['macro_f1']:.3f}" if _number(m.get("macro_f1")) else None,
               f"holdout {m['holdout_macro_f1']:.3f}" if _number(m.get("holdout_macro_f1")) else None]
    verdict = f"**{word}**" + (f" {_effect(v)}" if _effect(v) else "") + (
        f" against `{n.parent}`" if n.parent and v else "")
    mark = " ✔" if word in DECIDED else ""
    newest = f"newest [{n.run.name}]({_link(n.run.dir / CARD, out_dir)})"
    out += [f"Verdict: {verdict}{mark}; {_evidence(n)}; " + ", ".join(f for f in figures if f) +
            f"; {n.n_runs} run{'s' if n.n_runs != 1 else ''} ({newest})", ""]
    if n.book.tags:
        out += ["Tags: " + " ".join(f"`{t}`" for t in n.book.tags), ""]
    for note in n.book.notes:
        out.append(f"- *{note['at']} {note['user']}@{note['host']}*: {note['text']}")
    if n.book.notes:
        out.append("")
    plot = next((n.run.dir / p for p in DECIDING_PLOTS if (n.run.dir / p).is_file()), None)
    if plot is not None:
        out += [f"![{plot.stem.replace('_', ' ')} of {n.name}]({_link(plot, out_dir)})", ""]
    return out


def html(study, out_dir):
    from fastmask.views.html import Raw, markdown as to_html, page
    body = to_html(markdown(study, out_dir))
    return page("study.html", title=f"Study of {', '.join(str(d) for d in study.runs_dirs)}", body=Raw(body))


def write(runs_dirs, out=None, archived=False, warn=None):
    """Write the study of `runs_dirs` to `out` (.html or .md; default the first runs folder's study.html).
    Returns (path, the study)."""
    out = Path(out) if out else Path(runs_dirs[0]) / "study.html"
    if out.suffix.lower() not in (".html", ".htm", ".md"):
        raise FastmaskError(f"--out {out}: a study report is .html or .md")
    study = build(runs_dirs, archived=archived, warn=warn)
    if not out.parent.is_dir():
        raise FastmaskError(f"--out {out}: no folder {out.parent}")
    text = markdown(study, out.parent) if out.suffix.lower() == ".md" else html(study, out.parent)
    from fastmask.io import atomic_write
    atomic_write(out, text)
    return out, study

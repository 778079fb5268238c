"""A run's lab notebook: notes, tags and the archive flag, written after training by people, never by it.

One append-only file per run folder (`notebook.jsonl`), one JSON object a line, each an event: a note, a tag
added or removed, the run archived or restored, dated and signed with user and host. The state (notes, tags,
archived) is the replay of the events, so nothing training wrote is ever rewritten, two processes writing at
once both land (each line is appended whole under an exclusive lock), and who archived what, when, stays
on record."""
import fcntl
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from fastmask.errors import FastmaskError
from fastmask.io import FILE_MODE, signature
from fastmask.store.run_folder import is_run

NOTEBOOK = "notebook.jsonl"
KINDS = ("note", "tag", "untag", "archive", "restore")
# a tag is a word a filter can match and a chip can show: no spaces, no control characters, no quotes
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/-]{0,39}")


def check_tag(tag):
    if not isinstance(tag, str) or not TAG.fullmatch(tag):
        raise FastmaskError(f"tag {tag!r}: a tag is 1-40 letters, digits or . _ : + / - (starting with a letter "
                            "or digit), no spaces")
    return tag


@dataclass
class Notebook:
    """What a run's notebook says now."""
    notes: list = field(default_factory=list)      # {"at", "user", "host", "text"}, oldest first
    tags: list = field(default_factory=list)       # in the order they were added
    archived: Optional[dict] = None                # the archive event ({"at", "user", "host"}) while archived


def read(run_dir) -> Notebook:
    """The notebook of `run_dir` (empty when it has none). A damaged line is one FastmaskError naming the
    file and line, so a hand-edited file never passes for a shorter history."""
    path = Path(run_dir) / NOTEBOOK
    book = Notebook()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return book
    except (OSError, UnicodeDecodeError) as e:
        raise FastmaskError(f"{path}: cannot read the run's notebook ({e.__class__.__name__})") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            ev = None
        if not isinstance(ev, dict) or ev.get("kind") not in KINDS or not isinstance(ev.get("at"), str):
            raise FastmaskError(f"{path}: line {n} is not a notebook event (a JSON object with kind and at)")
        _apply(book, ev, path, n)
    return book


def _apply(book, ev, path, n):
    kind = ev["kind"]
    if kind == "note":
        if not isinstance(ev.get("text"), str):
            raise FastmaskError(f"{path}: line {n}: a note without text")
        book.notes.append({k: ev.get(k) for k in ("at", "user", "host", "text")})
    elif kind in ("tag", "untag"):
        tag = ev.get("tag")
        if not isinstance(tag, str):
            raise FastmaskError(f"{path}: line {n}: a {kind} without a tag")
        if tag in book.tags:
            book.tags.remove(tag)
        if kind == "tag":
            book.tags.append(tag)
    else:
        book.archived = {k: ev.get(k) for k in ("at", "user", "host")} if kind == "archive" else None


def append(run_dir, kind, **data):
    """Add one event to `run_dir`'s notebook: one line written whole, under an exclusive lock."""
    assert kind in KINDS
    ev = {"kind": kind, "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **signature(), **data}
    line = (json.dumps(ev, ensure_ascii=False) + "\n").encode("utf-8")
    path = Path(run_dir) / NOTEBOOK
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    except OSError as e:
        raise FastmaskError(f"{path}: cannot write the run's notebook ({e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a line longer than the kernel writes at once must not interleave
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return ev


def resolve(run, runs_dir="runs"):
    """A run folder from what a user types: its path, or a unique prefix of its folder name (the UTC stamp,
    or the recipe name after it) in `runs_dir`."""
    p = Path(run)
    if p.is_dir() and is_run(p):
        return p
    base = Path(runs_dir)
    if p.is_dir():
        raise FastmaskError(f"{run}: not a run folder (no config.json or status.json)")
    if not base.is_dir():
        raise FastmaskError(f"{run}: no such run folder, and no runs folder {base} to look for it in")
    runs = sorted(d for d in base.iterdir() if d.is_dir() and is_run(d))
    hits = [d for d in runs if d.name.startswith(run)]
    if not hits:  # the recipe name after the stamp: "cutmix_halves" for 20261206T101500Z-cutmix_halves
        hits = [d for d in runs if d.name.partition("-")[2].startswith(run)]
        hits = [d for d in hits if d.name.partition("-")[2] == run] or hits  # "oversample", not oversample_cutmix
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise FastmaskError(f"{run}: no run folder in {base} is named so or starts so")
    names = ", ".join(d.name for d in hits[:5]) + (", ..." if len(hits) > 5 else "")
    raise FastmaskError(f"{run}: {len(hits)} run folders in {base} match ({names}); give more of the name")

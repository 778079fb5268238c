"""The README's commands, read from README.md and run as written, so the README cannot drift from the product.

What is read: every fenced ```bash block, split into simple commands at `&&`, `;`, `&` and `|` (shell comments
dropped, a leading `VAR=value` dropped); a fastmask command is `fastmask SUB ...`, `python -m fastmask SUB ...`
or `python -m fastmask.SUB ...` (any python, `.venv/bin/python` included). Also the command table under
"The `fastmask` command" and the inline `fastmask ...` / `python -m fastmask...` spans of the prose.

The rules:
- every table command's `--help` exits 0, as `fastmask SUB --help` and as `python -m fastmask.SUB --help`, and the
  table names exactly the commands `fastmask --help` lists; every `--flag` the table or an inline span gives a
  command is in that command's --help;
- every fastmask command of every bash block parses: its command's own argument parser accepts it as written
  (stopped right after parsing, placeholders such as `runs/<stamp>-kfold` are just strings to it);
- the blocks' commands are then run as written, in a temp project made by the README's own
  `fastmask init my-project && cd my-project`, in README order, with three changes only: a `fastmask run` gets
  `--set epochs=1 --set arch=test_resnet --set size=64,48` appended (the package reads no environment variable
  for tiny settings); a training command without `--data` gets `--data TWIN` (the tests' 40-person twin, also
  linked as the project's `data/twin`, so `--eval data/twin` runs as written); and placeholders name real
  things: `runs/<stamp>-NAME` the newest run of recipe NAME, `runs/A` and `runs/B` two runs of this project (a
  k-fold one and age58's), `/path/to/competition` the twin and `/path/to/eval` its eval/;
- not run, only parsed (each with its reason in NOT_RUN): the set-up lines (`python3 -m venv`, `pip install`,
  `pytest`: minutes, and not fastmask commands), `ray start` (not a fastmask command), the 2,700-person `synth`,
  the queue on a Ray cluster and the 30- and 40-trial searches. The two top commands' venv parts are not run;
  their `python -m fastmask.run recipes/oversample_cutmix.py` is, as the headline job.
- the table's `board`, `compare` and `plan` run on the project's runs (their placeholders filled the same way).

Commands run in this process (conftest.in_process: the entry point as `python -m` calls it), except one
`fastmask --help` through the installed console script."""
import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fastmask.__main__ import COMMANDS

from conftest import in_process

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
TINY_SETS = ["--set", "epochs=1", "--set", "arch=test_resnet", "--set", "size=64,48"]
TRAINS = ("run", "search")
# (sub, first argument): why the command is parsed but not run here
NOT_RUN = {("synth", "data/big"): "2,700 people at 384x512 take minutes to draw",
           ("run", "recipes/"): "the queue on a Ray cluster (A_HOST): no cluster here",
           ("search", "recipes/search_lr_cutmix.py"): "30 optuna trials",
           ("search", "recipes/X.py"): "a loop of 4 searches of 40 trials, one per GPU, on a recipe X to write"}


# --- reading the README -----------------------------------------------------------------------------------

def fastmask_call(tokens):
    """(sub, args) when `tokens` (one simple command) is a fastmask command, else None."""
    while tokens and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", tokens[0]):
        tokens = tokens[1:]
    if not tokens:
        return None
    head = Path(tokens[0]).name
    if head == "fastmask" and len(tokens) > 1:
        return tokens[1], tokens[2:]
    if head in ("python", "python3") and len(tokens) > 2 and tokens[1] == "-m":
        if tokens[2] == "fastmask" and len(tokens) > 3:
            return tokens[3], tokens[4:]
        if tokens[2].startswith("fastmask."):
            return tokens[2].split(".", 1)[1].replace("_", "-"), tokens[3:]
    return None


def simple_commands(line):
    """The simple commands of one shell line, each a token list (comments dropped; loop words dropped)."""
    lx = shlex.shlex(line, posix=True, punctuation_chars="&;|")
    lx.whitespace_split, lx.commenters = True, "#"
    out, cur = [], []
    for t in lx:
        if set(t) <= set("&;|"):
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    out.append(cur)
    return [c[1:] if c[:1] == ["do"] else c for c in out if c and c[0] not in ("for", "done", "wait")]


def bash_blocks():
    """[(first line number, [(line number, simple command tokens), ...]), ...] for every ```bash block."""
    blocks = []
    for m in re.finditer(r"^```bash\n(.*?)^```", README, flags=re.S | re.M):
        first = README[:m.start(1)].count("\n") + 1
        cmds = [(first + i, c) for i, line in enumerate(m.group(1).splitlines()) for c in simple_commands(line)]
        blocks.append((first, cmds))
    return blocks


def block_with(text):
    """The simple commands of the one bash block holding `text`."""
    found = [cmds for _, cmds in bash_blocks() if any(text in " ".join(c) for _, c in cmds)]
    assert len(found) == 1, f"{len(found)} bash blocks of README.md hold {text!r}"
    return found[0]


def readme_calls():
    return [(n, " ".join(c), *call) for _, cmds in bash_blocks() for n, c in cmds if (call := fastmask_call(c))]


def table():
    """{sub: the row's text} from the command table under "The `fastmask` command"."""
    part = README.split("## The `fastmask` command", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z][a-z-]*)[ `].*$", part, flags=re.M)}


def inline_calls():
    """(sub, span) for every inline `fastmask SUB ...` / `python -m fastmask...` span outside code blocks."""
    prose = re.sub(r"^```.*?^```", "", README, flags=re.S | re.M)
    out = []
    for m in re.finditer(r"`((?:fastmask|python -m fastmask)[ .][^`]*)`", prose):
        span = m.group(1)
        tokens = span.replace("[", " ").replace("]", " ").split()
        call = fastmask_call(tokens)
        if call and call[0] in COMMANDS:
            out.append((call[0], span))
    return out


def flags(text):
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))


# --- help and flags -------------------------------------------------------------------------------------

def test_the_table_names_every_command_and_each_flag_it_gives_exists():
    rows = table()
    assert sorted(rows) == sorted(COMMANDS), "the README's command table and `fastmask --help` list other commands"
    spans = inline_calls()
    assert len(spans) >= 8
    for sub, text in [*rows.items(), *spans]:
        p = in_process("__main__", sub, "--help")
        assert p.returncode == 0, (sub, p.stderr[-1000:])
        missing = flags(text) - flags(p.stdout) - {"--help"}
        assert not missing, f"README says `{text[:80]}` but `fastmask {sub} --help` has no {sorted(missing)}"


@pytest.mark.parametrize("sub", list(table()))
def test_each_table_command_helps_in_both_forms(sub):
    a = in_process("__main__", sub, "--help")
    module = sub.replace("-", "_")
    if (REPO / "fastmask" / module / "__main__.py").is_file():  # a package (report/): its __main__ is the command
        module += ".__main__"
    b = in_process(module, "--help")  # python -m fastmask.SUB --help
    assert a.returncode == 0 and b.returncode == 0, (a.stderr[-500:], b.stderr[-500:])
    assert "usage:" in a.stdout and "usage:" in b.stdout and f"fastmask {sub}" in a.stdout


def test_the_console_script_lists_the_commands():
    exe = Path(sys.executable).parent / "fastmask"
    if not exe.is_file():
        pytest.skip(f"no `fastmask` console script beside {sys.executable} (not the installed environment)")
    p = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and all(f"  {sub} " in p.stdout for sub in COMMANDS), p.stdout + p.stderr


# --- every bash command parses as written ---------------------------------------------------------------------

class Parsed(Exception):
    pass


@pytest.mark.parametrize("line,text,sub,args", readme_calls(), ids=[f"README.md:{c[0]}:{c[2]}" for c in readme_calls()])
def test_each_bash_command_parses_as_written(line, text, sub, args, monkeypatch):
    import argparse
    assert sub in COMMANDS, f"README.md:{line}: `{text}`: fastmask has no command {sub!r}"
    parse = argparse.ArgumentParser.parse_args

    def stop(self, args=None, namespace=None):  # the command's own parser, then nothing more
        raise Parsed(parse(self, args, namespace))
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    module = importlib.import_module(COMMANDS[sub][0])
    with pytest.raises(Parsed):
        getattr(module.main, "__wrapped__", module.main)(list(args))


def test_the_readme_shows_the_commands_this_file_runs():
    subs = [sub for _, _, sub, _ in readme_calls()]
    for sub in ("run", "predict", "suspects", "init", "synth", "search"):
        assert sub in subs
    assert len(subs) >= 15


# --- run as written, in a project made by the README's own init ----------------------------------------------

class Project:
    def __init__(self, root, twin):
        self.root, self.twin, self.cwd = root, twin, root
        self.stand_ins = {}  # placeholder -> what it stands for here

    def runs(self, name):
        d = self.cwd / "runs"
        return sorted(p for p in d.iterdir() if p.name.endswith(f"-{name}")) if d.is_dir() else []

    def fill(self, arg):
        m = re.fullmatch(r"runs/<stamp>-(\w+)", arg)
        if m:
            found = self.runs(m.group(1))
            assert found, f"{arg}: no run of {m.group(1)} in {self.cwd / 'runs'}"
            return f"runs/{found[-1].name}"
        for key, value in {"/path/to/competition": self.twin, "/path/to/eval": self.twin / "eval",
                           **self.stand_ins}.items():
            if arg == key or arg.startswith(key + "/"):
                return str(value) + arg[len(key):]
        return arg

    def call(self, sub, args):
        args = [self.fill(a) for a in args]
        if sub == "run":
            args += TINY_SETS
        if sub in TRAINS and "--data" not in args:
            args += ["--data", str(self.twin)]
        return in_process("__main__", sub, *args, cwd=self.cwd)

    def run_block(self, cmds):
        """Each simple command of a block in order: `cd` moves, fastmask commands run (those in NOT_RUN are parsed
        only, by the test above); the rest (venv, pip, pytest, ray) is not run. {line text: CompletedProcess}."""
        out = {}
        for n, c in cmds:
            if c[0] == "cd":
                self.cwd = self.cwd / c[1]
                continue
            call = fastmask_call(c)
            if call is None or (call[0], (call[1] or [""])[0]) in NOT_RUN:
                continue
            p = self.call(*call)
            assert p.returncode == 0, f"README.md:{n}: `{' '.join(c)}` exited {p.returncode}: {p.stderr[-2500:]}"
            out[" ".join(c)] = p
        return out


@pytest.fixture(scope="module")
def project(twin, tmp_path_factory):
    """README's `fastmask init my-project && cd my-project` then `fastmask run recipes/person_split.py ...`."""
    pr = Project(tmp_path_factory.mktemp("readme"), twin)
    done = pr.run_block(block_with("fastmask init my-project"))
    assert pr.cwd.name == "my-project" and (pr.cwd / "recipes" / "person_split.py").is_file()
    (pr.cwd / "data").mkdir()
    (pr.cwd / "data" / "twin").symlink_to(twin, target_is_directory=True)
    pr.started = done
    return pr


def finished(run):
    import json
    return json.loads((run / "status.json").read_text())["status"] == "finished"


def test_init_then_the_first_run_from_the_project(project):
    (ps,) = project.runs("person_split")
    (base,) = project.runs("baseline")  # the parent on demand
    assert finished(ps) and finished(base)
    out = "".join(p.stdout for p in project.started.values())
    assert "wrote " in out and "recipes to" in out and "card: " in out


@pytest.fixture(scope="module")
def headline(project):
    """The top command's fastmask part: `.venv/bin/python -m fastmask.run recipes/oversample_cutmix.py`."""
    cmds = [(n, c) for n, c in block_with("recipes/oversample_cutmix.py") if fastmask_call(c)]
    assert [fastmask_call(c)[1] for _, c in cmds] == [["recipes/oversample_cutmix.py"]]
    (p,) = project.run_block(cmds).values()
    return p


def test_the_headline_job_trains_its_parent_then_itself_and_ends_with_the_verdict(project, headline):
    (parent,) = project.runs("oversample")
    (child,) = project.runs("oversample_cutmix")
    assert finished(parent) and finished(child)
    assert "parent oversample: no comparable finished run on this data; training it first" in headline.stdout
    import json
    v = json.loads((child / "metrics.json").read_text())["verdict"]
    assert v["parent_run"] == parent.name
    card = (child / "card.md").read_text()
    assert "Verdict" in card or "Unreplicated" in card


@pytest.fixture(scope="module")
def using_it(project, headline):
    """"Using it": person_split with its overrides, age58 on a competition folder (the twin), synth (parsed)."""
    return project.run_block(block_with("recipes/age58.py"))


def test_the_using_it_block_runs(project, using_it):
    assert len(project.runs("person_split")) == 2 and finished(project.runs("age58")[0])
    assert "parent person_split: reusing" in next(p.stdout for k, p in using_it.items() if "age58" in k)


@pytest.fixture(scope="module")
def kfold_block(project, using_it):
    """The k-fold block: its first line trains kfold; then kfold_strong (a child of kfold, whose run the block's
    TTA line names) is trained, reusing that run as its parent; runs/A is the k-fold run, runs/B age58's."""
    cmds = block_with("recipes/kfold.py")
    out = project.run_block(cmds[:1])
    p = project.call("run", ["recipes/kfold_strong.py"])
    assert p.returncode == 0 and "parent kfold: reusing" in p.stdout, p.stderr[-2000:]
    project.stand_ins = {"runs/A": project.runs("kfold")[-1], "runs/B": project.runs("age58")[-1]}
    out.update(project.run_block(cmds[1:]))
    return out


def test_the_kfold_block_runs_and_writes_submissions_and_the_review(project, kfold_block, twin):
    (kfold,) = project.runs("kfold")
    assert finished(kfold) and (kfold / "suspects.csv").is_file() and (kfold / "review.html").is_file()
    info = pd.read_csv(twin / "eval" / "info.csv", dtype=str)
    sub = pd.read_csv(project.cwd / "submission.csv", dtype={"ImageID": str})
    assert sub.ImageID.tolist() == info.ImageID.tolist()
    predicted = [p for k, p in kfold_block.items() if "fastmask.predict" in k]
    assert len(predicted) == 3 and all("wrote submission.csv" in p.stdout for p in predicted)
    assert any("TTA 4" in p.stdout for p in predicted) and any("hard vote" in p.stdout for p in predicted)


def test_the_tables_board_compare_and_plan_run_on_the_projects_runs(project, headline):
    (parent,) = project.runs("oversample")
    (child,) = project.runs("oversample_cutmix")
    for sub, args in (("board", ["runs", "--rejudge"]), ("compare", [f"runs/{parent.name}", f"runs/{child.name}",
                                                                      "--out", "compare.png"]),
                      ("plan", [f"runs/{child.name}", "--effect", "0.02"])):
        assert sub in table() and all(f in flags(table()[sub]) or f == "--out" for f in flags(" ".join(args)))
        p = project.call(sub, args)
        assert p.returncode == 0, (sub, p.stderr[-2000:])
    assert (project.cwd / "runs" / "index.html").is_file() and (project.cwd / "compare.png").is_file()

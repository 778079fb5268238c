"""The house, measured on one headline run: how often control climbs back into a fastmask module it already
left, how many times each run folder's files are opened, and how many times `split` is parsed and the data
hashed. Counts, not times, so the figures are the same on a busy machine.

    python bench/house.py [--recipe recipes/oversample_cutmix.py] [--people 40]

The run is the README's headline form (a child whose parent is missing, so the parent trains first) on a tiny
twin, `--set arch=test_resnet --set epochs=1 --set size=64,48`, in this process under a profile hook.

How the re-entries are counted: every call from a fastmask function into a fastmask function of another module
is an edge; each distinct edge is kept once, at its first use, so a loop over batches or folds counts as one
pass. Along that ordered list of modules entered, an entry into a module entered before (and left since) is a
climb back; a call into a module that is still on the stack below its caller (A -> B -> A) is listed by name.
Files: every `open` for reading of a path inside the runs folder, grouped by the run folder it belongs to (files
read by code that opens them without Python's `open`, e.g. pandas' C reader of a path, are not counted)."""
import argparse
import builtins
import io
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WATCHED = ("parse_split", "fingerprint")


def module_of(frame):
    name = frame.f_globals.get("__name__", "")
    return name if name.startswith("fastmask") else None


class Tracer:
    def __init__(self):
        self.edges, self.seen, self.calls, self.cycles = [], set(), Counter(), []

    def __call__(self, frame, event, arg):
        if event != "call":
            return
        callee = module_of(frame)
        if callee is None:
            return
        code = frame.f_code
        if code.co_name in WATCHED:
            self.calls[code.co_name] += 1
        back = frame.f_back
        caller = module_of(back) if back is not None else None
        if caller is None or caller == callee:
            return
        edge = (back.f_code, code)
        if edge not in self.seen:
            self.seen.add(edge)
            self.edges.append(callee)
            if callee in self.below(back, caller):
                self.cycles.append(f"{caller}.{back.f_code.co_name} -> {callee}.{code.co_name}")

    @staticmethod
    def below(frame, caller):
        """The fastmask modules on the stack under the caller's own stretch of frames."""
        while frame is not None and module_of(frame) == caller:
            frame = frame.f_back
        out = set()
        while frame is not None:
            out.add(module_of(frame))
            frame = frame.f_back
        return out

    def climbs_back(self):
        entered, current, n = set(), None, 0
        for m in self.edges:
            if m != current and m in entered:
                n += 1
            entered.add(m)
            current = m
        return n


def count_opens(runs):
    """Reads (opens for reading) of files inside `runs`, per run folder."""
    runs = str(Path(runs).resolve())
    per_folder, real = Counter(), builtins.open

    def counting(file, mode="r", *a, **k):
        if isinstance(file, (str, os.PathLike)) and not set(mode) & set("wax+"):
            p = str(Path(file).resolve())
            if p.startswith(runs + os.sep):
                per_folder[p[len(runs) + 1:].split(os.sep)[0]] += 1
        return real(file, mode, *a, **k)
    builtins.open = io.open = counting
    return per_folder, lambda: setattr(builtins, "open", real) or setattr(io, "open", real)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/oversample_cutmix.py")
    ap.add_argument("--people", type=int, default=40)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    tmp = Path(tempfile.mkdtemp(prefix="house-"))
    from fastmask import synth
    synth.main([str(tmp / "data"), "--people", str(a.people), "--size", "48x64"])
    from fastmask import run
    runs = tmp / "runs"
    argv = [a.recipe, "--data", str(tmp / "data"), "--runs", str(runs), "--quiet",
            "--set", "arch=test_resnet", "--set", "epochs=1", "--set", "size=64,48"]
    tracer = Tracer()
    opens, restore = count_opens(runs)
    sys.setprofile(tracer)
    try:
        run.main(argv)
    finally:
        sys.setprofile(None)
        restore()
    folders = sorted(opens)
    print(f"headline run: {' '.join(argv)}")
    print(f"climbs back into a module already left: {tracer.climbs_back()} "
          f"({len(tracer.edges)} distinct cross-module calls, {len(set(tracer.edges))} modules)")
    print(f"calls back into a module still on the stack below the caller: {len(tracer.cycles)}")
    for c in tracer.cycles:
        print(f"  {c}")
    for name in WATCHED:
        print(f"{name} called: {tracer.calls[name]}")
    for f in folders:
        print(f"files read in {f}: {opens[f]}")


if __name__ == "__main__":
    main()

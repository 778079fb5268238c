"""A queue's running jobs followed epoch by epoch: one plain line per finished epoch of each job,
`[4/8] cutmix_halves epoch 2/3 macro_f1 0.071 valid_loss 1.234` (a fold or seed named before the epoch when a
run trains several), printed by the queue between its waits.

Each job's log names its run folder as the run starts ("run folder: ..."), read from where the last look
stopped; the run's history file(s) (store.live) are read again only when their size changed, so a poll is a few
stat calls. Only the process that drives the queue reads them: a job on a Ray node writes into the one shared
runs folder, which the queue's machine sees."""
import re
from pathlib import Path

from fastmask.store import live
from fastmask.store.folder import CONFIG, read_json

POLL_S = 2.0  # how often the queue looks, at most: its wait for a job to end wakes up this often
_FOLDER = re.compile(r"^run folder: (.+)$", re.M)


class Follower:
    """Prints, through `out`, each new finished epoch of the jobs it is asked about; `todo` numbers them
    ([position/total], as the plan lists them)."""

    def __init__(self, todo, out=print):
        self.out, self.total = out, len(todo)
        self.place = {j.name: i for i, j in enumerate(todo, 1)}
        self.log_at, self.runs, self.epochs = {}, {}, {}
        self.sizes, self.seen = {}, {}

    def poll(self, jobs):
        """Print the epochs each of `jobs` (running Jobs, each with its log) finished since the last poll."""
        for j in jobs:
            try:
                self._job(j)
            except OSError:  # a file that went away between two looks: the next poll sees what there is
                continue

    def _job(self, j):
        run = self.runs.get(j.name) or self._run_folder(j)
        if run is None:
            return
        for part, path in live.history_files(run):
            size = path.stat().st_size
            if self.sizes.get(path) == size:
                continue
            self.sizes[path] = size
            rows = live.epochs(path)
            for row in rows[self.seen.get(path, 0):]:
                self.out(self.line(j.name, part, row, self.seen.get(path, 0) + 1, self.epochs.get(j.name)))
                self.seen[path] = self.seen.get(path, 0) + 1

    def _run_folder(self, j):
        """The run folder job `j`'s log names (read on from where the last look stopped), or None yet."""
        if j.log is None:
            return None
        with open(j.log, "rb") as f:
            f.seek(self.log_at.get(j.name, 0))
            text = f.read()
        cut = text.rfind(b"\n") + 1  # a line still being written is read whole next time
        self.log_at[j.name] = self.log_at.get(j.name, 0) + cut
        found = _FOLDER.findall(text[:cut].decode("utf-8", "replace"))
        if not found:
            return None
        run = Path(found[-1].strip())
        self.runs[j.name] = run
        fields = (read_json(run / CONFIG, {}) or {}).get("fields")
        epochs = fields.get("epochs") if isinstance(fields, dict) else None
        self.epochs[j.name] = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else None
        return run

    def line(self, name, part, row, n, total):
        """One epoch as a line: the job's place in the queue, its name, the model (several: fold or seed), the
        epoch (counted from 1) of how many, and its validation macro F1 and loss (each where recorded)."""
        figures = [f"{k} {v:.3f}" for k in live.FIGURES if (v := live.number(row, k)) is not None]
        return (f"[{self.place.get(name, '?')}/{self.total}] {name} " + (f"{part} " if part else "")
                + f"epoch {n}" + (f"/{total}" if total else "") + "".join(" " + f for f in figures))

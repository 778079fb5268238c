"""The queue's progress lines: one plain line per finished epoch of each running job, read from the run's
history file(s) as they grow (stand-in jobs write them; no training)."""
import json
import os
import sys
import time
from types import SimpleNamespace

from fastmask.runs import queue
from fastmask.runs.follow import Follower
from fastmask.runs.queue import Job, Local, drive

HEAD = "epoch,train_loss,valid_loss,accuracy,macro_f1,time\n"  # as fastai's CSVLogger writes it: accuracy first


def fake_run(tmp_path, name="cutmix_halves", epochs=3):
    run = tmp_path / "runs" / f"20260101T000000Z-{name}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": name, "fields": {"epochs": epochs}}))
    log = tmp_path / f"{name}.log"
    log.write_text(f"loading data\nrun folder: {run}\n")
    return run, SimpleNamespace(name=name, log=log)


def test_one_line_per_finished_epoch_with_macro_f1_from_its_own_column(tmp_path):
    run, job = fake_run(tmp_path)
    todo = [SimpleNamespace(name=n) for n in ("person_split", "oversample", "albu", "cutmix_halves", "e", "f", "g", "h")]
    lines = []
    f = Follower(todo, lines.append)
    f.poll([job])
    assert lines == []  # no history yet
    (run / "history.csv").write_text(HEAD)
    f.poll([job])
    assert lines == []  # the header alone: no epoch ended
    with (run / "history.csv").open("a") as h:
        h.write("0,2.9,2.5,0.41,0.0712,00:04\n1,2.5,2.1,0.48,0.093")  # the second line still being written
    f.poll([job])
    assert lines == ["[4/8] cutmix_halves epoch 1/3 macro_f1 0.071 valid_loss 2.500"]
    f.poll([job])
    assert len(lines) == 1  # nothing new: nothing printed again
    with (run / "history.csv").open("a") as h:
        h.write("4,00:04\n2,2.2,1.9,0.5,0.112,00:04\n")
    f.poll([job])
    assert lines[1:] == ["[4/8] cutmix_halves epoch 2/3 macro_f1 0.093 valid_loss 2.100",
                         "[4/8] cutmix_halves epoch 3/3 macro_f1 0.112 valid_loss 1.900"]
    assert not any("\x1b" in x for x in lines)  # plain text: a pipe or a log reads it as it is


def test_several_folds_name_the_fold_and_the_merged_history_is_not_printed_again(tmp_path):
    run, job = fake_run(tmp_path, "kfold", epochs=2)
    lines = []
    f = Follower([job], lines.append)
    (run / "history_fold0.csv").write_text(HEAD + "0,1,1.5,0.5,0.2,00:01\n1,1,1.2,0.5,0.3,00:01\n")
    os.utime(run / "history_fold0.csv", (1, 1))
    (run / "history_fold1.csv").write_text(HEAD + "0,1,1.4,0.5,0.25,00:01\n")
    f.poll([job])
    assert lines == ["[1/1] kfold fold0 epoch 1/2 macro_f1 0.200 valid_loss 1.500",
                     "[1/1] kfold fold0 epoch 2/2 macro_f1 0.300 valid_loss 1.200",
                     "[1/1] kfold fold1 epoch 1/2 macro_f1 0.250 valid_loss 1.400"]
    # the run ends: history.csv becomes the folds' merge (a fold column), the part files stay
    (run / "history.csv").write_text("epoch,valid_loss,macro_f1,fold\n0,1.5,0.2,0\n1,1.2,0.3,0\n0,1.4,0.25,1\n")
    f.poll([job])
    assert len(lines) == 3


STAND_IN = r'''
import json, sys, time
from pathlib import Path
run = Path(sys.argv[1])
run.mkdir(parents=True)
(run / "config.json").write_text(json.dumps({"name": "a", "fields": {"epochs": 3}}))
print(f"run folder: {run}", flush=True)
h = run / "history.csv"
h.write_text("epoch,train_loss,valid_loss,accuracy,macro_f1,time\n")
for e in range(3):
    time.sleep(0.6)
    with h.open("a") as f:
        f.write(f"{e},1,{2 - e / 2},0.9,{0.05 * (e + 1)},00:01\n")
    with (run.parent / "written.txt").open("a") as f:
        f.write(f"{time.monotonic()}\n")
time.sleep(0.3)
'''


def test_a_queue_prints_each_epoch_as_it_ends_then_the_jobs_end_line(tmp_path, monkeypatch):
    monkeypatch.setattr(queue, "POLL_S", 0.1)
    runs = tmp_path / "runs"
    todo = [Job("a", "a.py", "hypothesis")]
    said = []
    engine = Local(1, cpus=1)
    try:
        drive(todo, engine, lambda j: [sys.executable, "-c", STAND_IN, str(runs / "RUN-a")], runs, 1,
              out=lambda line: said.append((time.monotonic(), line)))
    finally:
        engine.close()
    lines = [x for _, x in said]
    epochs = [x for x in lines if x.startswith("[1/1] ")]
    assert epochs == ["[1/1] a epoch 1/3 macro_f1 0.050 valid_loss 2.000",
                      "[1/1] a epoch 2/3 macro_f1 0.100 valid_loss 1.500",
                      "[1/1] a epoch 3/3 macro_f1 0.150 valid_loss 1.000"]
    assert lines.index(epochs[-1]) < next(i for i, x in enumerate(lines) if x.startswith("queue: finished a"))
    # each line came as its epoch ended, not all at the job's end
    written = [float(x) for x in (runs / "written.txt").read_text().split()]
    first = next(t for t, x in said if x == epochs[0])
    assert written[0] <= first < written[1]

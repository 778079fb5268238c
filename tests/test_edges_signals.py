"""A signal after training (issue 21): at each stage once fit has returned (the holdout prediction, the
export, the card) the best model is kept and the status is true; a second signal stops at once and still
leaves a true status; the REPL learner comes out of a hard stop usable, and keeps its callbacks after an
export. Signals are real (os.kill on this process) wherever the handler is what is tested."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from fastai.callback.core import Callback

from fastmask.data.load import load_data
from fastmask.errors import StopNow
from fastmask.repl import load_recipe, parse_sets

from conftest import TINY

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="module")
def data(twin):
    return load_data(twin, progress=False)


@pytest.fixture
def recipe():
    return load_recipe(REPO / "recipes" / "person_split.py", {**parse_sets(TINY[1::2]), "patience": None})


@pytest.fixture
def handlers():
    """The test's own SIGINT/SIGTERM handlers, checked to be back after the run."""
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield old
    now = {s: signal.getsignal(s) for s in old}
    for s, h in old.items():
        signal.signal(s, h)
    assert now == old, "a signal handler was left behind"


def folder(tmp_path):
    (d,) = (tmp_path / "runs").iterdir()
    return d, json.loads((d / "status.json").read_text())


def kept_whole(d):
    for f in ("model.pkl", "model.safetensors", "model.json", "card.md", "metrics.json", "valid_preds.csv"):
        assert (d / f).is_file(), f


class SignalInBatch(Callback):
    """Sends SIGINT `times` times in the first batch it sees (of a get_preds, when added to one)."""
    order = 99

    def __init__(self, times=1, epoch=0):
        self.times, self.at_epoch, self.sent = times, epoch, False

    def after_batch(self):
        if not self.sent and self.epoch == self.at_epoch:
            self.sent = True
            for _ in range(self.times):
                ctrl_c()


def test_a_signal_inside_the_holdout_prediction_keeps_the_model(data, recipe, tmp_path, monkeypatch, capsys, handlers):
    """Before: StopOnInterrupt also watched get_preds, so the signal became a CancelFitException out of the
    holdout prediction: status failed, no model, no card."""
    import fastmask.runs.session as session
    real = session.predict_probs

    def holdout(learn, paths, *a, **k):
        with learn.added_cbs(SignalInBatch()):
            return real(learn, paths, *a, **k)
    monkeypatch.setattr(session, "predict_probs", holdout)
    with pytest.raises(KeyboardInterrupt) as e:
        session.train_and_record(recipe, data, tmp_path / "runs")
    assert not isinstance(e.value, StopNow)
    d, st = folder(tmp_path)
    assert st["status"] == "interrupted"
    kept_whole(d)
    metrics = json.loads((d / "metrics.json").read_text())
    assert "holdout_macro_f1" not in metrics and metrics["epochs_run"] == 1
    assert "holdout prediction stopped" in capsys.readouterr().err


def test_a_signal_during_the_export_finishes_it(data, recipe, tmp_path, monkeypatch, capsys, handlers):
    """Before: KeyboardInterrupt out of the export, the part dropped: no model, metrics or card."""
    import fastmask.runs.session as session
    real = session.export

    def export(*a, **k):
        ctrl_c()  # handled before the next line: the signal lands while the export is under way
        return real(*a, **k)
    monkeypatch.setattr(session, "export", export)
    with pytest.raises(KeyboardInterrupt):
        session.train_and_record(recipe, data, tmp_path / "runs")
    d, st = folder(tmp_path)
    assert st["status"] == "interrupted"
    kept_whole(d)
    assert "(interrupted)" in (d / "card.md").read_text().splitlines()[0]
    assert "finishing the model files and the card" in capsys.readouterr().err


def test_a_signal_while_the_card_is_written_leaves_it_whole(data, recipe, tmp_path, monkeypatch, handlers):
    """Everything was trained and predicted: the record completes and says so; the caller still sees the
    interrupt (a shell loop over recipes stops)."""
    import fastmask.runs.session as session
    real = session.record

    def record(*a, **k):
        ctrl_c()
        return real(*a, **k)
    monkeypatch.setattr(session, "record", record)
    with pytest.raises(KeyboardInterrupt):
        session.train_and_record(recipe, data, tmp_path / "runs")
    d, st = folder(tmp_path)
    assert st["status"] == "finished"
    kept_whole(d)
    assert "holdout_macro_f1" in json.loads((d / "metrics.json").read_text())


def test_a_second_signal_during_the_export_stops_now_with_a_true_status(data, recipe, tmp_path, monkeypatch, handlers):
    import fastmask.runs.session as session

    def export(*a, **k):
        ctrl_c()
        ctrl_c()
        raise AssertionError("not reached: the second signal stops the export")
    monkeypatch.setattr(session, "export", export)
    with pytest.raises(KeyboardInterrupt):
        session.train_and_record(recipe, data, tmp_path / "runs")
    d, st = folder(tmp_path)
    assert st["status"] == "interrupted" and not (d / "model.pkl").exists()


def test_ctrl_c_in_an_epoch_then_again_during_the_export_stops_now(data, recipe, tmp_path, monkeypatch, handlers):
    import fastmask.runs.session as session

    def export(*a, **k):
        ctrl_c()  # the second signal of the run: the user will not wait for the export
        raise AssertionError("not reached")
    monkeypatch.setattr(session, "export", export)
    with pytest.raises(KeyboardInterrupt):
        session.train_and_record(recipe.but(epochs=2), data, tmp_path / "runs", cbs=[SignalInBatch(epoch=1)])
    d, st = folder(tmp_path)
    assert st["status"] == "interrupted" and not (d / "model.pkl").exists()


def test_a_second_ctrl_c_in_an_epoch_is_interrupted_not_failed(data, recipe, tmp_path, handlers):
    """Before: the second Ctrl-C skipped every after_fit, the CSVLogger's open file stayed the learner's
    logger, the export failed to pickle it and the run was recorded failed."""
    import fastmask.runs.session as session
    with pytest.raises(KeyboardInterrupt):
        session.train_and_record(recipe.but(epochs=2), data, tmp_path / "runs", cbs=[SignalInBatch(times=2, epoch=1)])
    d, st = folder(tmp_path)
    assert st["status"] == "interrupted" and "error" not in st


@pytest.mark.parametrize("mode", ["lines", "bars"])
def test_after_a_hard_stop_the_repl_learner_exports_and_fits_again(mode, data, recipe, tmp_path, handlers):
    from fastai.callback.progress import CSVLogger

    from fastmask import console
    from fastmask.data.dls import build_dls
    from fastmask.learn.build import build_learner, fit
    learn = build_learner(recipe, build_dls(recipe, data.train), notify=lambda m: None)
    learn.path = tmp_path
    logger = learn.logger
    with console.using(console.BARS if mode == "bars" else console.LINES), pytest.raises(StopNow):
        fit(recipe, learn, cbs=[CSVLogger(fname="h.csv"), SignalInBatch(times=2)])
    assert learn.logger is logger and all(cb.run for cb in learn.cbs)
    learn.export(tmp_path / "m.pkl")  # before: PicklingError (the CSVLogger's file was the logger)
    with learn.no_bar():
        learn.fit(1, 1e-4)  # and fastai's callbacks are switched back on


def test_export_leaves_the_repl_learners_callbacks_and_fit_still_uses_them(data, recipe, tmp_path):
    """Before: r.export(learn, ...) removed CutMix, keep-best and early stopping from `learn` for good."""
    r = recipe.but(cutmix="halves", patience=1)
    learn = r.learner(dls=r.dls(data.root))
    learn.path = tmp_path
    before = list(learn.cbs)
    r.export(learn, tmp_path / "mine")
    assert list(learn.cbs) == before and all(cb.learn is learn for cb in before)
    seen = []

    class Spy(Callback):
        order = 99

        def before_batch(self):
            seen.append({type(cb).__name__ for cb in self.learn.cbs})
            raise __import__("fastai.callback.core", fromlist=["x"]).CancelFitException
    with learn.no_bar():
        learn.fit_one_cycle(1, 1e-4, cbs=Spy())
    assert {"CutMixHalves", "KeepBest", "PeakAwareEarlyStopping", "NanGuard", "StopOnInterrupt"} <= seen[0]
    from fastai.learner import load_learner
    assert not {"CutMixHalves", "KeepBest"} & {type(cb).__name__ for cb in load_learner(tmp_path / "mine.pkl").cbs}


def test_sigterm_during_the_holdout_prediction_of_a_real_run(twin, tmp_path):
    """The real process: `python -m fastmask.run` with the holdout prediction slowed down (a stand-in that
    says when it starts); SIGTERM then ends in exit 130, one last line, and a kept, interrupted run."""
    code = textwrap.dedent("""
        import sys, time
        import fastmask.runs.session as s
        real = s.predict_probs
        def slow(*a, **k):
            print("HOLDOUT", flush=True)
            time.sleep(60)
            return real(*a, **k)
        s.predict_probs = slow
        from fastmask.errors import cli
        from fastmask.run import main
        sys.exit(cli(main)(sys.argv[1:]))
    """)
    runs = tmp_path / "runs"
    p = subprocess.Popen([sys.executable, "-c", code, "recipes/person_split.py", *TINY, "--data", str(twin),
                          "--runs", str(runs)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)])
    try:
        for line in p.stdout:
            if line.strip() == "HOLDOUT":
                break
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=300)
    finally:
        p.kill()
    assert p.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "fastmask: interrupted" and "Traceback" not in err
    (d,) = runs.iterdir()
    assert json.loads((d / "status.json").read_text())["status"] == "interrupted"
    kept_whole(d)

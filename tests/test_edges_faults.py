"""The last tracebacks become one line (issue 21): an image symlink to itself, `fastmask init` where nothing
can be written, an MLflow URI of no known scheme; `synth` stopped by SIGTERM ends its workers and says
"interrupted"; a cache damaged in a single row (first, middle or last) is rebuilt."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastmask.errors import FastmaskError, cli

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def one_line_exit_2(main, argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli(main)(list(map(str, argv)))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    return err[0]


def test_a_training_image_linked_to_itself_is_named(twin, tmp_path):
    from fastmask.data.layout import read_train
    data = tmp_path / "twin"
    shutil.copytree(twin, data)
    victim = sorted((data / "train" / "images").glob("*/mask1.*"))[0]
    victim.unlink()
    victim.symlink_to(victim.name)  # ELOOP when opened or stat'ed
    with pytest.raises(FastmaskError, match=f"{victim.parent}: unreadable {victim.name} \\(Too many levels") as e:
        read_train(data / "train")
    assert "\n" not in str(e.value)


def test_an_eval_image_linked_to_itself_is_named(twin, tmp_path):
    from fastmask.data.layout import read_eval
    ev = tmp_path / "eval"
    shutil.copytree(twin / "eval", ev)
    victim = sorted((ev / "images").iterdir())[0]
    victim.unlink()
    victim.symlink_to(victim.name)
    with pytest.raises(FastmaskError, match=f"{victim}: unreadable \\(Too many levels"):
        read_eval(ev)


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_init_where_nothing_can_be_written_is_one_line_and_leaves_nothing(where, tmp_path, capsys):
    from fastmask.init import main
    if where == "under_a_file":
        (tmp_path / "notes.txt").write_text("x")
        target = tmp_path / "notes.txt" / "project"
    else:  # /proc refuses new folders even to root (a chmod'ed folder does not stop root)
        target = "/proc/fastmask-project"
    line = one_line_exit_2(main, [target], capsys)
    assert line.startswith(f"fastmask: error: {target}") and "cannot write the recipes there" in line


def test_init_failing_half_way_removes_what_it_wrote(tmp_path, capsys, monkeypatch):
    import builtins

    from fastmask.init import main
    real, count = builtins.open, [0]

    def full_after_three(path, mode="r", *a, **k):
        if mode == "x":
            count[0] += 1
            if count[0] > 3:
                raise OSError(28, "No space left on device", str(path))
        return real(path, mode, *a, **k)
    monkeypatch.setattr(builtins, "open", full_after_three)
    line = one_line_exit_2(main, [tmp_path], capsys)
    assert "No space left on device" in line
    assert list((tmp_path / "recipes").iterdir()) == []


@pytest.mark.parametrize("uri", ["foo://bar", "s3://bucket/mlruns"])
def test_mlflow_sync_with_an_unknown_scheme_is_one_line(uri, tmp_path, capsys):
    pytest.importorskip("mlflow")
    from fastmask.mlflow_sync import main
    run = tmp_path / "runs" / "20240101-000000-x"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "status.json").write_text('{"status": "finished"}')
    line = one_line_exit_2(main, [tmp_path / "runs", "--uri", uri], capsys)
    assert line.startswith(f"fastmask: error: MLflow tracking URI {uri!r}: scheme")


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_synth_on_sigterm_ends_its_workers_and_says_interrupted(tmp_path):
    """Before: SIGTERM killed synth silently and left its two drawing processes running, orphaned."""
    out = tmp_path / "twin"
    p = subprocess.Popen([sys.executable, "-m", "fastmask.synth", str(out), "--people", "600", "--workers", "2",
                          "--quiet"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    try:
        end = time.monotonic() + 120
        while len(children(p.pid)) < 2 and time.monotonic() < end and p.poll() is None:
            time.sleep(0.2)
        workers = children(p.pid)
        assert len(workers) >= 2, "the pool never started"
        p.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, err = p.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        p.kill()
    assert p.returncode == 130 and err.strip() == "fastmask: interrupted", err[-2000:]
    assert took < 10, f"synth drew on for {took:.0f} s after SIGTERM"  # not the rest of the 600 people
    time.sleep(0.5)
    assert not [w for w in workers if alive(w)], "a worker outlived synth"
    assert not out.exists() and not list(tmp_path.glob(".twin.partial-*"))


# --- a cache damaged in one row --------------------------------------------------------------------

N_PHOTOS = 31  # more rows than the manifest samples (16): first, middle and last must be among them


@pytest.mark.parametrize("row", [0, N_PHOTOS // 2, N_PHOTOS - 1], ids=["first", "middle", "last"])
def test_a_cache_damaged_in_a_single_row_is_rebuilt(row, tmp_path, monkeypatch, capsys):
    from fastmask.data.cache import build, prepare

    from test_cache_heal import photos
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "c"))
    size = (8, 6)
    paths = photos(tmp_path / "img", N_PHOTOS)
    build(paths, size, progress=False, workers=1)
    (f,) = (tmp_path / "c").glob("*.npy")
    arr = np.load(f, mmap_mode="r+")
    arr[row] = 255 - arr[row]  # the size and header stay right: only the rows' checksum can tell
    arr.flush()
    del arr
    capsys.readouterr()
    again = build(paths, size, progress=False, workers=1)
    err = capsys.readouterr().err
    assert "was damaged (sampled rows differ" in err and str(f) in err
    assert np.array_equal(again[row], prepare(paths[row], size))


def test_a_manifest_from_before_the_middle_row_still_opens_silently(tmp_path, monkeypatch, capsys):
    import json

    from fastmask.data import cache

    from test_cache_heal import photos
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "c"))
    paths = photos(tmp_path / "img", N_PHOTOS)
    cache.build(paths, (8, 6), progress=False, workers=1)
    (f,) = (tmp_path / "c").glob("*.npy")
    m = json.loads(cache._manifest_path(f).read_text())
    del m["sample_middle"]
    arr = np.load(f, mmap_mode="r")
    old_rows = sorted({int(round(x)) for x in np.linspace(0, N_PHOTOS - 1, 16)})  # the rule as it was
    import hashlib
    h = hashlib.sha256()
    for i in old_rows:
        h.update(np.ascontiguousarray(arr[i]).tobytes())
    m["sample_sha256"] = h.hexdigest()
    cache._manifest_path(f).write_text(json.dumps(m))
    capsys.readouterr()
    cache.build(paths, (8, 6), progress=False, workers=1)
    assert capsys.readouterr().err == ""

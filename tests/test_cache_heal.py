"""The input cache heals: a damaged file is rebuilt with a notice, a killed builder's temps are
cleaned, and its workers do not outlive it (issue 12)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from fastmask.data import cache
from fastmask.data.cache import build, prepare

SIZE = (8, 6)


def photos(folder, n=5):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        p = folder / f"{i}.png"
        Image.fromarray(rng.integers(1, 255, (30, 40, 3), dtype=np.uint8)).save(p)
        out.append(str(p))
    return out


@pytest.fixture
def built(tmp_path, monkeypatch):
    """(paths, the one cache file) after a first build."""
    monkeypatch.setenv("FASTMASK_CACHE", str(tmp_path / "c"))
    paths = photos(tmp_path / "img")
    build(paths, SIZE, progress=False, workers=1)
    (f,) = (tmp_path / "c").glob("*.npy")
    return paths, f


def rebuilt_right(paths, capsys, f):
    """Build again: one notice naming the file, and the pixels a fresh `prepare` gives."""
    arr = build(paths, SIZE, progress=False, workers=1)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastmask: notice: cache file ") and str(f) in err[0]
    assert "rebuilding" in err[0]
    for i, p in enumerate(paths):
        assert np.array_equal(arr[i], prepare(p, SIZE))
    return err[0]


def test_a_whole_file_opens_silently(built, capsys):
    paths, f = built
    capsys.readouterr()
    build(paths, SIZE, progress=False, workers=1)
    assert capsys.readouterr().err == ""
    assert cache._manifest_path(f).is_file()


def test_truncated_file_is_rebuilt(built, capsys):
    paths, f = built
    capsys.readouterr()
    os.truncate(f, f.stat().st_size // 2)
    assert "bytes, expected" in rebuilt_right(paths, capsys, f)
    build(paths, SIZE, progress=False, workers=1)  # healed: the next run is quiet
    assert capsys.readouterr().err == ""


def test_zeroed_rows_of_the_right_size_are_rebuilt(built, capsys):
    paths, f = built
    capsys.readouterr()
    header = f.stat().st_size - len(paths) * SIZE[0] * SIZE[1] * 3
    with open(f, "r+b") as fh:  # header intact, every pixel black: only the checksum can tell
        fh.seek(header)
        fh.write(bytes(f.stat().st_size - header))
    assert "checksum" in rebuilt_right(paths, capsys, f)


def test_wholly_zeroed_file_is_rebuilt(built, capsys):
    paths, f = built
    capsys.readouterr()
    f.write_bytes(bytes(f.stat().st_size))
    rebuilt_right(paths, capsys, f)


def test_file_without_manifest_is_rebuilt(built, capsys):
    paths, f = built
    capsys.readouterr()
    cache._manifest_path(f).unlink()
    assert "no manifest" in rebuilt_right(paths, capsys, f)
    assert cache._manifest_path(f).is_file()


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temps_removed_live_ones_kept(tmp_path, monkeypatch):
    folder = tmp_path / "c"
    folder.mkdir()
    monkeypatch.setenv("FASTMASK_CACHE", str(folder))
    target = folder / "abc-8x6.npy"
    live = cache._temp_name(target)  # this process: a builder still at work
    with monkeypatch.context() as m:
        m.setattr(cache.os, "getpid", dead_pid)
        dead = cache._temp_name(target)
    ancient = folder / f".{target.name}.{'0' * 32}.tmp"  # an older fastmask's, no pid in the name
    fresh_unknown = folder / f".{target.name}.{'1' * 32}.tmp"  # can't tell: kept while recent
    for t in (live, dead, ancient, fresh_unknown):
        t.write_bytes(b"x" * 100)
    day_ago = time.time() - 24 * 3600
    os.utime(ancient, (day_ago, day_ago))
    build(photos(tmp_path / "img"), SIZE, progress=False, workers=1)
    assert live.exists() and fresh_unknown.exists()
    assert not dead.exists() and not ancient.exists()


KILLED_BUILDER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from fastmask.data import cache

    def slow(args):  # a worker that would take a long time: its builder is killed meanwhile
        open(os.path.join(sys.argv[1], str(os.getpid())), "w").close()
        time.sleep(30)
        return np.zeros((len(args[0]), *args[1], 3), np.uint8)

    cache._prepare_many = slow
    cache.build(sys.argv[2:], (8, 6), progress=False, workers=2)
""")


def _gone(pid):
    """Exited (a zombie counts: it holds no memory and runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_for(cond, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_builder_leaves_no_worker_and_its_temp_is_cleaned(tmp_path, monkeypatch):
    folder = tmp_path / "c"
    monkeypatch.setenv("FASTMASK_CACHE", str(folder))
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "builder.py"
    script.write_text(KILLED_BUILDER)
    paths = photos(tmp_path / "img", n=2) * 40  # 80 rows: two chunks, one per worker
    proc = subprocess.Popen([sys.executable, str(script), str(marks), *paths], env=os.environ.copy())
    workers = []
    try:
        assert _wait_for(lambda: len(os.listdir(marks)) == 2 or proc.poll() is not None, 60)
        assert proc.poll() is None, "the builder exited before its workers started"
        workers = [int(n) for n in os.listdir(marks)]
        assert list(folder.glob(".*.tmp")), "the builder should have a temp file in flight"
        proc.kill()
        proc.wait()
        assert _wait_for(lambda: all(_gone(w) for w in workers), 5), "workers outlived their builder"
    finally:
        proc.kill()
        for w in workers:  # only when the test failed: don't leave them for 30 s
            if not _gone(w):
                os.kill(w, signal.SIGKILL)
    arr = build(paths[:2], SIZE, progress=False, workers=1)
    assert not list(folder.glob(".*.tmp")), "the killed builder's temp was not cleaned"
    assert np.array_equal(arr[1], prepare(paths[1], SIZE))
